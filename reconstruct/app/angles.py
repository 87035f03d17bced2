"""Per-item numbers given as text or files: CT projection angles, MISR shifts and rotations.

The command line, ``nestnet batch`` manifests and the MONAI transforms name these the same way:

- :func:`parse_angles`: ``"start:stop:count"`` (degrees, stop excluded), a ``.npy`` or text file of
  degrees, or a sequence of numbers;
- :func:`parse_numbers`: a ``.npy`` or text file of numbers (whitespace or commas, one row per line),
  or a sequence / array of numbers; e.g. MISR's ``(K, 2)`` shifts or ``(K,)`` rotations.

This is an application module (it reads files): the science modules of :mod:`reconstruct` take arrays.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .files import PathLike, npy_problem

__all__ = ["parse_angles", "parse_numbers", "is_angle_range"]


def is_angle_range(text: str) -> bool:
    """Whether ``text`` looks like ``start:stop:count`` (rather than a file name)."""
    return text.count(":") == 2 and not Path(text).exists()


def _load_numbers(path: Path, what: str, hint: str) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            problem = npy_problem(path)
            if problem is not None:
                raise ValueError(problem)
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        rows = [line.replace(",", " ").split() for line in path.read_text().splitlines()]
        rows = [r for r in rows if r and not r[0].startswith("#")]
        if not rows:
            raise ValueError("the file holds no numbers")
        if len({len(r) for r in rows}) == 1 and len(rows[0]) > 1 and len(rows) > 1:
            return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
        return np.array([float(v) for r in rows for v in r], dtype=np.float64)
    except (OSError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"cannot read {what} from {path}: {reason}; {hint}") from None


def _file(text: str, base_dir: PathLike | None) -> Path:
    path = Path(text).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return path


def parse_angles(spec: Any, base_dir: PathLike | None = None) -> np.ndarray | None:
    """Projection angles in degrees from a spec.

    Args:
        spec: None; ``"start:stop:count"`` — ``count`` angles from ``start`` (inclusive) to ``stop``
            (exclusive), as ``numpy.linspace(start, stop, count, endpoint=False)`` (``"0:180:100"`` is
            scikit-image's usual ``theta``); a ``.npy`` or text file of degrees (one per projection,
            whitespace or commas); or a sequence of degrees.
        base_dir: folder that a relative file name is relative to (default: the working folder).

    Raises:
        ValueError: a malformed spec, a missing or unreadable file, non-finite or empty angles.
    """
    if spec is None:
        return None
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec).strip()
        if is_angle_range(text):
            parts = text.split(":")
            try:
                start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            except ValueError:
                raise ValueError(f"angles {text!r} is not start:stop:count (e.g. 0:180:100)") from None
            if count < 1 or not (math.isfinite(start) and math.isfinite(stop)):
                raise ValueError(f"angles {text!r}: count must be >= 1 and start/stop finite")
            return np.linspace(start, stop, count, endpoint=False)
        path = _file(text, base_dir)
        if not path.is_file():
            raise ValueError(f"angles {text!r} is neither start:stop:count nor an existing file")
        values: Any = _load_numbers(path, "angles", "store one number (degrees) per projection")
    else:
        values = spec
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"angles must be numbers (degrees), got {type(values).__name__}") from None
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError("angles must be a non-empty list of finite numbers (degrees)")
    return arr


def parse_numbers(spec: Any, what: str, base_dir: PathLike | None = None) -> np.ndarray | None:
    """Numbers from a file (``.npy``, or text: one row per line, whitespace or commas) or a sequence.

    Args:
        spec: None, a file name, or numbers (list, array, tensor).
        what: the name of the input, for messages (``"shifts"``).
        base_dir: folder that a relative file name is relative to.

    Returns:
        A float64 array (a text file with several numbers per line gives one row per line), or None.

    Raises:
        ValueError: a missing or unreadable file, non-finite or no numbers.
    """
    if spec is None:
        return None
    if isinstance(spec, (str, os.PathLike)):
        path = _file(os.fspath(spec).strip(), base_dir)
        if not path.is_file():
            raise ValueError(f"{what} {os.fspath(spec)!r} is not an existing file; give a .npy or text file")
        arr = _load_numbers(path, what, "store numbers, one row per line")
    else:
        if hasattr(spec, "detach"):  # a torch tensor
            spec = spec.detach().cpu().numpy()
        try:
            arr = np.asarray(spec, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be numbers, got {type(spec).__name__}") from None
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"{what} must be a non-empty array of finite numbers")
    return arr
