"""Sparse system matrices for the 2-D geometries: Joseph's ray-driven projector and the FBP back-projector.

On a CPU the matrix-free ray sampler of :mod:`._core` spends most of its time on coordinates and
four-neighbour interpolation, and scikit-image's rotate-and-sum is faster at batch 1. A 2-D
projector is a fixed sparse linear map, so it is built once per geometry, dtype and device and then
applied with a sparse × dense product (MKL on CPU, cuSPARSE on CUDA), for any batch at once.

- :func:`joseph_matrix` — Joseph (1982): every ray is sampled once per row (or per column, whichever
  axis the ray crosses faster) with linear interpolation between the two neighbouring voxels along
  the other axis, weighted by the ray length per row. ASTRA's ``linear`` 2-D projector is this one.
  The adjoint is the transpose of the *same* entries (stored as its own CSR matrix), so
  ``<A x, y> = <x, A^T y>`` holds to rounding.
- :func:`pixel_matrix` — the pixel-driven back-projection of FBP (each voxel reads its filtered
  projection by linear interpolation at its detector coordinate, times a weight).

A matrix is only built when it fits :func:`budget_bytes` (``NESTNET_PROJECTOR_MATRIX_MB``, default
4096 MB per matrix), for float32/float64 on CPU or CUDA; otherwise :func:`joseph_apply` generates the
same entries chunk by chunk (the same operator, memory bounded) and FBP uses its chunked loop.
Matrices are cached per geometry object (weakly: they go with it, and are never pickled or copied
into :meth:`Projector.with_views` subsets).
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["budget_bytes", "interpolation_matrix", "joseph_apply", "joseph_matrix", "pixel_matrix", "sparse_apply",
           "matrix_dtypes"]

#: dtypes a sparse CSR product supports on every device we run on.
matrix_dtypes = (torch.float32, torch.float64)

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Ray (or voxel) rows generated per chunk while building: bounds the build's temporaries.
_BUILD_ROWS = 1 << 22


def budget_bytes() -> int:
    """Largest matrix (values + column indices) built, from ``NESTNET_PROJECTOR_MATRIX_MB`` (default 4096)."""
    raw = os.environ.get("NESTNET_PROJECTOR_MATRIX_MB", "4096")
    try:
        return max(0, int(float(raw) * 2 ** 20))
    except ValueError:
        return 4096 * 2 ** 20


def _fits(nnz_bound: int, dtype: torch.dtype) -> bool:
    item = torch.finfo(dtype).bits // 8
    return nnz_bound * (item + 4) <= budget_bytes()


def _cached(geom: Any, key: tuple, build: Callable[[], Any]) -> Any:
    store = _CACHE.setdefault(geom, {})
    if key not in store:
        store[key] = build()
    return store[key]


def _csr(counts: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, size: tuple[int, int],
         dtype: torch.dtype, device: Any) -> torch.Tensor:
    # int32 indices halve the memory and are what MKL / cuSPARSE take fastest
    index_dtype = torch.int32 if cols.numel() < 2 ** 31 - 1 else torch.int64
    crow = torch.zeros(counts.numel() + 1, dtype=torch.int64, device=counts.device)
    torch.cumsum(counts, 0, out=crow[1:])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow.to(index_dtype), cols.to(index_dtype), vals.to(dtype), size=size,
                                       device=device, check_invariants=False)


def _transpose(matrix: torch.Tensor) -> torch.Tensor:
    """The CSR matrix of ``matrix``'s transpose: the same entries, ordered by column (a stable sort)."""
    crow, cols, vals = matrix.crow_indices(), matrix.col_indices(), matrix.values()
    counts = crow[1:] - crow[:-1]
    order = torch.sort(cols, stable=True).indices
    rows = torch.repeat_interleave(torch.arange(counts.numel(), dtype=cols.dtype, device=cols.device), counts)
    col_counts = torch.bincount(cols.to(torch.int64), minlength=matrix.shape[1])
    return _csr(col_counts, rows[order], vals[order], (matrix.shape[1], matrix.shape[0]), vals.dtype, vals.device)


