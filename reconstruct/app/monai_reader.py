"""A MONAI image reader built on SimpleITK, for ``LoadImage`` pipelines and MONAI bundles.

MONAI's own ``ITKReader`` needs the ``itk`` package; :class:`SimpleITKReader` gives the same array and
meta-dict conventions from SimpleITK, with this package's file checks (truncated NIfTI files, one-line
errors naming the file).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.data import ImageReader
from monai.data.utils import is_no_channel, is_supported_format, orientation_ras_lps
from monai.utils import ImageMetaKey, MetaKeys, SpaceKeys, ensure_tuple

from .files import PathLike, existing_file
from .images import SUPPORTED_SUFFIXES, image_format, read_sitk_image, sitk_header

__all__ = ["SimpleITKReader", "typed_header"]

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INDEXED = re.compile(r"(.+)\[(\d+)\]")
# what SimpleITK prints for header values it cannot show as text (ITK matrices, qfac)
_UNPRINTABLE = "[UNKNOWN_PRINT_CHARACTERISTICS]"


def _typed(text: str) -> Any:
    """A header string as MONAI's NibabelReader would give it: an int, a float, a 1-D array of numbers, or the text."""
    value = text.strip()
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    parts = value.replace(",", " ").split()
    if len(parts) > 1 and all(_FLOAT.fullmatch(p) for p in parts):
        return np.asarray([float(p) for p in parts])
    return text


def typed_header(header: dict[str, str]) -> dict[str, Any]:
    """SimpleITK header strings typed: numbers as numbers, number lists as arrays, indexed keys also gathered.

    ``"pixdim[1]": "0.7"`` becomes ``0.7``; ``"srow_x": "0 1.25 0 -0"`` an array; and ``pixdim[0..7]`` are
    also gathered into ``"pixdim"`` (an array), the key and form of MONAI's ``NibabelReader`` (which
    returns the NIfTI header fields as numbers).  Text stays text; values SimpleITK cannot print are
    dropped.
    """
    typed: dict[str, Any] = {k: _typed(v) for k, v in header.items() if not v.startswith(_UNPRINTABLE)}
    groups: dict[str, dict[int, Any]] = {}
    for key, value in typed.items():
        match = _INDEXED.fullmatch(key)
        if match:
            groups.setdefault(match.group(1), {})[int(match.group(2))] = value
    for name, items in groups.items():
        values = [items.get(i) for i in range(max(items) + 1)]
        if name not in typed and all(isinstance(v, (int, float)) for v in values):
            kind = int if all(isinstance(v, int) for v in values) else float
            typed[name] = np.asarray(values, dtype=np.int64 if kind is int else np.float64)
    return typed


