"""napari writers: image and labels layers to NIfTI, MetaImage or NRRD with their geometry.

The geometry written is what the viewer shows: the layer's data-to-world transform (``scale``,
``translate``, ``rotate``, ``shear`` and ``affine``, numpy axis order) gives spacing, origin and
direction cosines, turned into SimpleITK's ``(x, y, z)`` order.  When the layer shows no rotation
(its transform is only ``scale`` and ``translate``) the direction comes from
``layer.metadata["image_meta"]`` if it has one (results of this plugin's panels keep the source's
geometry there), identity otherwise; the original format and header keys always come from there.
A layer read by this plugin's reader and written back unchanged therefore keeps spacing, origin and
direction exactly.  A sheared layer (no orthonormal direction) cannot be written and says so.

:func:`write_layers` writes several layers at once (napari's *Save All Layers* / ``viewer.layers.save``
with more than one layer): ``study.nii.gz`` becomes ``study_<layer name>.nii.gz``, one file per layer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_image_layer", "write_labels_layer", "write_layers", "layer_image_meta", "layer_world_transform"]

_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def layer_world_transform(attributes: dict, ndim: int) -> np.ndarray:
    """The ``(ndim + 1)²`` homogeneous data-to-world matrix of a layer's attributes (numpy axis order).

    napari maps data to world by ``affine`` after the ``scale``/``shear``/``rotate``/``translate``
    transform; attributes it does not give default to the identity.  Only the last ``ndim`` axes are
    kept (a layer with leading non-spatial axes keeps its spatial block).
    """
    from napari.utils.transforms import Affine

    given = {k: attributes[k] for k in ("scale", "translate", "rotate", "shear") if attributes.get(k) is not None}
    layer_ndim = len(np.ravel(given["scale"])) if "scale" in given else ndim
    physical = Affine(ndim=layer_ndim, **given).affine_matrix
    affine = attributes.get("affine")
    if affine is not None:
        affine = affine.affine_matrix if hasattr(affine, "affine_matrix") else np.asarray(affine, dtype=float)
        if affine.shape == physical.shape:
            physical = affine @ physical
    if layer_ndim > ndim:
        keep = list(range(layer_ndim - ndim, layer_ndim + 1))
        physical = physical[np.ix_(keep, keep)]
    return physical


def _is_identity(value: Any, size: int) -> bool:
    if value is None:
        return True
    matrix = value.affine_matrix if hasattr(value, "affine_matrix") else np.asarray(value, dtype=float)
    return matrix.shape == (size, size) and np.array_equal(matrix, np.eye(size))


def _geometry_zyx(attributes: dict, ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spacing, origin and direction (columns: data axes) of a layer in numpy order."""
    scale = attributes.get("scale")
    shear = attributes.get("shear")
    layer_ndim = len(np.ravel(scale)) if scale is not None else ndim
    plain = (_is_identity(attributes.get("affine"), layer_ndim + 1) and (shear is None or not np.any(shear))
             and (scale is None or np.all(np.ravel(scale) > 0)))
    if plain:  # the attributes themselves: no round-off from composing and decomposing
        spacing = np.ones(ndim) if scale is None else np.asarray(scale, dtype=float).ravel()[-ndim:]
        translate = attributes.get("translate")
        origin = np.zeros(ndim) if translate is None else np.asarray(translate, dtype=float).ravel()[-ndim:]
        rotate = attributes.get("rotate")
        direction = np.eye(ndim) if rotate is None else np.asarray(rotate, dtype=float)[-ndim:, -ndim:]
    else:
        matrix = layer_world_transform(attributes, ndim)
        linear, origin = matrix[:ndim, :ndim], matrix[:ndim, ndim]
        spacing = np.linalg.norm(linear, axis=0)
        if not np.all(spacing > 0):
            raise ValueError(f"layer {attributes.get('name', '')!r} has a zero scale; cannot save its geometry")
        direction = linear / spacing
    if not np.allclose(direction.T @ direction, np.eye(ndim), atol=1e-6):
        raise ValueError(f"layer {attributes.get('name', '')!r} is sheared; NIfTI/MetaImage/NRRD store only "
                         "spacing, origin and an orthonormal direction (remove the shear to save it)")
    return spacing, origin, direction


def layer_image_meta(data: Any, attributes: dict) -> Any:
    """The :class:`reconstruct.io.ImageMeta` for a layer's data and napari attributes.

    Args:
        data: the layer data (numpy order; RGB layers have a trailing channel axis).
        attributes: napari's layer attributes (``scale``, ``translate``, ``rotate``, ``shear``,
            ``affine``, ``metadata``, ``rgb``).

    Raises:
        ValueError: the layer is sheared, so no orthonormal direction describes it.
    """
    from reconstruct.io import ImageMeta

    ndim = np.ndim(data) - (1 if attributes.get("rgb", False) else 0)
    stored = (attributes.get("metadata") or {}).get("image_meta")
    base = ImageMeta.default(ndim)
    if isinstance(stored, dict) and len(np.ravel(stored.get("spacing", ()))) == ndim:
        base = ImageMeta.from_dict(stored)
    spacing_zyx, origin_zyx, direction_zyx = _geometry_zyx(attributes, ndim)
    # napari is in numpy order (z, y, x); ImageMeta is in SimpleITK's (x, y, z): reverse rows and columns
    spacing = tuple(float(v) for v in spacing_zyx[::-1])
    origin = tuple(float(v) for v in origin_zyx[::-1])
    if np.array_equal(direction_zyx, np.eye(ndim)):
        direction = base.direction  # no rotation shown: keep the stored direction (or identity)
    else:
        direction = tuple(float(v) for v in direction_zyx[::-1, ::-1].ravel())
    return ImageMeta(spacing, origin, direction, format=base.format, extra=base.extra)


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


def _split_suffix(path: Path) -> tuple[str, str]:
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return name, ".nii.gz"


def write_layers(path: str, layer_data: list[tuple[Any, dict, str]]) -> list[str]:
    """Write several image/labels layers, one file each, with their geometry (napari's multi-layer contract).

    ``<dir>/<stem><suffix>`` becomes ``<dir>/<stem>_<layer name><suffix>`` for every layer (names made
    file-safe and unique).  If one layer cannot be written, the files already written are removed, so
    a failed save leaves nothing half done.

    Args:
        path: the name chosen in napari's save dialog (``.nii.gz``, ``.nii``, ``.mha``, ``.mhd``, ``.nrrd``).
        layer_data: ``[(data, attributes, layer_type), ...]`` as napari passes them.

    Returns:
        The written paths, in layer order.
    """
    target = Path(path)
    stem, suffix = _split_suffix(target)
    written: list[str] = []
    used: set[str] = set()
    try:
        for index, (data, attributes, layer_type) in enumerate(layer_data):
            label = re.sub(r"[^A-Za-z0-9._-]+", "_", str(attributes.get("name") or f"layer{index}")).strip("._")
            label = label or f"layer{index}"
            candidate, n = label, 2
            while candidate.lower() in used:
                candidate, n = f"{label}_{n}", n + 1
            used.add(candidate.lower())
            out = target.with_name(f"{stem}_{candidate}{suffix}")
            writer = write_labels_layer if layer_type == "labels" else write_image_layer
            written += writer(str(out), data, attributes)
    except Exception:
        for done in written:
            Path(done).unlink(missing_ok=True)
        raise
    return written
