"""napari reader for medical volumes (NIfTI, MetaImage, NRRD) through :func:`reconstruct.io.read_image`.

The layer's ``scale`` and ``translate`` come from the file's spacing and origin (numpy axis order), so
volumes with anisotropic voxels look right and line up with other layers in world coordinates; the
whole :class:`reconstruct.io.ImageMeta` (direction, header keys, stored dtype) is kept in
``layer.metadata["image_meta"]`` for the writer to restore.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["napari_get_reader", "read_volume", "READER_SUFFIXES"]

#: File suffixes this reader claims (the manifest's ``filename_patterns`` list the same).
READER_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")

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


def _layer_for(path: Path) -> LayerData:
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
        "metadata": {"image_meta": meta.to_dict(), "source_path": str(path)},
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
        ``[(data, kwargs, "image" | "labels"), ...]`` with ``scale``, ``translate`` and
        ``metadata["image_meta"]`` set.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [_layer_for(Path(p)) for p in paths]
