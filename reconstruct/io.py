"""Reading and writing images, JSON records and checkpoints — the application's file layer.

Everything that touches the disk goes through here so that the rules hold in one place:

- arrays come back in numpy axis order — ``(z, y, x)``, ``(H, W)`` or ``(H, W, C)`` — together with an
  :class:`ImageMeta` holding spacing/origin/direction in SimpleITK's ``(x, y, z)`` order;
- outputs are written atomically (a temporary file in the target folder, then ``os.replace``), never
  overwrite an existing file unless asked, and never land on or inside an input;
- bad files give one-line ``ValueError``/``FileNotFoundError`` messages that name the file and the fix.

This is an application module: the science modules of :mod:`reconstruct` never import it.

Example::

    arr, meta = read_image("ct.nii.gz")
    write_image("recon.nii.gz", recon, meta)  # same spacing/origin/direction as the input
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import tifffile
import torch
from monai.data import ImageReader
from monai.data.utils import is_no_channel, is_supported_format, orientation_ras_lps
from monai.utils import ImageMetaKey, MetaKeys, SpaceKeys, ensure_tuple

__all__ = [
    "ImageMeta",
    "SUPPORTED_SUFFIXES",
    "WRITABLE_SUFFIXES",
    "CHECKPOINT_FORMAT_VERSION",
    "image_format",
    "read_image",
    "write_image",
    "atomic_write_text",
    "write_json",
    "check_output_path",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "SimpleITKReader",
]

PathLike = str | os.PathLike

# suffix -> format name; compound suffixes first so ".nii.gz" wins over ".gz"
_SUFFIX_FORMAT: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".mha": "mha",
    ".mhd": "mha",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "npy",
    ".npz": "npz",
}
_FORMAT_LABEL = {
    "nifti": "NIfTI",
    "mha": "MetaImage",
    "nrrd": "NRRD",
    "png": "PNG",
    "jpeg": "JPEG",
    "bmp": "BMP",
    "tiff": "TIFF",
    "npy": "NumPy .npy",
    "npz": "NumPy .npz",
}
_SITK_FORMATS = ("nifti", "mha", "nrrd")
# formats whose header names a separate data file (x.mhd + x.raw): written through a temporary folder
_DETACHED_SUFFIXES = (".mhd", ".nhdr")

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_SUFFIX_FORMAT)
WRITABLE_SUFFIXES: tuple[str, ...] = tuple(s for s, f in _SUFFIX_FORMAT.items() if f not in ("jpeg", "bmp"))

CHECKPOINT_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------------


def _float_tuple(values: Any, name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in np.asarray(values, dtype=float).ravel())
    except (TypeError, ValueError):
        raise ValueError(f"ImageMeta.{name} must be a sequence of numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"ImageMeta.{name} must be finite, got {out}")
    return out


def _json_safe(obj: Any) -> Any:
    """A copy of ``obj`` made of dict/list/str/int/float/bool/None (numpy and paths converted)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (np.dtype, torch.dtype)):
        return str(obj)
    if isinstance(obj, ImageMeta):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _json_safe(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return [_json_safe(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    raise TypeError(
        f"cannot store a value of type {type(obj).__name__} as JSON; "
        "convert it to numbers, strings, lists or dicts"
    )


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
            "extra": _json_safe(self.extra),
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
# helpers
# --------------------------------------------------------------------------------------------------


def image_format(path: PathLike) -> str:
    """The format name for ``path``'s suffix (``"nifti"``, ``"png"``, ...); ValueError if unsupported."""
    name = Path(path).name.lower()
    for suffix, fmt in _SUFFIX_FORMAT.items():
        if name.endswith(suffix):
            return fmt
    raise ValueError(
        f"unsupported file type {Path(path).name!r}; supported suffixes: {', '.join(SUPPORTED_SUFFIXES)}"
    )


def _full_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in _SUFFIX_FORMAT:
        if name.endswith(suffix):
            return path.name[-len(suffix):]
    return "".join(path.suffixes)


def _one_line(text: str, limit: int = 200) -> str:
    """Shorten a (possibly multi-line, C++-decorated) library message to one informative line."""
    lines = []
    for raw in str(text).splitlines():
        line = raw.strip()
        if not line or line.startswith("Exception thrown in SimpleITK"):
            continue
        # ITK's "Reason: ..." repeats a stale errno (often "No such file or directory" for a file that
        # exists): it misleads more than it helps
        if line.startswith("Reason:"):
            continue
        line = re.sub(r"^(sitk::ERROR|ITK ERROR|ERROR):\s*", "", line)
        line = re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", line)
        line = re.sub(r"^\[\w+\]\s*\w+:\s*", "", line)
        line = re.sub(r"^/\S+:\d+:\s*", "", line)
        if line:
            lines.append(line)
    short = lines[-1] if lines else str(text).strip() or "unknown error"
    short = " ".join(short.split())
    return short if len(short) <= limit else short[: limit - 3] + "..."


def _cannot_read(path: Path, fmt: str, reason: Any) -> ValueError:
    return ValueError(f"cannot read {path} as {_FORMAT_LABEL.get(fmt, fmt)}: {_one_line(str(reason))}; "
                      "check the file is complete and not corrupted")


def _existing_file(path: PathLike) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give an image file")
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return p


_UMASK: int | None = None


def _new_file_mode() -> int:
    """Mode a plain ``open(path, "w")`` would give (mkstemp's files are 0600)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _prepare_target(path: PathLike, overwrite: bool) -> Path:
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"output {target} is an existing folder; give a file name")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _finish_mode(tmp: Path, target: Path) -> None:
    # keep the permissions of the file being replaced, else what a normal open() would give
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else _new_file_mode()
        os.chmod(tmp, mode)
    except OSError:
        pass


def _atomic_write(target: Path, write_fn, what: str) -> Path:
    """Call ``write_fn(tmp_path)`` on a same-suffix temporary file next to ``target``, then replace it.

    Library errors (anything but OSError) become a one-line ``ValueError`` naming ``what``.
    """
    suffix = _full_suffix(target)
    base = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{base}.tmp-", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_fn(tmp)
        _finish_mode(tmp, target)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write {target} as {what}: {_one_line(str(exc))}") from None
    except BaseException:  # KeyboardInterrupt: still leave no temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    return target


def _atomic_write_detached(target: Path, write_fn, what: str, overwrite: bool) -> Path:
    """Like :func:`_atomic_write` for header + data-file formats (``.mhd``/``.nhdr`` + ``.raw``).

    The pair is written under its final names in a temporary folder next to the target, then each
    file is moved into place, the data file before the header that points at it.
    """
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        try:
            write_fn(tmp_dir / target.name)
        except OSError:
            raise
        except Exception as exc:
            raise ValueError(f"cannot write {target} as {what}: {_one_line(str(exc))}") from None
        produced = sorted(tmp_dir.iterdir(), key=lambda p: p.name == target.name)  # header last
        if not overwrite:
            for p in produced:
                if (target.parent / p.name).exists():
                    raise FileExistsError(f"{target.parent / p.name} already exists; "
                                          "pass overwrite=True (--overwrite) to replace it")
        for p in produced:
            _finish_mode(p, target.parent / p.name)
            os.replace(p, target.parent / p.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


def _nifti_required_bytes(header: bytes) -> int | None:
    """Bytes a single-file NIfTI-1/2 needs (``vox_offset`` + data); None if the header is not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    n = int(dims[0])
    if not 1 <= n <= 7 or bitpix <= 0:
        return None
    count = 1
    for d in dims[1 : n + 1]:
        count *= max(int(d), 1)
    return int(vox_offset) + count * int(bitpix) // 8


def _check_nifti_complete(path: Path) -> None:
    """Raise ValueError if a NIfTI file is shorter than its header says.

    ITK's NIfTI reader silently zero-fills a truncated file (a half-copied ``.nii.gz`` reads "fine"),
    so the size is checked here; a ``.gz`` is streamed through zlib once to count its bytes.
    """
    if path.name.lower().endswith(".gz"):
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        head = b""
        total = 0
        with open(path, "rb") as fh:
            try:
                while chunk := fh.read(1 << 20):
                    out = decomp.decompress(chunk)
                    if len(head) < 540:
                        head += out[: 540 - len(head)]
                    total += len(out)
                    if decomp.eof:
                        break
            except zlib.error as exc:
                raise _cannot_read(path, "nifti", f"gzip data is damaged ({exc})") from None
        if not decomp.eof:
            raise _cannot_read(path, "nifti", "the gzip stream ends early (file truncated)")
    else:
        with open(path, "rb") as fh:
            head = fh.read(540)
        total = path.stat().st_size
    needed = _nifti_required_bytes(head)
    if needed is None:
        raise _cannot_read(path, "nifti", "no NIfTI header found")
    if total < needed:
        raise _cannot_read(path, "nifti", f"image data is truncated ({total} of {needed} bytes)")


def _sitk_read(path: Path, fmt: str, **kwargs) -> sitk.Image:
    if fmt == "nifti" and path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path)
    try:
        return sitk.ReadImage(str(path), **kwargs)
    except RuntimeError as exc:
        raise _cannot_read(path, fmt, exc) from None


def _sitk_metadata(img: sitk.Image) -> dict[str, str]:
    return {k: img.GetMetaData(k) for k in img.GetMetaDataKeys() if not k.startswith("ITK_")}


def _read_sitk(path: Path, fmt: str) -> tuple[np.ndarray, ImageMeta]:
    img = _sitk_read(path, fmt)
    arr = sitk.GetArrayFromImage(img)
    extra: dict[str, Any] = {"dtype": str(arr.dtype), "metadata": _sitk_metadata(img)}
    if img.GetNumberOfComponentsPerPixel() > 1:
        extra["components"] = int(img.GetNumberOfComponentsPerPixel())
    meta = ImageMeta(img.GetSpacing(), img.GetOrigin(), img.GetDirection(), format=fmt, extra=extra)
    return arr, meta


def _read_picture(path: Path, fmt: str) -> tuple[np.ndarray, ImageMeta]:
    import skimage.io  # imported here: loads imageio/PIL, which the medical paths never need

    try:
        arr = np.asarray(skimage.io.imread(str(path)))
    except Exception as exc:  # PIL/imageio raise OSError, SyntaxError, ValueError... for bad files
        raise _cannot_read(path, fmt, exc) from None
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        raise _cannot_read(path, fmt, f"unexpected image shape {arr.shape}")
    rgb = arr.ndim == 3
    meta = ImageMeta.default(2, format=fmt)
    meta.extra = {"dtype": str(arr.dtype), "rgb": rgb}
    return arr, meta


def _read_tiff(path: Path) -> tuple[np.ndarray, ImageMeta]:
    try:
        with tifffile.TiffFile(path) as tif:
            arr = tif.asarray()
            shaped = tif.shaped_metadata[0] if tif.shaped_metadata else {}
            page = tif.pages.first
            photometric = int(page.photometric)
            ij = tif.imagej_metadata if tif.is_imagej else None
            res = [page.tags.get(name) for name in ("XResolution", "YResolution")]
            res = [t.value if t is not None else None for t in res]
    except Exception as exc:  # TiffFileError, struct.error, ValueError ...
        raise _cannot_read(path, "tiff", exc) from None
    rgb = photometric == 2 and arr.ndim >= 3 and arr.shape[-1] in (3, 4)
    spatial = arr.ndim - 1 if rgb else arr.ndim
    extra: dict[str, Any] = {"dtype": str(arr.dtype), "rgb": bool(rgb)}
    if isinstance(shaped, dict) and "spacing" in shaped:
        # written by write_image: the geometry is stored verbatim in the description
        meta = ImageMeta.from_dict({**shaped, "format": "tiff"})
        meta.extra = {**shaped.get("extra", {}), **extra}
        return arr, meta
    meta = ImageMeta.default(spatial, format="tiff")
    spacing = list(meta.spacing)
    # ImageJ files: x/y from the resolution tags (pixels per unit), z from the "spacing" entry
    if ij is not None and spatial >= 2:
        for axis, value in enumerate(res):
            if value and value[0] > 0:
                spacing[axis] = value[1] / value[0]
        if spatial >= 3 and float(ij.get("spacing", 0) or 0) > 0:
            spacing[2] = float(ij["spacing"])
        if ij.get("unit"):
            extra["unit"] = str(ij["unit"])
    meta = ImageMeta(spacing, meta.origin, meta.direction, format="tiff", extra=extra)
    return arr, meta


def _read_numpy(path: Path, fmt: str) -> tuple[np.ndarray, ImageMeta]:
    meta_keys: dict[str, Any] = {}
    try:
        if fmt == "npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.files)
                if "image" in keys:
                    arr = z["image"]
                    meta_keys = {k: z[k] for k in ("spacing", "origin", "direction") if k in keys}
                elif len(keys) == 1:
                    arr = z[keys[0]]
                elif "arr_0" in keys:
                    arr = z["arr_0"]
                else:
                    raise LookupError(f"{path} holds arrays {keys}; save the image under the key 'image' "
                                      "or as a single array")
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # bad zip, bad header, pickled objects refused ...
        raise _cannot_read(path, fmt, exc) from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"cannot read {path}: dtype {arr.dtype} is not an image; store numbers")
    if meta_keys.get("spacing") is not None:
        meta = ImageMeta.from_dict({k: np.asarray(v).tolist() for k, v in meta_keys.items()})
        meta.format = fmt
    else:
        meta = ImageMeta.default(max(arr.ndim, 1), format=fmt)
    meta.extra = {"dtype": str(arr.dtype)}
    return arr, meta


def read_image(path: PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read an image file into a numpy array and its :class:`ImageMeta`.

    Args:
        path: a PNG/JPEG/BMP, TIFF, ``.npy``/``.npz``, NIfTI (``.nii``, ``.nii.gz``), MetaImage
            (``.mha``, ``.mhd``) or NRRD (``.nrrd``, ``.nhdr``) file.

    Returns:
        ``(array, meta)``: the array in numpy order — ``(z, y, x)``, ``(H, W)`` or ``(H, W, C)`` for
        colour — with its stored dtype; ``meta`` holds spacing/origin/direction in ``(x, y, z)`` order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unsupported suffix, or the file is damaged (one line naming the file).
    """
    p = _existing_file(path)
    fmt = image_format(p)
    if fmt in _SITK_FORMATS:
        return _read_sitk(p, fmt)
    if fmt in ("png", "jpeg", "bmp"):
        return _read_picture(p, fmt)
    if fmt == "tiff":
        return _read_tiff(p)
    return _read_numpy(p, fmt)


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


def _check_numeric(arr: np.ndarray, path: Path) -> None:
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"cannot write {path}: dtype {arr.dtype} is not an image type; "
                         "convert to float32 or an integer type")
    if arr.size == 0:
        raise ValueError(f"cannot write {path}: the array is empty (shape {arr.shape})")


def _spatial_layout(arr: np.ndarray, meta: ImageMeta | None, path: Path) -> tuple[int, bool]:
    """(number of spatial axes, whether the last axis holds channels)."""
    if meta is None:
        return arr.ndim, False
    if arr.ndim == meta.ndim:
        return meta.ndim, False
    if arr.ndim == meta.ndim + 1:
        return meta.ndim, True
    raise ValueError(f"cannot write {path}: array shape {arr.shape} does not fit the metadata's "
                     f"{meta.ndim} spatial axes; pass matching ImageMeta (or meta=None)")


def _write_sitk(path: Path, arr: np.ndarray, meta: ImageMeta | None, fmt: str, overwrite: bool) -> Path:
    _check_numeric(arr, path)
    ndim, vector = _spatial_layout(arr, meta, path)
    if not 2 <= ndim <= 5:
        raise ValueError(
            f"cannot write {path}: {_FORMAT_LABEL[fmt]} needs 2 to 5 spatial axes, got shape {arr.shape}"
        )
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)  # float32 by default: what every viewer reads
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    meta = meta if meta is not None else ImageMeta.default(ndim, format=fmt)

    def write(tmp: Path) -> None:
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=vector)
        img.SetSpacing(meta.spacing)
        img.SetOrigin(meta.origin)
        img.SetDirection(meta.direction)
        # custom header keys survive a MetaImage/NRRD round trip; NIfTI headers are structural only
        if meta.format == fmt and fmt != "nifti":
            for key, value in (meta.extra.get("metadata") or {}).items():
                key, value = str(key), str(value)
                if key.startswith(("ITK_", "NRRD_")) or "\n" in key + value or key == "Modality":
                    continue
                img.SetMetaData(key, value)
        sitk.WriteImage(img, str(tmp))

    if path.name.lower().endswith(_DETACHED_SUFFIXES):
        return _atomic_write_detached(path, write, _FORMAT_LABEL[fmt], overwrite)
    return _atomic_write(path, write, _FORMAT_LABEL[fmt])


def _to_picture_dtype(arr: np.ndarray, meta: ImageMeta | None, path: Path) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"cannot write {path}: the image has NaN/inf values; clean them first")
        sixteen = meta is not None and str(meta.extra.get("dtype", "")) == "uint16"
        top = 65535 if sixteen else 255
        out = np.rint(np.clip(arr, 0.0, 1.0) * top)
        return out.astype(np.uint16 if sixteen else np.uint8)
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return arr.astype(np.uint16)
    raise ValueError(f"cannot write {path}: integer values {lo}..{hi} do not fit PNG's 0..65535; "
                     "scale to [0, 1] or save as .tif/.nii.gz")


def _write_png(path: Path, arr: np.ndarray, meta: ImageMeta | None) -> Path:
    import skimage.io

    _check_numeric(arr, path)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ValueError(f"cannot write {path}: PNG holds 2-D grey or (H, W, 3|4) colour images, got shape "
                         f"{arr.shape}; save volumes as .nii.gz or .tif")
    data = _to_picture_dtype(arr, meta, path)
    return _atomic_write(path, lambda tmp: skimage.io.imsave(str(tmp), data, check_contrast=False), "PNG")


def _write_tiff(path: Path, arr: np.ndarray, meta: ImageMeta | None) -> Path:
    _check_numeric(arr, path)
    ndim, channels = _spatial_layout(arr, meta, path)
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    meta = meta if meta is not None else ImageMeta.default(ndim, format="tiff")
    rgb = channels and arr.shape[-1] in (3, 4) and arr.dtype in (np.uint8, np.uint16)
    # the geometry goes verbatim (JSON) into the description, so read_image restores it exactly
    description = {k: v for k, v in meta.to_dict().items() if k != "format"}
    description["extra"] = {k: v for k, v in description["extra"].items() if k != "metadata"}

    def write(tmp: Path) -> None:
        tifffile.imwrite(tmp, arr, photometric="rgb" if rgb else "minisblack", metadata=description)

    return _atomic_write(path, write, "TIFF")


def _write_numpy(path: Path, arr: np.ndarray, meta: ImageMeta | None, fmt: str) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            if fmt == "npy":
                np.save(fh, arr, allow_pickle=False)
            else:
                geometry = {} if meta is None else {
                    "spacing": np.asarray(meta.spacing),
                    "origin": np.asarray(meta.origin),
                    "direction": np.asarray(meta.direction),
                }
                np.savez_compressed(fh, image=arr, **geometry)

    return _atomic_write(path, write, _FORMAT_LABEL[fmt])


def write_image(
    path: PathLike, array: Any, meta: ImageMeta | None = None, *, overwrite: bool = False
) -> Path:
    """Write ``array`` to ``path`` atomically, in the format its suffix names.

    Args:
        path: target file; parent folders are created. Suffixes: ``.nii``, ``.nii.gz``, ``.mha``,
            ``.mhd``, ``.nrrd``, ``.nhdr`` (SimpleITK), ``.png``, ``.tif``/``.tiff``, ``.npy``, ``.npz``.
        array: numpy-order data (``(z, y, x)``, ``(H, W)``, ``(H, W, C)``); a tensor is moved to CPU.
        meta: geometry to store (spacing/origin/direction, restored exactly by MetaImage, NRRD, TIFF
            and ``.npz``; NIfTI keeps them to float32 precision). ``None`` means unit spacing.
        overwrite: replace an existing file; without it an existing target raises FileExistsError.

    Notes:
        Medical formats store floating data as float32 and keep integer dtypes. PNG takes 2-D or
        RGB(A): floats are taken as [0, 1], clipped and stored as uint8 (uint16 when
        ``meta.extra["dtype"] == "uint16"``). TIFF keeps float32. ``.npy`` keeps the array as is.

    Returns:
        The path written.
    """
    fmt = image_format(path)  # before _prepare_target: a bad suffix must not create folders
    target = _prepare_target(path, overwrite)
    if fmt in ("jpeg", "bmp"):
        raise ValueError(f"cannot write {target}: {_FORMAT_LABEL[fmt]} output is not supported (lossy or "
                         f"limited); use one of {', '.join(WRITABLE_SUFFIXES)}")
    if meta is not None and not isinstance(meta, ImageMeta):
        meta = ImageMeta.from_dict(meta)
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    arr = np.asarray(array)
    if fmt in _SITK_FORMATS:
        return _write_sitk(target, arr, meta, fmt, overwrite)
    if fmt == "png":
        return _write_png(target, arr, meta)
    if fmt == "tiff":
        return _write_tiff(target, arr, meta)
    return _write_numpy(target, arr, meta, fmt)


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (parents are created)."""
    target = _prepare_target(path, overwrite=True)
    return _atomic_write(target, lambda tmp: tmp.write_text(text, encoding=encoding), "text")


def write_json(path: PathLike, obj: Any, *, overwrite: bool = True) -> Path:
    """Write ``obj`` as indented JSON, atomically; numpy scalars/arrays, tensors and paths are converted.

    Args:
        path: target ``.json`` file.
        obj: dicts/lists of numbers and strings (numpy, torch, Path, ImageMeta and dataclasses allowed).
        overwrite: replace an existing file (default); ``False`` raises FileExistsError instead.
    """
    target = _prepare_target(path, overwrite)
    text = json.dumps(_json_safe(obj), indent=2) + "\n"
    return atomic_write_text(target, text)


def check_output_path(
    output: PathLike, inputs: PathLike | Iterable[PathLike], *, want_file: bool = True
) -> Path:
    """Refuse an output that would overwrite or land inside an input.

    Args:
        output: the path the caller wants to write.
        inputs: one input path or several (files or folders).
        want_file: the output is a file, so an existing folder there is an error.

    Returns:
        The output as an absolute path.

    Raises:
        ValueError: the output is an input, lies inside an input folder, or (``want_file``) is an
            existing folder.
    """
    out = Path(output).expanduser().resolve()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    for item in inputs:
        inp = Path(item).expanduser().resolve()
        same = out == inp
        if not same and out.exists() and inp.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, inp)  # hard links
        if same:
            raise ValueError(f"output {out} is the input {inp}; choose another --out")
        if inp.is_dir() and out.is_relative_to(inp):
            raise ValueError(f"output {out} is inside the input {inp}; choose another --out")
    if want_file and out.is_dir():
        raise ValueError(f"output {out} is an existing folder; give a file name for --out")
    return out


# --------------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------------


def _plain(obj: Any, where: str) -> Any:
    """``obj`` made of what ``torch.load(weights_only=True)`` accepts: tensors and plain Python values."""
    # numpy scalars first: np.float64 is a float subclass but pickles as a numpy global
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (torch.dtype, np.dtype)):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use strings")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    raise TypeError(f"cannot store {where} ({type(obj).__name__}) in a checkpoint; "
                    "use tensors, numbers, strings, lists or dicts")