def _joseph_blocks(geom: Any, dtype: torch.dtype, device: torch.device) -> Iterator[tuple[int, torch.Tensor,
                                                                                       torch.Tensor, torch.Tensor]]:
    """Per chunk of views: ``(first ray, entries per ray, voxel index, weight in mm)``, rays in order."""
    ny, nx = geom.volume_shape
    cy, cx = geom.centre_index
    sy, sx = geom.spacing
    ox, oy = geom.volume_offset
    n_det = math.prod(geom.det_shape)
    n_drive = max(ny, nx)
    k = torch.arange(n_drive, dtype=torch.float64, device=device)
    ki = torch.arange(n_drive, dtype=torch.int32, device=device)
    views = max(1, _BUILD_ROWS // max(1, n_det * n_drive))
    for start in range(0, geom.n_views, views):
        origins, directions = geom.rays(start, min(start + views, geom.n_views))
        origins, directions = origins.reshape(-1, 2).to(device), directions.reshape(-1, 2).to(device)
        col0 = cx + (origins[:, 0] - ox) / sx
        row0 = cy - (origins[:, 1] - oy) / sy
        dcol, drow = directions[:, 0] / sx, -directions[:, 1] / sy
        by_rows = drow.abs() >= dcol.abs()  # the ray crosses rows faster: one sample per row
        lead = torch.where(by_rows, drow, dcol)
        slope = torch.where(by_rows, dcol, drow) / lead
        intercept = torch.where(by_rows, col0, row0) - torch.where(by_rows, row0, col0) * slope
        length = (1.0 / lead.abs()).unsqueeze(1)  # ray length (mm) per row or column
        other = torch.where(by_rows, nx, ny).to(torch.int32).unsqueeze(1)
        stride_k = torch.where(by_rows, nx, 1).to(torch.int32).unsqueeze(1)
        stride_j = torch.where(by_rows, 1, nx).to(torch.int32).unsqueeze(1)
        pos = intercept.unsqueeze(1) + k * slope.unsqueeze(1)  # (R, n_drive): position on the other axis
        low = torch.floor(pos)
        frac = pos - low
        j = low.clamp_(-2, n_drive + 1).to(torch.int32)
        left = ki * stride_k + j * stride_j
        valid = torch.stack(((j >= 0) & (j < other), (j >= -1) & (j < other - 1)), -1)
        if ny != nx:  # rays driven along the shorter axis run out of rows or columns
            valid &= (ki < torch.where(by_rows, ny, nx).unsqueeze(1)).unsqueeze(2)
        voxel = torch.stack((left, left + stride_j), -1)
        weight = torch.stack(((1.0 - frac) * length, frac * length), -1)
        yield (start * n_det, valid.reshape(valid.shape[0], -1).sum(1), torch.masked_select(voxel, valid),
               torch.masked_select(weight, valid).to(dtype))


def _matrix_dtype(dtype: torch.dtype) -> torch.dtype:
    # half / bfloat16 data use a float32 operator (sparse products do not take them everywhere)
    return dtype if dtype in matrix_dtypes else torch.float32


def joseph_matrix(geom: Any, dtype: torch.dtype, device: Any, transpose: bool = False) -> torch.Tensor | None:
    """``A`` (or ``A^T``) of a 2-D geometry as CSR, or ``None`` when a matrix does not apply or fit.

    ``A^T`` is built from ``A`` the first time an adjoint is asked for, so forward-only use never pays it.
    """
    device = torch.device(device)
    if geom.ndim != 2 or dtype not in matrix_dtypes or device.type not in ("cpu", "cuda"):
        return None
    if not _fits(2 * geom.n_views * math.prod(geom.det_shape) * max(geom.volume_shape), dtype):
        return None

    def build() -> torch.Tensor:
        blocks = list(_joseph_blocks(geom, dtype, device))
        counts, cols, vals = (torch.cat([b[i] for b in blocks]) for i in (1, 2, 3))
        size = (geom.n_views * math.prod(geom.det_shape), math.prod(geom.volume_shape))
        return _csr(counts, cols, vals, size, dtype, device)

    forward = _cached(geom, ("joseph", dtype, device), build)
    if not transpose:
        return forward
    return _cached(geom, ("joseph_t", dtype, device), lambda: _transpose(forward))


def joseph_apply(geom: Any, value: torch.Tensor, transpose: bool) -> torch.Tensor:
    """``A x`` (``value`` ``(B, voxels)``) or ``A^T y`` (``(B, rays)``) of Joseph's projector: ``(B, rays | voxels)``.

    With the cached matrix when it applies and fits; otherwise the same entries are generated per chunk
    of views and applied by gather / ``index_add`` (the same operator, memory bounded, slower).
    """
    dtype = _matrix_dtype(value.dtype)
    work = value.to(dtype)
    matrix = joseph_matrix(geom, dtype, work.device, transpose)
    if matrix is not None:
        return sparse_apply(matrix, work).to(value.dtype)
    n_rays, n_vox = geom.n_views * math.prod(geom.det_shape), math.prod(geom.volume_shape)
    out = work.new_zeros((work.shape[0], n_vox if transpose else n_rays))
    for first, counts, cols, vals in _joseph_blocks(geom, dtype, work.device):
        rays = first + torch.repeat_interleave(torch.arange(counts.numel(), device=work.device), counts)
        cols = cols.to(torch.int64)
        if transpose:
            out.index_add_(1, cols, work[:, rays] * vals)
        else:
            out.index_add_(1, rays, work[:, cols] * vals)
    return out.to(value.dtype)


def interpolation_matrix(owner: Any, tag: Any, n_voxels: int, n_views: int, n_bins: int,
                         taps: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                         dtype: torch.dtype, device: Any) -> torch.Tensor | None:
    """A pixel-driven back-projection ``(voxels, views × bins)`` as CSR (cached on ``owner`` under ``tag``).

    ``taps(start, stop)`` gives, for voxels ``start:stop`` and every view, the lower detector bin each
    voxel reads and the weights of that bin and the next, each ``(voxels, views)`` on ``device``
    (linear interpolation times any back-projection weight); bins outside ``[0, n_bins)`` read zero.
    ``None`` when the dtype or device takes no sparse product or the matrix would not fit the budget.
    """
    device = torch.device(device)
    if dtype not in matrix_dtypes or device.type not in ("cpu", "cuda") or not _fits(2 * n_voxels * n_views, dtype):
        return None

    def build() -> torch.Tensor:
        per = max(1, _BUILD_ROWS // max(1, n_views))
        view_base = (torch.arange(n_views, device=device) * n_bins).view(1, -1, 1)
        counts, cols, vals = [], [], []
        for start in range(0, n_voxels, per):
            lower, w_lower, w_upper = taps(start, min(start + per, n_voxels))
            j = lower.to(torch.int64).unsqueeze(2) + torch.tensor([0, 1], device=device)
            w = torch.stack((w_lower, w_upper), -1)
            valid = (j >= 0) & (j < n_bins) & (w != 0)
            counts.append(valid.reshape(valid.shape[0], -1).sum(1))
            cols.append(torch.masked_select(view_base + j, valid).to(torch.int32))
            vals.append(torch.masked_select(w, valid).to(dtype))
        return _csr(torch.cat(counts), torch.cat(cols), torch.cat(vals), (n_voxels, n_views * n_bins), dtype,
                    device)

    return _cached(owner, ("pixel", tag, dtype, device), build)


def pixel_matrix(geom: Any, weigh: Callable[..., tuple[torch.Tensor, torch.Tensor]], tag: str,
                 dtype: torch.dtype, device: Any) -> torch.Tensor | None:
    """FBP's back-projection of a 2-D geometry as CSR, from the rule ``weigh`` of ``fbp._backproject_views``.

    ``weigh(x, y, cos, sin, start, stop)`` gives, for views ``start:stop`` and voxel centres ``(x, y)``,
    the fractional detector index and the weight; ``tag`` names the rule in the cache.
    """
    device = torch.device(device)
    x, y = (c.reshape(-1) for c in geom.world_coordinates(torch.float64, device))
    cos, sin = (t.to(device).view(-1, 1) for t in geom._trig(0, geom.n_views))

    def taps(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, weight = weigh(x[start:stop], y[start:stop], cos, sin, 0, geom.n_views)
        weight = torch.broadcast_to(weight.reshape(weight.shape[-2:]), index.shape)
        index, weight = index.T, weight.T  # (voxels, views)
        lower = torch.floor(index)
        frac = index - lower
        return lower, (1.0 - frac) * weight, frac * weight

    return interpolation_matrix(geom, tag, x.numel(), geom.n_views, geom.det_shape[-1], taps, dtype, device)


def sparse_apply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix @ x_b`` for every row ``x_b`` of ``x`` ``(B, n)``: ``(B, m)``."""
    return torch.sparse.mm(matrix, x.t().contiguous()).t()
