"""The ray-driven projector core shared by every geometry, and its exact adjoint.

A geometry (:mod:`reconstruct.projectors.geometry`) describes its rays: for a range of views it gives
each detector element's ray as ``origin + t * direction`` (world millimetres, unit direction) and the
range of ``t`` that crosses the volume's bounding sphere. The forward projection samples every ray at
``K`` equally spaced points (step ``h`` mm) with linear interpolation (``grid_sample``, zero outside
the volume) and returns ``h * sum``: the line integral in (value × mm).

The back-projection is the transpose of exactly that linear map: ``grid_sampler_*_backward`` scatters
each ray sample back onto the voxels with the same interpolation weights, so
``<A x, y> = <x, A^T y>`` holds to floating-point rounding for every geometry, detector spacing and
angle set. Both directions are autograd functions whose derivative is the other one, so they are
differentiable to any order (gradcheck in float64).

Memory is bounded by processing views in chunks of at most :data:`CHUNK_ELEMENTS` ray samples × batch.

2-D geometries with ``line_integral="joseph"`` (their default) use Joseph's projector of
:mod:`._matrix` instead (a cached sparse matrix within its memory budget, the same entries chunk by
chunk beyond it); its adjoint is its transpose, so the same autograd functions below serve both.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._matrix import joseph_apply

__all__ = ["CHUNK_ELEMENTS", "project", "backproject", "views_per_chunk"]

#: Upper bound on ray samples × batch held at once (about 128 MB in float32).
CHUNK_ELEMENTS = 1 << 25


def views_per_chunk(batch: int, samples_per_view: int) -> int:
    """How many views one chunk holds within :data:`CHUNK_ELEMENTS` (at least one)."""
    return max(1, CHUNK_ELEMENTS // max(1, batch * samples_per_view))


def _grid_sample(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _grid_sample_adjoint(values: torch.Tensor, shape: tuple[int, ...], grid: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`_grid_sample` w.r.t. the volume: scatter ``values`` with the same weights."""
    like = values.new_zeros((1,) * len(shape)).expand(shape)
    if grid.shape[-1] == 2:
        out, _ = torch.ops.aten.grid_sampler_2d_backward(values, like, grid, 0, 0, False, [True, False])
    else:
        out, _ = torch.ops.aten.grid_sampler_3d_backward(values, like, grid, 0, 0, False, [True, False])
    return out


def _joseph(geom: Any, value: torch.Tensor) -> bool:
    return getattr(geom, "line_integral", "sampled") == "joseph" and value.shape[0] > 0


def _forward_raw(x: torch.Tensor, geom: Any) -> torch.Tensor:
    """``x`` ``(B, *volume)`` -> projections ``(B, n_views, *detector)``."""
    batch = x.shape[0]
    if _joseph(geom, x):
        return joseph_apply(geom, x.reshape(batch, -1), transpose=False).reshape(batch, geom.n_views,
                                                                                  *geom.det_shape)
    out = x.new_zeros((batch, geom.n_views, *geom.det_shape))
    if batch == 0:
        return out
    volume = x.unsqueeze(0)  # the batch becomes channels: every image shares the sampling grid
    chunk = views_per_chunk(batch, geom.samples_per_view)
    for start in range(0, geom.n_views, chunk):
        stop = min(start + chunk, geom.n_views)
        grid, step = geom.sample_grid(start, stop, x.dtype, x.device)
        sampled = _grid_sample(volume, grid)  # (1, B, ..., K)
        out[:, start:stop] = sampled.sum(-1).reshape(batch, stop - start, *geom.det_shape) * step
    return out


def _adjoint_raw(y: torch.Tensor, geom: Any) -> torch.Tensor:
    """``y`` ``(B, n_views, *detector)`` -> volumes ``(B, *volume)``: the exact transpose of the forward."""
    batch = y.shape[0]
    if _joseph(geom, y):
        return joseph_apply(geom, y.reshape(batch, -1), transpose=True).reshape(batch, *geom.volume_shape)
    shape = (1, batch, *geom.volume_shape)
    out = y.new_zeros(shape)
    if batch == 0:
        return out[0]
    chunk = views_per_chunk(batch, geom.samples_per_view)
    for start in range(0, geom.n_views, chunk):
        stop = min(start + chunk, geom.n_views)
        grid, step = geom.sample_grid(start, stop, y.dtype, y.device)
        k = grid.shape[-2]
        values = (y[:, start:stop] * step).reshape(1, batch, *grid.shape[1:-2], 1).expand(
            1, batch, *grid.shape[1:-2], k).contiguous()
        out += _grid_sample_adjoint(values, shape, grid)
    return out[0]


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, geom: Any) -> torch.Tensor:
        ctx.geom = geom
        return _forward_raw(x, geom)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _BackProject.apply(grad.contiguous(), ctx.geom), None


class _BackProject(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, geom: Any) -> torch.Tensor:
        ctx.geom = geom
        return _adjoint_raw(y, geom)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _Project.apply(grad.contiguous(), ctx.geom), None


def project(x: torch.Tensor, geom: Any) -> torch.Tensor:
    """Differentiable forward projection of ``(B, *volume)`` (its gradient is :func:`backproject`)."""
    return _Project.apply(x, geom)


def backproject(y: torch.Tensor, geom: Any) -> torch.Tensor:
    """Differentiable exact adjoint of :func:`project` (its gradient is :func:`project`)."""
    return _BackProject.apply(y, geom)