def save_checkpoint(
    path: PathLike,
    model: torch.nn.Module,
    *,
    network: str,
    network_kwargs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Save a model so that :func:`load_model` can rebuild it, atomically.

    The file holds ``{"state_dict", "network", "network_kwargs", "extra", "format_version"}`` made only of
    tensors and plain values, so it loads with ``torch.load(..., weights_only=True)`` (no pickled code).

    Args:
        path: target file (``.pt``).
        model: the network whose ``state_dict`` is stored (moved to CPU in the file).
        network: registry name for ``monai_nets.get_network`` (e.g. ``"nestnet"``).
        network_kwargs: the constructor arguments given to ``get_network`` (``spatial_dims``, ...).
        extra: anything else to keep (config, history, input meta), plain values only.
        overwrite: replace an existing file (default, as periodic checkpoints do).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(network, str) or not network:
        raise TypeError(f"network must be a registry name (string), got {network!r}")
    payload = {
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "network": network,
        "network_kwargs": _plain(dict(network_kwargs), "network_kwargs"),
        "extra": _plain(dict(extra or {}), "extra"),
        "format_version": CHECKPOINT_FORMAT_VERSION,
    }
    target = _prepare_target(path, overwrite)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)

    return _atomic_write(target, write, "a checkpoint")


def load_checkpoint(path: PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is damaged or not a checkpoint of this kind (one line).
    """
    p = _existing_file(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read {p} as a checkpoint: {_one_line(first)}; "
                         "check the file is complete and not corrupted") from None
    required = ("state_dict", "network", "network_kwargs")
    missing = [k for k in required if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{p} is not a nestnet checkpoint (missing {', '.join(missing)}); "
                         "save it with reconstruct.io.save_checkpoint")
    version = ckpt.get("format_version", 1)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{p} has checkpoint format {version!r}, newer than this version reads "
                         f"({CHECKPOINT_FORMAT_VERSION}); upgrade napari-nestnet")
    ckpt.setdefault("extra", {})
    return ckpt


def load_model(path: PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the network stored by :func:`save_checkpoint` and load its weights (in eval mode).

    Args:
        path: checkpoint file.
        map_location: device to put the model on.
    """
    from monai_nets import get_network  # imported late: the checkpoint reader alone needs no networks

    ckpt = load_checkpoint(path, map_location=map_location)
    try:
        model = get_network(ckpt["network"], **dict(ckpt["network_kwargs"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot rebuild the network in {path}: {_one_line(str(exc))}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"weights in {path} do not fit network {ckpt['network']!r}: "
                         f"{_one_line(str(exc).splitlines()[0] if str(exc) else str(exc))}") from None
    return model.to(map_location).eval()


# --------------------------------------------------------------------------------------------------
# MONAI reader
# --------------------------------------------------------------------------------------------------


class SimpleITKReader(ImageReader):
    """A MONAI :class:`~monai.data.ImageReader` built on SimpleITK (MONAI's ``ITKReader`` needs ``itk``).

    It follows ``ITKReader``'s conventions: by default the array comes back in ITK index order
    ``(x, y, z)`` (``(x, y, z, C)`` for vector pixels) so that it matches ``affine``, which maps array
    indices to world coordinates in RAS (LPS with ``affine_lps_to_ras=False``). The meta dict has
    ``affine``, ``original_affine``, ``spatial_shape``, ``original_channel_dim``, ``space``,
    ``spacing``, ``filename_or_obj`` and the header's own keys. Several files are stacked on a new
    first (channel) axis.

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
        **kwargs,
    ):
        super().__init__()
        self.channel_dim = float("nan") if channel_dim == "no_channel" else channel_dim
        self.reverse_indexing = reverse_indexing
        self.affine_lps_to_ras = affine_lps_to_ras
        self.kwargs = kwargs
        self.filenames: tuple[str, ...] = ()

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every file name ends in a suffix SimpleITK reads."""
        return is_supported_format(filename, self.suffixes)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> Sequence[sitk.Image] | sitk.Image:
        """Read one file or several (stacked later by :meth:`get_data`) into SimpleITK images.

        Args:
            data: file name or a list of file names.
            kwargs: passed to ``SimpleITK.ReadImage``, overriding the constructor's.
        """
        filenames = tuple(f"{name}" for name in ensure_tuple(data))
        kwargs_ = {**self.kwargs, **kwargs}
        images = []
        for name in filenames:
            p = _existing_file(name)
            fmt = image_format(p) if p.name.lower().endswith(SUPPORTED_SUFFIXES) else "image"
            images.append(_sitk_read(p, fmt, **kwargs_))
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
        meta: dict[str, Any] = dict(_sitk_metadata(img))
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
