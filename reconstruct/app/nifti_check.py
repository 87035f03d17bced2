"""Truncation check for NIfTI files, which SimpleITK would otherwise read as if whole.

A NIfTI-1/2 header states where the voxels start and how many there are; a file shorter than that was
cut off (an interrupted copy or download). Only the standard library is needed.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

__all__ = ["nifti_truncation"]


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


def nifti_truncation(path: Path) -> str | None:
    """Why a single-file NIfTI (``.nii``/``.nii.gz``) is incomplete, or ``None`` when it is whole.

    ITK's NIfTI reader silently zero-fills a truncated file (a half-copied ``.nii.gz`` reads "fine"),
    so the size is checked here; a ``.gz`` is streamed through zlib once to count its bytes.

    Args:
        path: an existing ``.nii`` or ``.nii.gz`` file.

    Raises:
        OSError: the file cannot be opened.
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
                return f"gzip data is damaged ({exc})"
        if not decomp.eof:
            return "the gzip stream ends early (file truncated)"
    else:
        with open(path, "rb") as fh:
            head = fh.read(540)
        total = path.stat().st_size
    needed = _nifti_required_bytes(head)
    if needed is None:
        return "no NIfTI header found"
    if total < needed:
        return f"image data is truncated ({total} of {needed} bytes)"
    return None
