"""Shared checks of the tasks: private copies of the input arrays, their layout and value normalisation.

Normalisation.  Networks fit values in [0, 1].  Integer data is divided by the largest value of its
bit depth, ``2**bits - 1``: the depth declared by the caller (``bit_depth``, e.g. a file's
``BitsPerSample``), else the smallest depth of 8 bits or more that holds the data's maximum, so 8-bit
images use 255 and 12-bit data stored as ``uint16`` uses 4,095, not 65,535 (integer data with negative
values is mapped min–max); ``bool`` is 0/1; floats already inside [0, 1] are kept; anything else is
mapped min–max.  The result is mapped back.  Metrics follow the WIRE convention ``PSNR = 10
log10(range² / MSE)`` with the *reference's* range by the same rule, so a ``uint8`` reference gives
255, 12-bit data gives 4,095, a float reference inside [0, 1] gives 1 (the WIRE ``10 log10(1 / MSE)``;
also when a noisy input overshoots [0, 1]).  What was done is recorded in
``result.extras["normalisation"]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..grid import check_spacing
from ..stopping import Discrepancy, HeldOut, stop_summary

__all__ = ["Normalisation", "as_array", "image_layout", "normalisation", "check_bit_depth", "check_divides",
           "reference_on_grid", "check_spacing", "check_sinogram_layout", "check_shifts", "StopPlan", "stop_plan"]


# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """Affine map ``normalised = (value - offset) / scale`` that puts data into [0, 1].

    ``method`` is ``"bit-depth"`` (integers: ``scale = 2**bits - 1``), ``"dtype-range"`` (bool),
    ``"identity"`` (floats already in [0, 1]), ``"min-max"`` or ``"constant"``; ``bits`` is the bit
    depth used (``"bit-depth"`` only) and whether it was ``declared`` by the caller.
    """

    offset: float
    scale: float
    method: str
    dtype: str
    bits: int | None = None
    declared: bool = False

    def forward(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float64) - self.offset) / self.scale).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fmt(value: float, dtype: np.dtype) -> str:
    return str(int(value)) if dtype.kind in "biu" else repr(float(value))


def check_bit_depth(bit_depth: Any) -> int | None:
    """``bit_depth`` as an integer in [1, 64], or None; one-line errors otherwise."""
    if bit_depth is None:
        return None
    if isinstance(bit_depth, (bool, np.bool_)) or not isinstance(bit_depth, (int, np.integer)) \
            or not 1 <= int(bit_depth) <= 64:
        raise ValueError(f"bit_depth must be an integer in [1, 64] or None; got {bit_depth!r}")
    return int(bit_depth)


def _integer_bits(lo: float, hi: float, name: str, bit_depth: int | None) -> int | None:
    """The bit depth integer data is normalised by (None: it has negative values, so min-max)."""
    if bit_depth is not None:
        if lo < 0:
            raise ValueError(f"{name} has negative values ({int(lo)}); a bit depth describes non-negative "
                             "integer data: leave bit_depth unset")
        if hi > 2 ** bit_depth - 1:
            raise ValueError(f"{name} has values up to {int(hi)}, more than {bit_depth}-bit data holds "
                             f"({2 ** bit_depth - 1}); give its true bit depth or leave bit_depth unset")
        return bit_depth
    if lo < 0:
        return None
    return max(8, int(hi).bit_length())


def normalisation(arr: np.ndarray, name: str, what: str = "fit", allow_constant: bool = False,
                  bit_depth: int | None = None) -> Normalisation:
    """How ``arr`` maps to [0, 1] (see the module docstring); constant data is an error unless allowed.

    Args:
        arr: the data.
        name: its name, for messages.
        what: what is done with it, for the constant-data message.
        allow_constant: accept constant data (a reference).
        bit_depth: the declared bit depth of integer data (None: the smallest of 8 bits or more that
            holds its maximum); ignored for floats and bool.
    """
    bit_depth = check_bit_depth(bit_depth)
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi and not allow_constant:
        raise ValueError(f"{name} is constant (all values {_fmt(lo, arr.dtype)}): nothing to {what}")
    dtype = str(arr.dtype)
    if arr.dtype == np.bool_:
        return Normalisation(0.0, 1.0, "dtype-range", dtype)
    if arr.dtype.kind in "iu":
        bits = _integer_bits(lo, hi, name, bit_depth)
        if bits is not None:
            return Normalisation(0.0, float(2 ** bits - 1), "bit-depth", dtype, bits, bit_depth is not None)
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return Normalisation(0.0, 1.0, "identity", dtype)
    if lo == hi:
        return Normalisation(lo, 1.0, "constant", dtype)
    return Normalisation(lo, hi - lo, "min-max", dtype)


def as_array(data: Any, name: str) -> np.ndarray:
    """A private NumPy copy of ``data`` (array or tensor) holding finite numbers; one-line errors otherwise."""
    if isinstance(data, torch.Tensor):
        t = data.detach().cpu()
        if t.is_complex():
            raise TypeError(f"{name} must be real numbers; got a {t.dtype} tensor (take .real or .abs())")
        if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
            t = t.float()
        arr = t.numpy().copy()
    else:
        try:
            arr = np.array(data, copy=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a NumPy array or torch tensor of numbers ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype} (convert with .astype(np.float32))")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(arr.shape)}); pass a non-empty array")
    if arr.dtype.kind == "f":
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise ValueError(
                f"{name} contains {bad} NaN or Inf values; replace them (e.g. numpy.nan_to_num) before fitting"
            )
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
    return arr


def image_layout(arr: np.ndarray, name: str, allow_volume: bool) -> tuple[tuple[int, ...], int, bool]:
    """``(spatial_shape, channels, has_channel_axis)`` of an image: (H, W), (H, W, C≤4) or (D, H, W)."""
    if arr.ndim == 2:
        return tuple(arr.shape), 1, False
    if arr.ndim == 3 and arr.shape[-1] <= 4 and (arr.shape[-1] in (1, 3, 4) or not allow_volume):
        return tuple(arr.shape[:2]), int(arr.shape[-1]), True
    if arr.ndim == 3 and allow_volume:
        return tuple(arr.shape), 1, False
    volume = " or a (D, H, W) volume" if allow_volume else ""
    raise ValueError(
        f"{name} must be a 2-D grey (H, W) or colour (H, W, C) image with C ≤ 4{volume}; got shape "
        f"{tuple(arr.shape)}"
    )


def check_divides(shape: Sequence[int], scale: int, name: str) -> None:
    """One-line error unless ``scale`` divides every side of ``shape``."""
    bad = [int(s) for s in shape if s % scale]
    if bad:
        raise ValueError(
            f"scale {scale} does not divide the {name} shape {tuple(int(s) for s in shape)}; crop it so every side "
            f"is a multiple of {scale}"
        )


def reference_on_grid(
    reference: Any, shape: tuple[int, ...], norm: Normalisation, bit_depth: int | None = None
) -> tuple[np.ndarray | None, float, float | None]:
    """``(reference in the fit's normalised units, data_range there, data_range in the original units)``.

    The metric's data range is the reference's own range by the normalisation rule (255 for 8-bit
    data, 4,095 for 12-bit data, the declared ``bit_depth`` for integer references, 1 for floats in
    [0, 1], else max − min), expressed in the units the network fits.
    """
    if reference is None:
        return None, 1.0, None
    ref = as_array(reference, "reference")
    if ref.shape != shape:
        squeezed = ref.reshape(shape) if ref.size == math.prod(shape) and ref.squeeze().shape == tuple(
            s for s in shape if s != 1) else None
        if squeezed is None:
            raise ValueError(
                f"reference shape {tuple(ref.shape)} differs from the output shape {shape}; pass the ground truth "
                "on the output grid"
            )
        ref = squeezed
    fits = bit_depth is not None and ref.dtype.kind in "iu" and ref.min() >= 0 and ref.max() <= 2 ** bit_depth - 1
    ref_norm = normalisation(ref, "reference", allow_constant=True, bit_depth=bit_depth if fits else None)
    data_range = ref_norm.scale if ref_norm.method != "constant" else norm.scale
    return norm.forward(ref), data_range / norm.scale, data_range


def _spread(totals: np.ndarray) -> float:
    """Relative spread (std / |mean|) of per-projection totals; inf when their mean is ~0."""
    mean = float(np.mean(totals))
    scale = float(np.mean(np.abs(totals)))
    if scale == 0.0 or abs(mean) < 0.5 * scale:
        return math.inf
    return float(np.std(totals)) / abs(mean)


def check_sinogram_layout(sinogram: np.ndarray, layout: str) -> None:
    """One-line error when a 2-D sinogram's axes look swapped for ``layout``.

    A parallel-beam projection of an object inside the field of view integrates the same mass at every
    angle, so under the right layout the per-angle totals agree (a few % with noise) while the totals
    along the other axis (per detector bin) vary strongly. The check speaks only when one reading is
    clearly consistent (spread under 2 %) and the declared one clearly is not (over 10 %); sinograms of
    objects that leave the field of view, filtered or negative data pass silently.

    Args:
        sinogram: 2-D; ``layout="skimage"`` is (detectors, angles), ``"torch"`` is (angles, detectors).
        layout: ``"skimage"`` or ``"torch"``.
    """
    sino = np.asarray(sinogram, dtype=np.float64)
    if sino.ndim != 2 or min(sino.shape) < 3 or layout not in ("skimage", "torch"):
        return
    peak = float(np.abs(sino).max())
    if peak == 0.0 or float(sino.min()) < -0.05 * peak:  # filtered or offset data: no mass to compare
        return
    per_column, per_row = sino.sum(axis=0), sino.sum(axis=1)
    declared, other = (per_column, per_row) if layout == "skimage" else (per_row, per_column)
    if _spread(declared) > 0.10 and _spread(other) < 0.02:
        names = {"skimage": "detectors x angles", "torch": "angles x detectors"}
        right = "torch" if layout == "skimage" else "skimage"
        lines = "rows" if right == "torch" else "columns"
        raise ValueError(
            f"sinogram of shape {tuple(sino.shape)} looks like {names[right]}, not {names[layout]} (layout "
            f"{layout!r}): its {len(other)} {lines} integrate the same total, as projections do; pass layout "
            f"{right!r} (--layout {right})")


def check_shifts(shifts: np.ndarray, hr_shape: Sequence[int], name: str = "shifts") -> None:
    """One-line error unless every per-frame shift ``(dy, dx)`` stays inside the high-resolution image.

    A frame shifted by the image's size or more sees nothing of it: such a shift is a unit or sign
    mistake (metres for pixels, low- for high-resolution pixels), never a motion to reconstruct from.
    """
    limits = np.asarray([float(n) for n in hr_shape[:2]])
    bad = np.flatnonzero((np.abs(shifts) >= limits).any(axis=1))
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"{name} of frame {k} is ({shifts[k, 0]:g}, {shifts[k, 1]:g}) high-resolution pixels, outside the "
            f"{int(limits[0])} x {int(limits[1])} image (|dy| < {int(limits[0])}, |dx| < {int(limits[1])}): that "
            "frame would see nothing of it; give shifts in high-resolution pixels")


# -------------------------------------------------------------------------------------------------- stop rules


@dataclasses.dataclass(frozen=True)
class StopPlan:
    """The stop rule of a run, resolved from the task's stop parameters (see :func:`stop_plan`).

    ``rule`` is ``"held_out"``, ``"discrepancy"`` or ``"none"``; ``scale`` is the data's units per fit unit
    (the normalisation), ``sigma`` the noise level in the data's units and ``sigma_source`` ``"given"`` or
    ``"estimated"`` (discrepancy only).
    """

    rule: str
    held_out: HeldOut | None = None
    discrepancy: Discrepancy | None = None
    scale: float = 1.0
    sigma: float | None = None
    sigma_source: str | None = None

    def report(self, result: Any) -> dict[str, Any]:
        """What the rule chose (:func:`reconstruct.stopping.stop_summary`), errors in the data's units."""
        out = stop_summary(result)
        if out["rule"] == "held_out":  # a mean squared error
            out["error"] *= self.scale ** 2
            out["curve"] = [[s, e * self.scale ** 2] for s, e in out["curve"]]
        elif out["rule"] == "discrepancy":  # root-mean-square values
            for key in ("residual_rms", "sigma", "threshold"):
                out[key] *= self.scale
            out["curve"] = [[s, r * self.scale] for s, r in out["curve"]]
            out["sigma_source"] = self.sigma_source
        else:
            out["asked"] = self.rule
        return out


def stop_plan(params: Mapping[str, Any], *, scale: float, mask: Callable[[float], np.ndarray],
              estimate: Callable[[], float], valid: np.ndarray | None = None) -> StopPlan:
    """The stop rule the parameters ask for (``stop``, ``held_out``, ``patience``, ``refit``, ``noise_sigma``, ``tau``).

    Args:
        params: the task's checked parameters (:func:`reconstruct.tasks.spec.stop_params`).
        scale: the data's units per fit unit (``noise_sigma`` is divided by it).
        mask: ``fraction -> held-out mask`` broadcastable to the measurement the fit sees.
        estimate: the noise standard deviation of that measurement, in fit units (when ``noise_sigma`` is None).
        valid: measurement elements that exist (multi-frame pixels a warp sees); None: all.
    """
    rule, fraction = params["stop"], params["held_out"]
    if rule == "auto":
        rule = "held_out" if fraction > 0 else "none"
    if rule == "held_out":
        if fraction == 0:
            raise ValueError("stop='held_out' needs a held_out fraction > 0 (e.g. 0.1); got held_out=0")
        held = np.asarray(mask(fraction), bool)
        if valid is not None:
            held = held & valid
        return StopPlan("held_out", held_out=HeldOut(held, patience=params["patience"], refit=params["refit"]),
                        scale=scale)
    if rule == "discrepancy":
        given = params["noise_sigma"]
        sigma_fit = float(estimate()) if given is None else given / scale
        if not sigma_fit > 0:
            raise ValueError("the noise level estimated from the data is 0 (noise-free data?); give noise_sigma "
                             "or use stop='held_out'")
        return StopPlan("discrepancy", discrepancy=Discrepancy(sigma_fit, params["tau"], valid), scale=scale,
                        sigma=sigma_fit * scale, sigma_source="estimated" if given is None else "given")
    return StopPlan("none", scale=scale)
