"""The CT cases of the benchmarks: chest.png sinograms (2-D) and the 3-D Shepp–Logan scans (stack, cone).

Split from :mod:`benchmarks.cases` (which dispatches to them) to keep each module to one job.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cases import Case, center_square, load_image, resize, synthetic_phantom

__all__ = ["ct_cases", "ct3d_cases"]


def ct_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    import torch

    from reconstruct.radon import Radon

    size = cfg["size"]
    if protocol == "tiny":
        img, name = synthetic_phantom(size), "phantom"
    else:
        img, name = resize(center_square(load_image(data_dir, "chest.png")), (size, size)), "chest"
    # The object lies inside the inscribed circle (the usual CT field of view), so the INRs, whose
    # output ct_reconstruct masks to that circle as iradon(circle=True) does, and FBP are scored on
    # the same pixels against a ground truth that is zero where neither may reconstruct.
    offset = np.arange(size) - size // 2
    img = (img * ((offset[:, None] ** 2 + offset[None, :] ** 2) <= (size // 2) ** 2)).astype(np.float32)
    # WIRE: np.linspace(0, 180, nmeas) — both ends included.
    angles_deg = np.linspace(0.0, 180.0, cfg["angles"]).astype(np.float64)
    radon = Radon(size, np.deg2rad(angles_deg))
    with torch.no_grad():
        sino = radon(torch.from_numpy(img.astype(np.float64))).numpy().astype(np.float32)  # (angles, det)
    desc = (
        f"{name} {size}x{size}, {cfg['angles']} parallel projections over 0-180° (noiseless, "
        "as in the WIRE harness), field of view = the inscribed circle"
    )
    data = {"sinogram": sino, "angles_deg": angles_deg}
    # Two recipes on the same sinogram: the library's default (FBP-filtered "ramp" data term + TV 1e-3,
    # chosen by measurement in reconstruct.tasks) and the WIRE harness's plain least squares.
    return [
        Case(f"{name}-{size}", f"{name} — library default", (sino, angles_deg),
             {"layout": "torch"}, img, desc, data),
        Case(f"{name}-{size}-plain", f"{name} — plain MSE (WIRE)", (sino, angles_deg),
             {"layout": "torch", "tv_weight": 0.0, "data_filter": None}, img, desc, data),
    ]


def ct3d_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    """A 3-D Shepp–Logan (rasterised, 4³ sub-samples per voxel) from analytic line integrals + 1 % noise.

    Two scans of the same phantom: a parallel-beam sinogram stack (one INR over the whole stack) and a
    cone-beam scan over 360° (magnification 2, a panel 1.5× the volume's width, NAF-style ray batches).
    The cone's projections are always exact line integrals; the stack's are the rasterised slices' own
    sinograms (``cfg["stack_data"] = "grid"``, the default, an inverse crime kept for the committed quick
    tables) or exact integrals along each slice's centre plane (``"exact"``, what bench_ct3d uses).
    """
    from reconstruct.projectors import ConeBeam3D, ParallelBeam3D
    from reconstruct.projectors.phantoms import analytic_projections, rasterize, shepp_logan_3d

    n, views, noise = cfg["size"], cfg["angles"], cfg["noise"]
    rng = np.random.default_rng(0)
    phantom = shepp_logan_3d(n / 2.0 - 1.0)
    parallel_deg = np.linspace(0.0, 180.0, views, endpoint=False)
    cone_deg = np.linspace(0.0, 360.0, views, endpoint=False)
    d, dsd, det = 6.0 * n, 12.0 * n, int(math.ceil(1.5 * n))
    cone = ConeBeam3D((n, n, n), np.deg2rad(cone_deg), (det, det), d, dsd, 2.0, 1.0)
    volume = rasterize(phantom, cone).numpy().astype(np.float32)
    stack = ParallelBeam3D((n, n, n), np.deg2rad(parallel_deg), n)
    cases = []
    for name, geom, angles, kwargs in (
            (f"stack-{n}", stack.slice, parallel_deg, {}),
            (f"cone-{n}", cone, cone_deg, {"geometry": "cone", "source_distance": d, "source_detector_distance": dsd,
                                           "det_spacing": 2.0, "voxel_size": 1.0, "output_size": n,
                                           "output_slices": n})):
        if geom is cone:
            clean = analytic_projections(phantom, cone).numpy()
        elif cfg.get("stack_data", "grid") == "exact":
            clean = analytic_projections(phantom, _SliceRays(geom, n)).numpy()
        else:  # every slice's sinogram from the rasterised slice (the stack's own line integrals)
            clean = geom(_float64_tensor(volume)).numpy()
        proj = (clean + noise * np.abs(clean).max() * rng.standard_normal(clean.shape)).astype(np.float32)
        desc = f"Shepp–Logan {n}³, {views} views, {noise:.0%} noise ({name.split('-')[0]})"
        cases.append(Case(name, name.split("-")[0], (proj, angles), kwargs, volume, desc,
                          {"projections": proj, "angles_deg": angles, "kwargs": kwargs}))
    return cases


def _float64_tensor(values: np.ndarray) -> Any:
    """``values`` as a float64 torch tensor."""
    import torch

    return torch.from_numpy(np.asarray(values, dtype=np.float64))


class _SliceRays:
    """The rays of a 2-D parallel-beam geometry repeated in the centre plane of every z slice (1 mm apart).

    Only what :func:`reconstruct.projectors.phantoms.analytic_projections` reads: ``ndim``, ``n_views``,
    ``projection_shape`` ``(Z, n_views, n_det)`` and ``rays`` (world x, y, z in the frame of
    :func:`~reconstruct.projectors.phantoms.rasterize` on a centred 1 mm grid; slice ``k`` at ``z = k - (Z - 1) / 2``).
    """

    ndim = 3

    def __init__(self, slice_geometry: Any, n_slices: int) -> None:
        self.slice, self.n_slices = slice_geometry, int(n_slices)
        self.n_views = slice_geometry.n_views
        self.projection_shape = (self.n_slices, *slice_geometry.projection_shape)

    def rays(self, start: int, stop: int) -> tuple[Any, Any]:
        import torch

        origins, directions = self.slice.rays(start, stop)  # (V, D, 2) each
        # into the volume's frame (voxel centres at k - (n - 1) / 2, as ConeBeam3D and rasterize), from the
        # 2-D geometry's own (its centre voxel may be n // 2, skimage's convention)
        x, y = (c[0, 0].item() for c in self.slice.world_coordinates(dtype=origins.dtype))
        rows, cols = self.slice.volume_shape
        origins = origins + torch.tensor([-(cols - 1) / 2.0 - x, (rows - 1) / 2.0 - y], dtype=origins.dtype)
        z = (torch.arange(self.n_slices, dtype=origins.dtype) - (self.n_slices - 1) / 2.0).view(-1, 1, 1, 1)
        shape = (self.n_slices, *origins.shape[:-1], 1)
        o = torch.cat([origins.expand(self.n_slices, *origins.shape), z.expand(shape)], -1)
        flat = torch.zeros(shape, dtype=origins.dtype)  # in-plane rays
        d = torch.cat([directions.expand(self.n_slices, *directions.shape), flat], -1)
        return o, d

