"""One-line argument checks shared by the projectors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["angles_array", "positive", "positive_int", "shape_tuple", "spacing_tuple"]


def angles_array(angles: Any, name: str = "angles") -> np.ndarray:
    """Angles as a finite 1-D float64 array; torch-radon v2's ``(start, end, n)`` tuple is a range.

    The tuple form means ``np.linspace(start, end, n, endpoint=False)``, as in torch-radon 2; pass a
    list or an array for three explicit angles.
    """
    if isinstance(angles, tuple) and len(angles) == 3 and isinstance(angles[2], (int, np.integer)) \
            and not isinstance(angles[2], bool):
        start, end, count = angles
        angles = np.linspace(float(start), float(end), int(count), endpoint=False)
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu().numpy()
    try:
        arr = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers; got {type(angles).__name__}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per projection); got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; give at least one projection angle")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} non-finite values (NaN/inf)")
    return arr


def positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def shape_tuple(shape: Any, ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,) * ndim
    values = tuple(shape)
    if len(values) != ndim:
        raise ValueError(f"{name} must have {ndim} entries; got {values!r}")
    return tuple(positive_int(v, name) for v in values)


def spacing_tuple(spacing: Any, ndim: int, name: str) -> tuple[float, ...]:
    values = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,)) if np.ndim(spacing) == 0 \
        else np.asarray(spacing, dtype=np.float64)
    if values.shape != (ndim,):
        raise ValueError(f"{name} must be a number or {ndim} numbers (mm); got {spacing!r}")
    return tuple(positive(float(v), name) for v in values)
