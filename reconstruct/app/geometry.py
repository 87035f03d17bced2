"""Output geometry by a task's ``output_grid``: the one rule ``nestnet batch`` and the MONAI transforms share.

:func:`output_meta` turns the input's :class:`~reconstruct.app.meta.ImageMeta` into the output's, by
``spec.output_grid``:

- ``"same"``: the input's geometry;
- ``"upsampled"``: :func:`reconstruct.app.meta.sr_meta` (``scale`` times finer, same area covered);
  for a stack of frames (MISR) the frame grid is the first two axes;
- ``"detector"``: :func:`reconstruct.app.meta.ct_meta` (pixels as wide as the detector bins);
- ``"own"``: the task's own grid, from the coordinate axes it reports (the PINN's ``x`` and ``t``).

:func:`index_map` expresses the same rule as a map from output array indices to input array indices,
which is what an index-to-world affine (MONAI's ``MetaTensor.affine``) needs: ``affine_out = affine_in @
M``. Both call :func:`output_meta`, so the two front doors cannot disagree.

Nothing here imports Dask, MONAI or torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .meta import ImageMeta, ct_meta, sr_meta

__all__ = ["output_meta", "index_map", "own_grid_meta", "frame_meta", "OWN_GRID_AXES"]

#: ``result.extras`` keys of the coordinate axes of an ``"own"`` output grid, in numpy axis order.
OWN_GRID_AXES: tuple[str, ...] = ("x", "t")


def frame_meta(meta: ImageMeta, ndim: int) -> ImageMeta:
    """The geometry of the first ``ndim`` axes of ``meta`` (a frame of a stack); ``meta`` when it has ``ndim``."""
    if meta.ndim == ndim:
        return meta
    if meta.ndim < ndim:
        return ImageMeta.default(ndim, format=meta.format)
    direction = meta.direction_matrix[:ndim, :ndim]
    if not np.allclose(direction @ direction.T, np.eye(ndim), atol=1e-6):
        direction = np.eye(ndim)  # the stack axis is mixed into the frame's: no clean frame geometry
    return ImageMeta(meta.spacing[:ndim], meta.origin[:ndim], tuple(direction.ravel()), format=meta.format,
                     extra=dict(meta.extra))


def own_grid_meta(extras: Mapping[str, Any] | None, fmt: str = "") -> ImageMeta | None:
    """Geometry of an ``"own"`` grid from the task's coordinate axes (regular ones), or None.

    A task that reports no axes but ``extras["spacing"]`` and ``extras["origin"]`` (numpy order, e.g. the
    3-D CT volume's ``(z, y, x)`` mm) gets that grid with identity directions.
    """
    extras = extras or {}
    if not any(k in extras for k in OWN_GRID_AXES) and extras.get("spacing") is not None \
            and extras.get("origin") is not None:
        spacing = [float(v) for v in np.ravel(extras["spacing"])]
        origin = [float(v) for v in np.ravel(extras["origin"])]
        if len(spacing) != len(origin):
            return None
        return ImageMeta(tuple(reversed(spacing)), tuple(reversed(origin)), tuple(np.eye(len(spacing)).ravel()),
                         format=fmt)
    axes = [np.asarray(extras.get(k), dtype=np.float64).ravel() for k in OWN_GRID_AXES if k in extras]
    if len(axes) != len(OWN_GRID_AXES) or any(a.size < 2 for a in axes):
        return None
    steps = [float(a[1] - a[0]) for a in axes]
    if any(s <= 0 or not np.allclose(np.diff(a), s, rtol=1e-4) for a, s in zip(axes, steps)):
        return None
    # numpy axes (x, t) are SimpleITK's (y, x): reverse into the meta's order
    return ImageMeta(tuple(reversed(steps)), tuple(float(a[0]) for a in reversed(axes)),
                     tuple(np.eye(len(axes)).ravel()), format=fmt)


def output_meta(spec: Any, meta: ImageMeta | None, params: Mapping[str, Any], *, ndim: int | None = None,
                extras: Mapping[str, Any] | None = None) -> ImageMeta | None:
    """The output's geometry from the input's, by ``spec.output_grid``.

    Args:
        spec: the task's :class:`~reconstruct.tasks.spec.TaskSpec`.
        meta: the input's geometry (None: unit geometry for ``"same"``/``"upsampled"``/``"detector"``).
        params: the task parameters that ran (``scale``, ``layout``).
        ndim: spatial axes of the output (for a frame stack, fewer than the input's).
        extras: the result's extras (``"own"`` grids).
    """
    grid = spec.output_grid
    if grid == "own":
        return own_grid_meta(extras, meta.format if meta is not None else "")
    if meta is None:
        return None
    if grid == "same":
        return meta
    if grid == "upsampled":
        base = frame_meta(meta, ndim) if ndim is not None else meta
        return sr_meta(base, int(params["scale"]), ndim)
    if grid == "detector":
        return ct_meta(meta, str(params["layout"]))
    raise ValueError(f"task {spec.name} has an unknown output grid {grid!r}")


def index_map(spec: Any, spacing: Sequence[float], params: Mapping[str, Any]) -> np.ndarray:
    """``(d+1, d+1)`` map from output indices to input indices, in the meta's ``(x, y[, z])`` axis order.

    Args:
        spec: the task's spec (``output_grid`` ``"same"``, ``"upsampled"`` or ``"detector"``).
        spacing: the input's spacing per axis (world length of one index step), ``(x, y[, z])`` order.
        params: the task parameters that ran.

    The rules keep directions and shift origins along them, so the map follows from spacings alone:
    an input with unit direction and zero origin is taken through :func:`output_meta`.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    d = spacing.size
    meta_in = ImageMeta(tuple(spacing), (0.0,) * d, tuple(np.eye(d).ravel()))
    meta_out = output_meta(spec, meta_in, params, ndim=d)
    out = np.eye(d + 1)
    out[:d, :d] = np.diag(np.asarray(meta_out.spacing) / spacing)
    out[:d, d] = np.asarray(meta_out.origin) / spacing
    return out
