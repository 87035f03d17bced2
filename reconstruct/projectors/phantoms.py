"""Analytic phantoms: ellipses and ellipsoids with closed-form line integrals.

An ellipse ``(value, a, b, x0, y0, phi)`` (mm, degrees counter-clockwise in the x, y-up plane) or an
ellipsoid ``(value, a, b, c, x0, y0, z0, phi)`` (rotated by ``phi`` about z) adds ``value`` inside.
A line ``o + t d`` crosses it over the chord where ``|M (o + t d - c)| = 1`` (``M`` scales by the
semi-axes after the rotation), so the line integral is ``value * 2 sqrt(disc) / |M d|^2 * |d|``.
:func:`analytic_projections` evaluates that on the projector's own rays; :func:`rasterize` averages
the phantom over ``supersample^ndim`` points per voxel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["shepp_logan_2d", "shepp_logan_3d", "rasterize", "analytic_projections"]

# Modified Shepp–Logan (Toft's contrasts) on the unit disc: value, a, b, x0, y0, phi (degrees).
_SL2 = ((1.0, 0.69, 0.92, 0.0, 0.0, 0.0), (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
        (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0), (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
        (0.1, 0.21, 0.25, 0.0, 0.35, 0.0), (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
        (0.1, 0.046, 0.046, 0.0, -0.1, 0.0), (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
        (0.1, 0.023, 0.023, 0.0, -0.606, 0.0), (0.1, 0.023, 0.046, 0.06, -0.605, 0.0))
# A 3-D version: value, a, b, c, x0, y0, z0, phi.
_SL3 = ((1.0, 0.69, 0.92, 0.81, 0.0, 0.0, 0.0, 0.0), (-0.8, 0.6624, 0.874, 0.78, 0.0, -0.0184, 0.0, 0.0),
        (-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0), (-0.2, 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0),
        (0.1, 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0), (0.1, 0.046, 0.046, 0.05, 0.0, 0.1, 0.25, 0.0),
        (0.1, 0.046, 0.046, 0.05, 0.0, -0.1, 0.25, 0.0), (0.1, 0.046, 0.023, 0.05, -0.08, -0.605, 0.0, 0.0))


def shepp_logan_2d(radius_mm: float) -> list[tuple[float, ...]]:
    """The modified Shepp–Logan ellipses scaled to fit a disc of ``radius_mm``."""
    r = float(radius_mm)
    return [(v, a * r, b * r, x * r, y * r, p) for v, a, b, x, y, p in _SL2]


def shepp_logan_3d(radius_mm: float) -> list[tuple[float, ...]]:
    """A 3-D Shepp–Logan of ellipsoids scaled to fit a ball of ``radius_mm``."""
    r = float(radius_mm)
    return [(v, a * r, b * r, c * r, x * r, y * r, z * r, p) for v, a, b, c, x, y, z, p in _SL3]


def _frame(shape: Sequence[float], ndim: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``(value, centre, axes, rotation)``: rotation maps world offsets into the shape's frame."""
    if ndim == 2:
        value, a, b, x0, y0, phi = shape
        centre, axes = np.array([x0, y0]), np.array([a, b])
    else:
        value, a, b, c, x0, y0, z0, phi = shape
        centre, axes = np.array([x0, y0, z0]), np.array([a, b, c])
    t = math.radians(phi)
    rot = np.eye(ndim)
    rot[:2, :2] = [[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]]
    return float(value), centre, axes, rot


def analytic_projections(shapes: Sequence[Sequence[float]], geom: Any) -> torch.Tensor:
    """Exact line integrals of the phantom along every ray of ``geom``: ``geom.projection_shape``, float64."""
    ndim = geom.ndim
    origins, directions = geom.rays(0, geom.n_views)
    o = origins.numpy().reshape(-1, ndim)
    d = directions.numpy().reshape(-1, ndim)
    total = np.zeros(o.shape[0])
    for shape in shapes:
        value, centre, axes, rot = _frame(shape, ndim)
        po = ((o - centre) @ rot.T) / axes
        pd = (d @ rot.T) / axes
        aa = (pd * pd).sum(1)
        bb = (po * pd).sum(1)
        cc = (po * po).sum(1) - 1.0
        disc = bb * bb - aa * cc
        total += value * np.where(disc > 0, 2.0 * np.sqrt(np.maximum(disc, 0.0)) / aa, 0.0)
    return torch.from_numpy(total.reshape(geom.projection_shape))


def rasterize(shapes: Sequence[Sequence[float]], geom: Any, supersample: int = 4) -> torch.Tensor:
    """The phantom averaged over ``supersample^ndim`` points per voxel on ``geom``'s grid (float64)."""
    ndim = geom.ndim
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = [c.numpy() for c in geom.world_coordinates()]  # x, y[, z]
    steps = list(geom.spacing[::-1])  # sx, sy[, sz]
    out = np.zeros(geom.volume_shape)
    for sub in np.stack(np.meshgrid(*([offsets] * ndim), indexing="ij"), -1).reshape(-1, ndim):
        pts = np.stack([c + o * s for c, o, s in zip(coords, sub, steps)], -1)
        for shape in shapes:
            value, centre, axes, rot = _frame(shape, ndim)
            q = ((pts - centre) @ rot.T) / axes
            out += value * ((q * q).sum(-1) <= 1.0)
    return torch.from_numpy(out / supersample ** ndim)
