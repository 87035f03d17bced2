"""Analytic reconstruction: FBP for parallel and fan beam (fan weighting, Parker short scan), FDK.

The back-projection here is pixel-driven (each voxel reads the filtered projection at its detector
coordinate, linear interpolation), the classical FBP form; the exact adjoint of the ray-driven forward
is :meth:`Projector.adjoint`. Formulas: Kak & Slaney ch. 3 (eqs. for equispaced and equiangular fan
beams), Parker (1982) short-scan weights, Feldkamp–Davis–Kress (1984) for the cone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._matrix import pixel_matrix, sparse_apply
from .filters import ramp_filter

__all__ = ["analytic_reconstruction", "angular_weights", "parker_weights"]

_VOXEL_CHUNK = 1 << 24


def angular_weights(angles: np.ndarray, period: float) -> np.ndarray:
    """Per-view angular increments (radians) for a scan whose views repeat every ``period``.

    Each view gets the mean of its two neighbouring gaps on the circle of length ``period``;
    uniform views over one period get ``period / n``.
    """
    wrapped = np.mod(angles, period)
    order = np.argsort(wrapped, kind="stable")
    sorted_ = wrapped[order]
    gaps = np.diff(np.concatenate([sorted_, sorted_[:1] + period]))
    per = 0.5 * (gaps + np.roll(gaps, 1))
    out = np.empty_like(per)
    out[order] = per
    return out


def parker_weights(beta: np.ndarray, gamma: np.ndarray, delta: float) -> np.ndarray:
    """Parker weights ``w(beta, gamma)`` for a short scan ``beta`` in ``[0, pi + 2 delta]``.

    Conjugate rays ``(beta, gamma)`` and ``(beta + pi + 2 gamma, -gamma)`` get weights summing to one.
    """
    b = beta[:, None]
    g = gamma[None, :]
    w = np.ones((beta.size, gamma.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = b < 2 * (delta - g)
        w = np.where(rise, np.sin(np.pi / 4 * b / (delta - g)) ** 2, w)
        fall = b > math.pi - 2 * g
        w = np.where(fall, np.sin(np.pi / 4 * (math.pi + 2 * delta - b) / (delta + g)) ** 2, w)
    w = np.where(b > math.pi + 2 * delta, 0.0, w)
    return np.nan_to_num(np.clip(w, 0.0, 1.0))


def _interp(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``values`` ``(B, V, n)`` at fractional bins ``index`` ``(V, P)`` (zero outside)."""
    b, v, n = values.shape
    grid_x = (2.0 * index + 1.0) / n - 1.0
    grid = torch.stack((grid_x, torch.zeros_like(grid_x)), -1).unsqueeze(1)  # (V, 1, P, 2)
    inp = values.permute(1, 0, 2).unsqueeze(2)  # (V, B, 1, n)
    out = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, :, 0].permute(1, 0, 2)  # (B, V, P)


