"""napari writers: image and labels layers to NIfTI, MetaImage or NRRD with their geometry.

Spacing and origin come from the layer's ``scale`` and ``translate`` (what the user sees in the
viewer); the direction cosines, original format and header keys come from
``layer.metadata["image_meta"]`` when the layer was opened by this plugin's reader (or produced by
one of its panels from such a layer), identity otherwise.  A layer read and written back unchanged
therefore keeps spacing, origin and direction exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_image_layer", "write_labels_layer", "layer_image_meta"]


def layer_image_meta(data: Any, attributes: dict) -> Any:
    """The :class:`reconstruct.io.ImageMeta` for a layer's data and napari attributes.

    Args:
        data: the layer data (numpy order; RGB layers have a trailing channel axis).
        attributes: napari's layer attributes (``scale``, ``translate``, ``metadata``, ``rgb``).
    """
    from reconstruct.io import ImageMeta

    ndim = np.ndim(data) - (1 if attributes.get("rgb", False) else 0)
    stored = (attributes.get("metadata") or {}).get("image_meta")
    base = ImageMeta.default(ndim)
    if isinstance(stored, dict) and len(np.ravel(stored.get("spacing", ()))) == ndim:
        base = ImageMeta.from_dict(stored)
    scale = attributes.get("scale")
    translate = attributes.get("translate")
    # napari's scale/translate are in numpy order (z, y, x); ImageMeta is in SimpleITK's (x, y, z).
    spacing = base.spacing if scale is None else tuple(float(s) for s in reversed(np.ravel(scale)[-ndim:]))
    origin = base.origin if translate is None else tuple(float(t) for t in reversed(np.ravel(translate)[-ndim:]))
    return ImageMeta(spacing, origin, base.direction, format=base.format, extra=base.extra)


def _write(path: str, data: Any, attributes: dict) -> list[str]:
    from reconstruct.io import write_image

    arr = np.asarray(data)
    meta = layer_image_meta(arr, attributes)
    # napari's save dialog has already asked before replacing an existing file.
    written = write_image(Path(path), arr, meta, overwrite=True)
    return [str(written)]


def write_image_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one image layer; returns the written path (napari's single-layer writer contract).

    Args:
        path: target file (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``).
        data: the layer data.
        attributes: the layer's attributes as napari passes them.
    """
    return _write(path, data, attributes)


def write_labels_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one labels layer (integer voxels) with its geometry; see :func:`write_image_layer`."""
    arr = np.asarray(data)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    return _write(path, arr, attributes)
