"""Reading and writing images: PNG/JPEG/BMP, TIFF, NumPy, and NIfTI/MetaImage/NRRD through SimpleITK.

- arrays come back in numpy axis order — ``(z, y, x)``, ``(H, W)`` or ``(H, W, C)`` — together with an
  :class:`~reconstruct.app.meta.ImageMeta` holding spacing/origin/direction in SimpleITK's ``(x, y, z)``
  order;
- outputs are written atomically, never overwrite an existing file unless asked (see
  :mod:`reconstruct.app.files`);
- bad files give one-line ``ValueError``/``FileNotFoundError`` messages that name the file and the fix.

Example::

    arr, meta = read_image("ct.nii.gz")
    write_image("recon.nii.gz", recon, meta)  # same spacing/origin/direction as the input
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import tifffile
import torch

from .files import PathLike, atomic_write, atomic_write_detached, existing_file, npy_problem, one_line, prepare_target
from .meta import ImageMeta
from .nifti_check import nifti_truncation

__all__ = [
    "SUPPORTED_SUFFIXES",
    "WRITABLE_SUFFIXES",
    "image_format",
    "read_image",
    "write_image",
    "read_sitk_image",
    "sitk_header",
    "data_files",
    "check_data_inside",
]

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


def _cannot_read(path: Path, fmt: str, reason: Any) -> ValueError:
    return ValueError(f"cannot read {path} as {_FORMAT_LABEL.get(fmt, fmt)}: {one_line(str(reason))}; "
                      "check the file is complete and not corrupted")



# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


def read_sitk_image(path: Path, fmt: str, **kwargs: Any) -> sitk.Image:
    """``SimpleITK.ReadImage`` with NIfTI files checked for truncation and errors made one line.

    Args:
        path: an existing file.
        fmt: its format name (:func:`image_format`), for the messages.
        kwargs: passed to ``SimpleITK.ReadImage`` (e.g. ``outputPixelType``).
    """
    if fmt == "nifti" and path.name.lower().endswith((".nii", ".nii.gz")):
        problem = nifti_truncation(path)
        if problem is not None:
            raise _cannot_read(path, fmt, problem)
    try:
        return sitk.ReadImage(str(path), **kwargs)
    except RuntimeError as exc:
        raise _cannot_read(path, fmt, exc) from None


def sitk_header(img: sitk.Image) -> dict[str, str]:
    """The header keys of a SimpleITK image, without ITK's own structural ``ITK_*`` keys.

    Args:
        img: an image from :func:`read_sitk_image`.
    """
    return {k: img.GetMetaData(k) for k in img.GetMetaDataKeys() if not k.startswith("ITK_")}


def _read_sitk(path: Path, fmt: str) -> tuple[np.ndarray, ImageMeta]:
    img = read_sitk_image(path, fmt)
    arr = sitk.GetArrayFromImage(img)
    extra: dict[str, Any] = {"dtype": str(arr.dtype), "metadata": sitk_header(img)}
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
            bits = int(page.bitspersample or 0)
            ij = tif.imagej_metadata if tif.is_imagej else None
            res = [page.tags.get(name) for name in ("XResolution", "YResolution")]
            res = [t.value if t is not None else None for t in res]
    except Exception as exc:  # TiffFileError, struct.error, ValueError ...
        raise _cannot_read(path, "tiff", exc) from None
    rgb = photometric == 2 and arr.ndim >= 3 and arr.shape[-1] in (3, 4)
    spatial = arr.ndim - 1 if rgb else arr.ndim
    extra: dict[str, Any] = {"dtype": str(arr.dtype), "rgb": bool(rgb)}
    if arr.dtype.kind in "iu" and 0 < bits < 8 * arr.dtype.itemsize:
        extra["bit_depth"] = bits  # declared by the file (BitsPerSample), e.g. 12-bit data stored as uint16
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
    problem = npy_problem(path)
    if problem is not None:
        raise ValueError(f"cannot read {path} as {_FORMAT_LABEL[fmt]}: {problem}; give an array saved with "
                         f"numpy.{'savez' if fmt == 'npz' else 'save'}")
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
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise _cannot_read(path, fmt, exc) from None
        raise ValueError(f"cannot read {path}: it holds Python objects (pickled data), which are never loaded; "
                         "store an array of numbers") from None
    except Exception as exc:  # bad zip, bad header ...
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


_HEADER_BYTES = 1 << 16


def data_files(path: PathLike) -> list[Path]:
    """The data files a MetaImage (``.mha``/``.mhd``) or NRRD (``.nrrd``/``.nhdr``) header names, resolved.

    Empty for data stored in the header's own file (``ElementDataFile = LOCAL``, attached NRRD) and for
    other formats. A file-name pattern (``slice%03d.raw 1 10 1``) gives its first element's folder.
    """
    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return []
    try:
        with open(p, "rb") as fh:
            head = fh.read(_HEADER_BYTES).decode("latin-1")
    except OSError:
        return []
    lines = head.splitlines()
    meta = name.endswith((".mha", ".mhd"))
    names: list[str] = []
    for i, line in enumerate(lines):
        if not meta and not line.strip():
            break  # the end of a NRRD header
        key, sep, value = line.partition("=" if meta else ":")
        key = key.strip().lower().replace(" ", "")
        if not sep or key not in (("elementdatafile",) if meta else ("datafile",)):
            continue
        value = value.strip()
        if value.upper() == "LOCAL":
            break
        if value.upper().startswith("LIST"):
            names = [t.strip() for t in lines[i + 1:] if t.strip()]
        else:
            names = [value.split()[0] if "%" in value else value]
        break
    folder = p.parent
    return [(folder / Path(n).expanduser()).resolve() for n in names]


def check_data_inside(path: PathLike) -> None:
    """Refuse a MetaImage/NRRD header whose data file lies outside the header's folder.

    A header is a text file anyone can write: ``ElementDataFile = /home/you/.ssh/id_rsa`` would make an
    image of any file the process can read. Batch runs read shared folders and manifests, so they read
    only data files that lie beside their headers (or below them) unless asked otherwise.

    Raises:
        ValueError: one line naming the header, the data file and the way to allow it.
    """
    p = Path(path)
    folder = p.parent.resolve()  # the folder the reader resolves the data file in
    for data in data_files(p):
        if not data.is_relative_to(folder):
            raise ValueError(f"{p.name} names a data file outside its folder (pass --allow-external-data to read it; "
                             f"batch runs read only data files beside their headers): {data}")


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
    p = existing_file(path)
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
        return atomic_write_detached(path, write, _FORMAT_LABEL[fmt], overwrite)
    return atomic_write(path, write, _FORMAT_LABEL[fmt], suffix=_full_suffix(path))


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
    return atomic_write(path, lambda tmp: skimage.io.imsave(str(tmp), data, check_contrast=False), "PNG",
                        suffix=_full_suffix(path))


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

    return atomic_write(path, write, "TIFF", suffix=_full_suffix(path))


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

    return atomic_write(path, write, _FORMAT_LABEL[fmt], suffix=_full_suffix(path))


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
    fmt = image_format(path)  # before prepare_target: a bad suffix must not create folders
    target = prepare_target(path, overwrite)
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