def _fan_weights(geom: Any, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(dbeta per view, redundancy weight per (view, element))``: 1/2 on full scans, Parker otherwise."""
    angles = geom.angles.detach().cpu().numpy()
    n = angles.size
    if n > 1:
        gap = float(np.median(np.abs(np.diff(angles))))
        span = float(abs(angles[-1] - angles[0]) + gap)
    else:
        gap, span = 2 * math.pi, 2 * math.pi
    if span >= 2 * math.pi - 1e-6 or n == 1:
        return angular_weights(angles, 2 * math.pi), np.full((n, gamma.size), 0.5)
    delta = 0.5 * (span - gap - math.pi)
    if delta <= 0:
        raise ValueError(f"a fan-beam short scan needs 180° plus the fan angle; these views span "
                         f"{math.degrees(span):.1f}°")
    sign = 1.0 if angles[-1] >= angles[0] else -1.0
    beta = sign * (angles - angles[0])
    return np.full(n, gap), parker_weights(beta, sign * gamma, delta)


def _parallel(geom: Any, sino: torch.Tensor, filter_name: str | None) -> torch.Tensor:
    q = ramp_filter(sino, geom.det_spacing, filter_name)
    weights = torch.from_numpy(angular_weights(geom.angles.detach().cpu().numpy(), math.pi))

    def weigh(x: torch.Tensor, y: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start: int,
              stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = (x * cos + y * sin - geom.det_offset) / geom.det_spacing + geom.det_count // 2
        return index, weights[start:stop].to(x).view(1, -1, 1)

    return _backproject_views(geom, q, weigh, "parallel")


def _fan(geom: Any, sino: torch.Tensor, filter_name: str | None) -> torch.Tensor:
    d, dsd = geom.source_distance, geom.source_detector_distance
    u = geom.detector_positions().numpy()
    gamma = geom.fan_angles().numpy()
    dbeta, redundancy = _fan_weights(geom, gamma)
    if geom.detector == "flat":
        a = u * d / dsd  # virtual detector through the isocentre
        pre = d / np.sqrt(d * d + a * a)
        q = ramp_filter(sino * torch.from_numpy(pre * redundancy).to(sino), geom.det_spacing * d / dsd, filter_name)
    else:
        step = geom.det_spacing / dsd
        pre = d * np.cos(gamma)
        q = ramp_filter(sino * torch.from_numpy(pre * redundancy).to(sino), step, filter_name, arc_step=step)

    def weigh(x: torch.Tensor, y: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start: int,
              stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        lateral = x * cos + y * sin  # along e_t
        along = d + x * sin - y * cos  # from the source along e_s
        if geom.detector == "flat":
            pos = d * lateral / along
            index = (pos * dsd / d - geom.det_offset) / geom.det_spacing + (geom.det_count - 1) / 2.0
            weight = (d / along) ** 2
        else:
            g = torch.atan2(lateral, along)
            index = (g * dsd - geom.det_offset) / geom.det_spacing + (geom.det_count - 1) / 2.0
            weight = 1.0 / (lateral ** 2 + along ** 2)
        w = torch.from_numpy(dbeta[start:stop]).to(x).view(-1, 1) * weight
        return index, w.unsqueeze(0)

    return _backproject_views(geom, q, weigh, "fan")


def _backproject_views(geom: Any, q: torch.Tensor, weigh: Any, tag: str) -> torch.Tensor:
    """Weighted back-projection of filtered 2-D projections ``q`` (batch, views, detectors), views in chunks.

    ``weigh(x, y, cos, sin, start, stop)`` gives, for views ``start:stop`` and every voxel centre
    ``(x, y)``, the detector index each voxel projects to and its weight (broadcastable to
    ``(batch, views, voxels)``); chunks keep the (views × voxels) arrays within ``_VOXEL_CHUNK``.
    With the Joseph projector the same rule is applied as a cached sparse matrix (``tag`` names it).
    """
    if getattr(geom, "line_integral", "sampled") == "joseph" and q.shape[0] > 0:
        matrix = pixel_matrix(geom, weigh, tag, q.dtype, q.device)
        if matrix is not None:
            return sparse_apply(matrix, q.reshape(q.shape[0], -1)).reshape(-1, *geom.volume_shape)
    x, y = geom.world_coordinates(q.dtype, q.device)
    x, y = x.reshape(-1), y.reshape(-1)
    out = q.new_zeros((q.shape[0], x.numel()))
    chunk = max(1, _VOXEL_CHUNK // max(1, x.numel() * q.shape[0]))
    for start in range(0, geom.n_views, chunk):
        stop = min(start + chunk, geom.n_views)
        cos, sin = (t.to(q.device, q.dtype).view(-1, 1) for t in geom._trig(start, stop))
        index, w = weigh(x, y, cos, sin, start, stop)
        out += (_interp(q[:, start:stop], index) * w).sum(1)
    return out.reshape(-1, *geom.volume_shape)


def _fdk(geom: Any, proj: torch.Tensor, filter_name: str | None) -> torch.Tensor:
    d, dsd = geom.source_distance, geom.source_detector_distance
    v, u = (t.numpy() for t in geom.detector_positions())
    a, b = u * d / dsd, v * d / dsd
    pre = d / np.sqrt(d * d + a[None, :] ** 2 + b[:, None] ** 2)
    dbeta, redundancy = _fan_weights(geom, np.arctan2(u, dsd))
    weighted = proj * torch.from_numpy(pre).to(proj) * torch.from_numpy(redundancy).to(proj).unsqueeze(1)
    q = ramp_filter(weighted, geom.det_spacing[1] * d / dsd, filter_name)  # (B, V, rows, cols)
    rows, cols = geom.det_shape
    x, y, z = (c.reshape(-1) for c in geom.world_coordinates(proj.dtype, proj.device))
    batch = proj.shape[0]
    out = proj.new_zeros((batch, x.numel()))
    chunk = max(1, _VOXEL_CHUNK // max(1, x.numel() * batch))
    for start in range(0, geom.n_views, chunk):
        stop = min(start + chunk, geom.n_views)
        cos, sin = (t.to(proj.device, proj.dtype).view(-1, 1) for t in geom._trig(start, stop))
        z0 = torch.as_tensor(np.asarray(geom._z_shift[start:stop]), dtype=proj.dtype, device=proj.device).view(-1, 1)
        along = d + x * sin - y * cos
        col = (dsd * (x * cos + y * sin) / along - geom.det_offset[1]) / geom.det_spacing[1] + (cols - 1) / 2.0
        row = (dsd * (z - z0) / along - geom.det_offset[0]) / geom.det_spacing[0] + (rows - 1) / 2.0
        grid = torch.stack(((2 * col + 1) / cols - 1, (2 * row + 1) / rows - 1), -1).unsqueeze(1)  # (V,1,P,2)
        img = q[:, start:stop].permute(1, 0, 2, 3)  # (V, B, rows, cols)
        sampled = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, :, 0]
        w = torch.from_numpy(dbeta[start:stop]).to(proj).view(-1, 1) * (d / along) ** 2  # (V, P)
        out += (sampled * w.unsqueeze(1)).sum(0)
    return out.reshape(-1, *geom.volume_shape)


def analytic_reconstruction(geom: Any, projections: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
    """FBP (parallel, fan) or FDK (cone) of ``projections`` ``(..., *projection_shape)``."""
    lead = projections.shape[: projections.ndim - len(geom.projection_shape)]
    flat = projections.reshape(-1, *geom.projection_shape)
    if geom.ndim == 3:
        out = _fdk(geom, flat, filter_name)
    elif getattr(geom, "parallel", False):
        out = _parallel(geom, flat, filter_name)
        if getattr(geom, "clip_to_circle", False):
            out = out * geom.circle_mask.to(out)
    else:
        out = _fan(geom, flat, filter_name)
    return out.reshape(*lead, *geom.volume_shape)
