"""Shared checks of the tasks: private copies of the input arrays, their layout and value normalisation.

Normalisation.  Networks fit values in [0, 1]: ``uint8``/``uint16`` images are divided by their dtype's
maximum, ``bool`` is 0/1, floats already inside [0, 1] are kept, anything else is mapped min–max.  The
result is mapped back.  Metrics follow the WIRE convention ``PSNR = 10 log10(range² / MSE)`` with the
*reference's* range by the same rule, so a ``uint8`` reference gives 255, a float reference inside
[0, 1] gives 1 (the WIRE ``10 log10(1 / MSE)``; also when a noisy input overshoots [0, 1]).  What was
done is recorded in ``result.extras["normalisation"]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..grid import check_spacing

__all__ = ["Normalisation", "as_array", "image_layout", "normalisation", "check_divides", "reference_on_grid",
           "check_spacing"]


# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """Affine map ``normalised = (value - offset) / scale`` that puts data into [0, 1].

    ``method`` is ``"dtype-range"`` (uint8/uint16/bool), ``"identity"`` (floats already in [0, 1]) or
    ``"min-max"``.
    """

    offset: float
    scale: float
    method: str
    dtype: str

    def forward(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float64) - self.offset) / self.scale).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fmt(value: float, dtype: np.dtype) -> str:
    return str(int(value)) if dtype.kind in "biu" else repr(float(value))


def normalisation(arr: np.ndarray, name: str, what: str = "fit", allow_constant: bool = False) -> Normalisation:
    """How ``arr`` maps to [0, 1] (see the module docstring); constant data is an error unless allowed."""
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi and not allow_constant:
        raise ValueError(f"{name} is constant (all values {_fmt(lo, arr.dtype)}): nothing to {what}")
    dtype = str(arr.dtype)
    if arr.dtype == np.bool_:
        return Normalisation(0.0, 1.0, "dtype-range", dtype)
    if arr.dtype in (np.uint8, np.uint16):
        return Normalisation(0.0, float(np.iinfo(arr.dtype).max), "dtype-range", dtype)
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
    reference: Any, shape: tuple[int, ...], norm: Normalisation
) -> tuple[np.ndarray | None, float, float | None]:
    """``(reference in the fit's normalised units, data_range there, data_range in the original units)``.

    The metric's data range is the reference's own range by the normalisation rule (255 for uint8,
    1 for floats in [0, 1], else max − min), expressed in the units the network fits.
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
    ref_norm = normalisation(ref, "reference", allow_constant=True)
    data_range = ref_norm.scale if ref_norm.method != "constant" else norm.scale
    return norm.forward(ref), data_range / norm.scale, data_range
