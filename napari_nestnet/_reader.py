"""napari reader for medical volumes (NIfTI, MetaImage, NRRD) through :func:`reconstruct.io.read_image`.

The layer shows the volume in world coordinates: ``scale`` and ``translate`` are the file's spacing
and origin and ``rotate`` its direction cosines, all in numpy axis order (napari's world point of
voxel ``i`` is ``rotate @ (scale * i) + translate``, ITK's ``origin + D @ (spacing * i)`` reversed),
so anisotropic and oriented volumes line up with each other.  The whole
:class:`reconstruct.io.ImageMeta` (direction, header keys as stored, dtype) is kept in
``layer.metadata["image_meta"]`` for the writer, and the header keys typed as MONAI's readers give
them (numbers, arrays) in ``layer.metadata["header"]``.

Choosing this reader without naming it
--------------------------------------
npe2 readers have no priority, and napari's built-in reader also claims ``.nii``, ``.mha``,
``.mhd`` and ``.nrrd`` (it opens them with unit scale, no origin, no direction; ``.nii.gz`` it cannot
read).  What napari allows:

* ``viewer.open(path)`` always uses napari's built-in reader (its ``plugin`` defaults to
  ``"napari"``); pass ``plugin="napari-nestnet"`` or ``plugin=None`` (below).
* ``viewer.open(path, plugin=None)``, *File → Open*, drag and drop and ``napari file.nii.gz`` use
  the reader preferred for the file pattern in napari's settings
  (``settings.plugins.extension2reader``); without a preference the GUI asks (its *Remember this
  choice* box saves one) and ``viewer.open(..., plugin=None)`` raises ``MultipleReaderError``.

One line makes this plugin the preferred reader for its formats, saved with napari's settings
(:func:`prefer_this_reader`)::

    python -c "from napari_nestnet._reader import prefer_this_reader; prefer_this_reader()"

or, for one session, the environment variable (napari reads its settings from ``NAPARI_*``)::

    export NAPARI_PLUGINS_EXTENSION2READER='{"*.nii": "napari-nestnet", "*.nii.gz": "napari-nestnet",
        "*.mha": "napari-nestnet", "*.mhd": "napari-nestnet", "*.nrrd": "napari-nestnet"}'

(*Preferences → Plugins → File extension readers* sets the same table.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["napari_get_reader", "read_volume", "prefer_this_reader", "direction_to_rotate", "READER_SUFFIXES",
           "READER_PATTERNS", "PLUGIN_NAME"]

#: File suffixes this reader claims (the manifest's ``filename_patterns`` list the same).
READER_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")
#: The manifest's ``filename_patterns``, the keys of napari's reader preference.
READER_PATTERNS: tuple[str, ...] = tuple(f"*{s}" for s in READER_SUFFIXES)
#: The npe2 plugin name (``napari.yaml``'s ``name``).
PLUGIN_NAME = "napari-nestnet"

# Integer volumes whose file name says so open as Labels layers (segmentations, occupancy masks).
_LABEL_HINTS = ("label", "seg", "mask", "occupancy")

LayerData = tuple[Any, dict, str]


def _claims(path: Any) -> bool:
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(READER_SUFFIXES)


def napari_get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[LayerData]] | None:
    """Return :func:`read_volume` when every path is a volume this plugin reads, else ``None``.

    Args:
        path: one path or a list of paths, as napari passes them.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(_claims(p) for p in paths):
        return None
    return read_volume


def direction_to_rotate(direction: Any, ndim: int) -> np.ndarray:
    """napari's ``rotate`` (numpy axis order) from SimpleITK's row-major direction cosines ``(x, y, z)``.

    Reversing the axis order reverses rows and columns: ``rotate = D[::-1, ::-1]``.  A reflection
    (determinant −1, common in NIfTI) is kept as it is; napari's ``rotate`` accepts any orthonormal
    matrix.
    """
    return np.asarray(direction, dtype=float).reshape(ndim, ndim)[::-1, ::-1].copy()


def _layer_for(path: Path) -> LayerData:
    from reconstruct.app.monai_reader import typed_header
    from reconstruct.io import read_image

    data, meta = read_image(path)
    name = path.name
    for suffix in READER_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    components = int(meta.extra.get("components", 1))
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": meta.spacing_zyx,
        "translate": meta.origin_zyx,
        "rotate": direction_to_rotate(meta.direction, meta.ndim),
        "metadata": {"image_meta": meta.to_dict(), "header": typed_header(meta.extra.get("metadata") or {}),
                     "source_path": str(path)},
    }
    if components > 1:
        if meta.ndim == 2 and components in (3, 4):
            kwargs["rgb"] = True
        else:
            # One layer per component, each with the volume's geometry.
            kwargs["channel_axis"] = data.ndim - 1
    layer_type = "image"
    if components == 1 and data.dtype.kind in "iub" and any(h in name.lower() for h in _LABEL_HINTS):
        layer_type = "labels"
        data = data.astype(int, copy=False) if data.dtype.kind == "b" else data
    return data, kwargs, layer_type


def read_volume(path: str | Sequence[str]) -> list[LayerData]:
    """Read one or more volumes into napari layer data tuples.

    Args:
        path: a ``.nii``/``.nii.gz``/``.mha``/``.mhd``/``.nrrd`` path or a list of them.

    Returns:
        ``[(data, kwargs, "image" | "labels"), ...]`` with ``scale``, ``translate``, ``rotate`` and
        ``metadata["image_meta"]`` set.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [_layer_for(Path(p)) for p in paths]


def prefer_this_reader(settings: Any = None) -> dict[str, str]:
    """Make this plugin napari's preferred reader for ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd`` and ``.nrrd``.

    Sets napari's ``settings.plugins.extension2reader`` for :data:`READER_PATTERNS` (other patterns are
    left alone); napari saves its settings, so this lasts across sessions.  Afterwards *File → Open*,
    drag and drop, ``napari scan.nii.gz`` and ``viewer.open(path, plugin=None)`` open these files with
    their geometry (``viewer.open(path)`` without ``plugin`` keeps using napari's built-in reader).

    Args:
        settings: a napari settings object (default: ``napari.settings.get_settings()``).

    Returns:
        The new ``extension2reader`` table.
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    table = {**settings.plugins.extension2reader, **{pattern: PLUGIN_NAME for pattern in READER_PATTERNS}}
    settings.plugins.extension2reader = table
    return dict(settings.plugins.extension2reader)
