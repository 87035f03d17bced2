"""Classical references: what an imaging scientist would use instead of an INR, scored on a case.

Bicubic up-sampling (SISR, MISR), WIRE's scattered multi-frame interpolation (MISR), BM3D and
non-local means (denoising), filtered back-projection with the ramp and the best filter (CT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from benchmarks.cases import Case

__all__ = ["classical_references"]


def _image_scores(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from reconstruct.metrics import psnr, ssim

    return {"psnr": psnr(out, ref, 1.0), "ssim": ssim(out, ref, 1.0)}


def _bicubic(lowres: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    from skimage.transform import resize as sk_resize

    out_shape = tuple(shape[:2]) + tuple(lowres.shape[2:])
    return sk_resize(lowres, out_shape, order=3, anti_aliasing=False, preserve_range=True).astype(np.float32)


def _misr_scattered(data: dict, shape: Sequence[int]) -> np.ndarray:
    """WIRE's multi-frame reference: linear interpolation of every frame's pixels at their HR positions.

    Low-resolution pixel (i, j) of frame k averages the warped HR image over a ``scale``² block whose
    centre ``p`` maps to ``R(θ_k) p + t_k`` about the image centre (the :class:`WarpDownsample`
    convention); pixels outside the valid mask are dropped.
    """
    from scipy.interpolate import griddata

    frames, shifts, rotations, scale = data["frames"], data["shifts"], data["rotations"], data["scale"]
    mask = data["mask"][..., 0]
    h, w = shape[:2]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    k, lh, lw, c = frames.shape
    ii, jj = np.meshgrid(np.arange(lh), np.arange(lw), indexing="ij")
    py = ii * scale + (scale - 1) / 2 - cy
    px = jj * scale + (scale - 1) / 2 - cx
    points, values = [], []
    for f in range(k):
        cos, sin = math.cos(rotations[f]), math.sin(rotations[f])
        # grid_sample's (x, y) rotation by θ expressed in (row, col): x' = c x - s y, y' = s x + c y.
        sx = cos * px - sin * py + shifts[f, 1]
        sy = sin * px + cos * py + shifts[f, 0]
        m = mask[f]
        points.append(np.stack([sy[m] + cy, sx[m] + cx], -1))
        values.append(frames[f][m])
    pts, vals = np.concatenate(points), np.concatenate(values)
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros((h, w, c), np.float32)
    for ch in range(c):
        lin = griddata(pts, vals[:, ch], (gy, gx), method="linear")
        near = griddata(pts, vals[:, ch], (gy, gx), method="nearest")
        out[..., ch] = np.where(np.isnan(lin), near, lin)
    return out


def classical_references(task: str, case: Case) -> dict[str, dict[str, Any]]:
    """What an imaging scientist would use instead of an INR, scored on ``case``.

    Returns ``{label: {"metrics": {...}, "seconds": s, "note": str}}``.  Empty for tasks without a
    classical counterpart (image representation, occupancy, PINN).
    """
    import time

    refs: dict[str, dict[str, Any]] = {}

    def add(label: str, fn: Callable[[], np.ndarray], note: str) -> None:
        t0 = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # a missing optional package must not sink the whole benchmark
            refs[label] = {"metrics": {}, "seconds": 0.0, "note": f"failed: {type(exc).__name__}: {exc}"}
            return
        refs[label] = {
            "metrics": _image_scores(out, case.reference),
            "seconds": time.perf_counter() - t0,
            "note": note,
        }

    ref = case.reference
    if task == "denoise":
        noisy = case.data["noisy"]
        refs["noisy input"] = {
            "metrics": _image_scores(noisy, ref),
            "seconds": 0.0,
            "note": "the measurement",
        }
        from skimage.restoration import denoise_nl_means, estimate_sigma

        channel_axis = -1 if noisy.ndim == 3 else None
        sigma = float(np.mean(estimate_sigma(noisy, channel_axis=channel_axis)))

        def bm3d_fn() -> np.ndarray:
            import bm3d

            if noisy.ndim == 3:
                return np.asarray(bm3d.bm3d_rgb(noisy, sigma), np.float32)
            return np.asarray(bm3d.bm3d(noisy, sigma), np.float32)

        add("BM3D", bm3d_fn, f"bm3d package, σ estimated from the noisy image ({sigma:.3f})")
        add(
            "non-local means",
            lambda: denoise_nl_means(
                noisy,
                h=0.8 * sigma,
                sigma=sigma,
                patch_size=5,
                patch_distance=6,
                fast_mode=True,
                channel_axis=channel_axis,
            ).astype(np.float32),
            f"scikit-image denoise_nl_means, h = 0.8σ, σ estimated ({sigma:.3f})",
        )
    elif task == "sisr":
        add("bicubic", lambda: _bicubic(case.data["lowres"], ref.shape), "scikit-image resize, order 3")
    elif task == "misr":
        add(
            "bicubic (frame 0)",
            lambda: _bicubic(case.data["frames"][0], ref.shape),
            "bicubic up-sampling of the reference frame",
        )
        add(
            "multi-frame interpolation",
            lambda: _misr_scattered(case.data, ref.shape),
            "linear interpolation of all frames' pixels at their known HR positions (WIRE's reference)",
        )
    elif task == "ct":
        import torch

        from reconstruct.radon import FILTER_NAMES, Radon

        sino, angles = case.data["sinogram"], case.data["angles_deg"]
        radon = Radon(ref.shape[0], np.deg2rad(angles))

        def fbp(filter_name: str) -> np.ndarray:
            with torch.no_grad():
                return (
                    radon.fbp(torch.from_numpy(sino.astype(np.float64)), filter_name=filter_name, circle=True)
                    .numpy()
                    .astype(np.float32)
                )

        add("FBP (ramp)", lambda: fbp("ramp"), "Radon.fbp = scikit-image iradon, ramp filter")
        scores = {}
        for name in FILTER_NAMES:
            if name is None or name == "ramp":
                continue
            try:
                scores[name] = _image_scores(fbp(name), ref)
            except Exception:  # noqa: S112 - a filter the backend lacks is simply not compared
                continue
        if scores:
            best = max(scores, key=lambda n: scores[n]["psnr"])
            refs[f"FBP ({best}, best filter)"] = {
                "metrics": scores[best],
                "seconds": refs["FBP (ramp)"]["seconds"],
                "note": "filter chosen against the ground truth among " + ", ".join(sorted(scores)),
            }
    elif task == "ct3d":
        from reconstruct.tasks import ct_reconstruct_3d

        proj, angles, kwargs = case.data["projections"], case.data["angles_deg"], case.data["kwargs"]
        for method, label, note in (("fbp", "FBP/FDK (ramp)", "the projector's analytic reconstruction"),
                                    ("sirt", "SIRT (100 it.)", "reconstruct.projectors.solvers.SIRT, non-negative"),
                                    ("cgls", "CGLS (5 it.)", "reconstruct.projectors.solvers.CGLS")):
            add(label, lambda m=method: ct_reconstruct_3d(proj, angles, method=m, **kwargs).output, note)
    return refs