class SimpleITKReader(ImageReader):
    """A MONAI :class:`~monai.data.ImageReader` built on SimpleITK (MONAI's ``ITKReader`` needs ``itk``).

    It follows ``ITKReader``'s conventions: by default the array comes back in ITK index order
    ``(x, y, z)`` (``(x, y, z, C)`` for vector pixels) so that it matches ``affine``, which maps array
    indices to world coordinates in RAS (LPS with ``affine_lps_to_ras=False``). The meta dict has
    ``affine``, ``original_affine``, ``spatial_shape``, ``original_channel_dim``, ``space``,
    ``spacing``, ``filename_or_obj`` and the header's own keys, typed as ``NibabelReader`` types them
    (numbers, arrays of numbers; ``pixdim``/``dim`` gathered from ``pixdim[i]``/``dim[i]``; see
    :func:`typed_header`). Several files are stacked on a new first (channel) axis.

    Args:
        channel_dim: channel axis of the data, as in ``ITKReader``; None means "no channel", or ``-1``
            for vector pixels.
        reverse_indexing: return numpy order ``(z, y, x)`` instead; the metadata is unchanged (as in
            ``ITKReader``), so the affine then no longer matches the array axes.
        affine_lps_to_ras: convert ITK's LPS affine to RAS, consistent with ``NibabelReader``.
        kwargs: passed to ``SimpleITK.ReadImage`` (e.g. ``outputPixelType``).

    Example::

        from monai.transforms import LoadImage
        img = LoadImage(reader=SimpleITKReader(), image_only=True)("ct.nii.gz")  # MetaTensor
    """

    suffixes: tuple[str, ...] = ("nii", "nii.gz", "mha", "mhd", "nrrd", "nhdr", "hdr", "img", "gipl", "vtk",
                                 "tif", "tiff", "png", "jpg", "jpeg", "bmp", "dcm")

    def __init__(
        self,
        channel_dim: str | int | None = None,
        reverse_indexing: bool = False,
        affine_lps_to_ras: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.channel_dim = float("nan") if channel_dim == "no_channel" else channel_dim
        self.reverse_indexing = reverse_indexing
        self.affine_lps_to_ras = affine_lps_to_ras
        self.kwargs = kwargs
        self.filenames: tuple[str, ...] = ()

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every file name ends in a suffix SimpleITK reads."""
        return is_supported_format(filename, self.suffixes)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Sequence[sitk.Image] | sitk.Image:
        """Read one file or several (stacked later by :meth:`get_data`) into SimpleITK images.

        Args:
            data: file name or a list of file names.
            kwargs: passed to ``SimpleITK.ReadImage``, overriding the constructor's.
        """
        filenames = tuple(f"{name}" for name in ensure_tuple(data))
        kwargs_ = {**self.kwargs, **kwargs}
        images = []
        for name in filenames:
            p = existing_file(name)
            fmt = image_format(p) if p.name.lower().endswith(SUPPORTED_SUFFIXES) else "image"
            images.append(read_sitk_image(p, fmt, **kwargs_))
        self.filenames = filenames
        return images if len(filenames) > 1 else images[0]

    def get_data(self, img: sitk.Image | Sequence[sitk.Image]) -> tuple[np.ndarray, dict]:
        """Array and MONAI meta dict of one image, or of several stacked on a new first axis.

        Args:
            img: a SimpleITK image from :meth:`read`, or a list of them.
        """
        arrays: list[np.ndarray] = []
        compatible: dict = {}
        # not ensure_tuple: a SimpleITK image is itself iterable (over its pixels)
        images = (img,) if isinstance(img, sitk.Image) else tuple(img)
        names = self.filenames if len(self.filenames) == len(images) else (None,) * len(images)
        for image, name in zip(images, names):
            data = self._get_array_data(image)
            header = self._get_meta_dict(image)
            header[MetaKeys.ORIGINAL_AFFINE] = self._get_affine(image, self.affine_lps_to_ras)
            header[MetaKeys.SPACE] = SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS
            header[MetaKeys.AFFINE] = header[MetaKeys.ORIGINAL_AFFINE].copy()
            header[MetaKeys.SPATIAL_SHAPE] = self._get_spatial_shape(image)
            if self.channel_dim is None:
                header[MetaKeys.ORIGINAL_CHANNEL_DIM] = (
                    float("nan") if data.ndim == len(header[MetaKeys.SPATIAL_SHAPE]) else -1
                )
            else:
                header[MetaKeys.ORIGINAL_CHANNEL_DIM] = self.channel_dim
            if name is not None:
                header[ImageMetaKey.FILENAME_OR_OBJ] = name
            self._merge_meta(header, compatible)
            arrays.append(data)
        return self._stack(arrays, compatible), compatible

    @staticmethod
    def _merge_meta(header: dict, compatible: dict) -> None:
        # the first image's meta describes the stack; later ones must share its geometry
        if not compatible:
            compatible.update(header)
            return
        for key in (MetaKeys.AFFINE, MetaKeys.SPATIAL_SHAPE):
            if not np.allclose(header[key], compatible[key]):
                raise ValueError(f"cannot stack images with different {key}: {header[key].tolist()} "
                                 f"vs {compatible[key].tolist()}; resample them to one grid first")

    @staticmethod
    def _stack(arrays: list[np.ndarray], meta: dict) -> np.ndarray:
        if len(arrays) == 1:
            return arrays[0]
        if not is_no_channel(meta.get(MetaKeys.ORIGINAL_CHANNEL_DIM)):
            return np.concatenate(arrays, axis=int(meta[MetaKeys.ORIGINAL_CHANNEL_DIM]))
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0)

    @staticmethod
    def _get_meta_dict(img: sitk.Image) -> dict:
        meta: dict[str, Any] = typed_header(sitk_header(img))
        meta["spacing"] = np.asarray(img.GetSpacing())
        return meta

    @staticmethod
    def _get_affine(img: sitk.Image, lps_to_ras: bool = True) -> np.ndarray:
        """Index-to-world affine: ``direction @ diag(spacing)`` and ``origin``, up to 3 spatial axes."""
        ndim = img.GetDimension()
        direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
        spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
        origin = np.asarray(img.GetOrigin(), dtype=np.float64)
        sr = min(max(ndim, 1), 3)
        affine = np.eye(sr + 1)
        affine[:sr, :sr] = direction[:sr, :sr] @ np.diag(spacing[:sr])
        affine[:sr, -1] = origin[:sr]
        return orientation_ras_lps(affine) if lps_to_ras else affine

    def _get_spatial_shape(self, img: sitk.Image) -> np.ndarray:
        size = list(img.GetSize())  # x, y, z: ITK order, like ITKReader
        if isinstance(self.channel_dim, int):
            size.pop(self.channel_dim)
        return np.asarray(size[: min(max(img.GetDimension(), 1), 3)])

    def _get_array_data(self, img: sitk.Image) -> np.ndarray:
        arr = sitk.GetArrayFromImage(img)  # numpy order: (z, y, x) or (z, y, x, C)
        if self.reverse_indexing:
            return arr
        if img.GetNumberOfComponentsPerPixel() == 1:
            return arr.T
        return np.moveaxis(arr.T, 0, -1)
