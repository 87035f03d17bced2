"""Image geometry: :class:`ImageMeta`, and the rules that give an output its geometry from its input's.

Geometry is kept in SimpleITK's ``(x, y, z)`` order (spacing, origin, row-major direction cosines);
arrays are in numpy order ``(z, y, x)``, so :attr:`ImageMeta.spacing_zyx` and
:attr:`ImageMeta.origin_zyx` give napari's ``scale`` and ``translate``.

The output rules live here once for every entry point (CLI, batch, plugin):

- :func:`sr_meta`: a super-resolved image covers the input's area with a finer grid;
- :func:`ct_meta`: a CT reconstruction has pixels as wide as the sinogram's detector bins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..grid import upsampled_grid
from .files import json_safe

__all__ = ["ImageMeta", "sr_meta", "ct_meta"]


def _float_tuple(values: Any, name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in np.asarray(values, dtype=float).ravel())
    except (TypeError, ValueError):
        raise ValueError(f"ImageMeta.{name} must be a sequence of numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"ImageMeta.{name} must be finite, got {out}")
    return out


@dataclass
class ImageMeta:
    """Physical geometry and provenance of an image, in SimpleITK's ``(x, y, z)`` order.

    Args:
        spacing: voxel size per spatial axis, ``(x, y[, z])``.
        origin: world position of the first voxel, ``(x, y[, z])``.
        direction: direction cosines, row-major ``d*d`` values (SimpleITK's ``GetDirection``).
        format: the file format it came from (``"nifti"``, ``"mha"``, ``"nrrd"``, ``"png"``, ``"tiff"``,
            ``"npy"``, ...), or ``""``.
        extra: JSON-able extras: ``dtype`` (original dtype), ``rgb`` (2-D colour), ``metadata``
            (other SimpleITK header keys), ...

    Example::

        viewer.add_image(arr, scale=meta.spacing_zyx, translate=meta.origin_zyx, metadata=meta.to_dict())
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    format: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing = _float_tuple(self.spacing, "spacing")
        self.origin = _float_tuple(self.origin, "origin")
        self.direction = _float_tuple(self.direction, "direction")
        ndim = len(self.spacing)
        if ndim < 1:
            raise ValueError("ImageMeta.spacing must have at least one value")
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"ImageMeta.spacing must be positive, got {self.spacing}")
        if len(self.origin) != ndim:
            raise ValueError(f"ImageMeta.origin has {len(self.origin)} values but spacing has {ndim}")
        if len(self.direction) != ndim * ndim:
            raise ValueError(f"ImageMeta.direction needs {ndim * ndim} values (a {ndim}x{ndim} matrix), "
                             f"got {len(self.direction)}")
        self.format = str(self.format)
        self.extra = dict(self.extra) if self.extra else {}

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.spacing)

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        """Spacing in numpy axis order, e.g. napari's ``scale``."""
        return tuple(reversed(self.spacing))

    @property
    def origin_zyx(self) -> tuple[float, ...]:
        """Origin in numpy axis order, e.g. napari's ``translate``."""
        return tuple(reversed(self.origin))

    @property
    def direction_matrix(self) -> np.ndarray:
        """Direction cosines as a ``(d, d)`` array (columns are the x, y, z axes in world space)."""
        return np.asarray(self.direction, dtype=float).reshape(self.ndim, self.ndim)

    def to_dict(self) -> dict:
        """A JSON-able dict (for ``layer.metadata`` and records); inverse of :meth:`from_dict`."""
        return {
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
            "format": self.format,
            "extra": json_safe(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageMeta:
        """Rebuild from :meth:`to_dict` output; ``origin``/``direction`` default to zero/identity."""
        if not isinstance(d, Mapping) or "spacing" not in d:
            raise ValueError("ImageMeta.from_dict needs a mapping with at least 'spacing'")
        ndim = len(np.ravel(d["spacing"]))
        default = cls.default(ndim)
        return cls(
            spacing=d["spacing"],
            origin=d.get("origin", default.origin),
            direction=d.get("direction", default.direction),
            format=d.get("format", ""),
            extra=dict(d.get("extra") or {}),
        )

    @classmethod
    def default(cls, ndim: int, format: str = "") -> ImageMeta:
        """Unit spacing, zero origin, identity direction for ``ndim`` spatial axes."""
        if int(ndim) < 1:
            raise ValueError(f"ndim must be >= 1, got {ndim}")
        ndim = int(ndim)
        return cls((1.0,) * ndim, (0.0,) * ndim, tuple(np.eye(ndim).ravel()), format=format)


# --------------------------------------------------------------------------------------------------
# output geometry
# --------------------------------------------------------------------------------------------------


def sr_meta(meta: ImageMeta, scale: int, ndim: int | None = None) -> ImageMeta:
    """Geometry of the ``scale``-times finer grid covering the same area as ``meta``'s.

    The rule is :func:`reconstruct.grid.upsampled_grid` (both grids start at the same edge); direction,
    format and extras are kept.

    Args:
        meta: the input image's geometry.
        scale: the integer up-sampling factor per axis.
        ndim: the spatial axes of the output; when given and ``meta`` has another number, the output
            gets unit geometry (``ImageMeta.default(ndim)``) instead.
    """
    if ndim is not None and meta.ndim != ndim:
        return ImageMeta.default(ndim, format=meta.format)
    spacing, origin = upsampled_grid(meta.spacing, meta.origin, scale, meta.direction_matrix)
    return ImageMeta(spacing, origin, meta.direction, format=meta.format, extra=dict(meta.extra))


def ct_meta(meta: ImageMeta, layout: str) -> ImageMeta:
    """Geometry of a CT reconstruction from its sinogram's: pixels as wide as the detector bins.

    Origin and direction are kept; the header keys of the sinogram (``extra["metadata"]``) are
    dropped, as they describe the measurement, not the image. A sinogram that is not 2-D gives unit
    2-D geometry.

    Args:
        meta: the sinogram's geometry.
        layout: ``"skimage"`` (detector bins on rows, angles on columns) or ``"torch"`` (angles on rows).
    """
    if meta.ndim != 2:
        return ImageMeta.default(2, format=meta.format)
    # numpy rows are SimpleITK's y axis: skimage layout (detectors x angles) has detectors on rows
    det_spacing = meta.spacing[1] if layout == "skimage" else meta.spacing[0]
    return ImageMeta((det_spacing, det_spacing), meta.origin, meta.direction, format=meta.format,
                     extra={k: v for k, v in meta.extra.items() if k != "metadata"})
