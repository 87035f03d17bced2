"""The file rules every writer of the application shares: atomic writes, JSON records, output checks.

- outputs are written atomically: a temporary file in the target folder, then ``os.replace``, so a
  killed process never leaves a half-written file under the final name;
- an existing file is replaced only when asked, and an output never lands on or inside an input;
- library errors are shortened to one line (:func:`one_line`) that names the file.

This module itself imports neither torch, SimpleITK nor napari, so any entry point may use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "PathLike",
    "one_line",
    "existing_file",
    "prepare_target",
    "atomic_write",
    "atomic_write_detached",
    "atomic_write_text",
    "json_safe",
    "write_json",
    "check_output_path",
    "check_writable",
    "check_outputs_apart",
    "companion_files",
    "remove_written",
    "npy_problem",
    "versions",
]

PathLike = str | os.PathLike

#: Distributions named in a run record's ``versions`` (besides ``python``), with their import names.
_VERSIONED = {
    "napari-nestnet": "napari_nestnet",
    "torch": "torch",
    "monai": "monai",
    "numpy": "numpy",
    "scikit-image": "skimage",
    "SimpleITK": "SimpleITK",
}


# --------------------------------------------------------------------------------------------------
# messages and paths
# --------------------------------------------------------------------------------------------------


def one_line(
    text: object,
    limit: int | None = 200,
    *,
    keep: Literal["first", "last"] = "last",
    fallback: str = "unknown error",
) -> str:
    """Shorten a (possibly multi-line, C++-decorated) library message to one informative line.

    SimpleITK's banner lines, ITK's stale ``Reason:`` lines and ``file.cxx:97:``/``ERROR:`` prefixes
    are dropped first.

    Args:
        text: the message (usually ``str(exc)``).
        limit: longest result in characters (longer ones end in ``...``); ``None`` keeps it whole.
        keep: which remaining line to keep: ``"last"`` suits ITK, whose detail comes last;
            ``"first"`` suits Python exceptions, whose summary comes first.
        fallback: the result when nothing is left.
    """
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
    if lines:
        short = lines[0] if keep == "first" else lines[-1]
    else:
        short = str(text).strip() or fallback
    short = " ".join(short.split())
    if limit is None or len(short) <= limit:
        return short
    return short[: limit - 3] + "..."


def existing_file(path: PathLike, kind: str = "an image file") -> Path:
    """``path`` as a :class:`~pathlib.Path` when it is an existing file.

    Args:
        path: the file to read (``~`` is expanded).
        kind: what the caller reads, for the message when ``path`` is a folder.

    Raises:
        ValueError: ``path`` is a folder.
        FileNotFoundError: nothing exists there.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give {kind}")
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return p


def prepare_target(path: PathLike, overwrite: bool) -> Path:
    """Check that ``path`` may be written and create its parent folders.

    Args:
        path: the file about to be written (``~`` is expanded).
        overwrite: whether an existing file there may be replaced.

    Raises:
        ValueError: ``path`` is an existing folder.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"output {target} is an existing folder; give a file name")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


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


def companion_files(output: PathLike) -> list[Path]:
    """The data files a detached header output (``.mhd``, ``.nhdr``) may be written with, beside it."""
    out = Path(output)
    name = out.name.lower()
    if name.endswith(".mhd"):
        return [out.with_suffix(".raw"), out.with_suffix(".zraw")]
    if name.endswith(".nhdr"):
        return [out.with_suffix(".raw"), out.with_suffix(".raw.gz")]
    return []


def check_outputs_apart(outputs: Iterable[PathLike], inputs: Iterable[PathLike]) -> None:
    """Refuse any output that is one of ``inputs`` (by path or, for existing files, by inode: hard links).

    For many paths at once (a batch run): a set lookup, not a pairwise comparison.

    Raises:
        ValueError: the first output that would overwrite an input, named with that input.
    """
    by_path: dict[Path, Path] = {}
    by_inode: dict[tuple[int, int], Path] = {}
    for item in inputs:
        inp = Path(item).expanduser().resolve()
        by_path[inp] = inp
        with contextlib.suppress(OSError):
            st = inp.stat()
            by_inode[(st.st_dev, st.st_ino)] = inp
    for item in outputs:
        out = Path(item).expanduser().resolve()
        hit = by_path.get(out)
        if hit is None and by_inode:
            with contextlib.suppress(OSError):
                st = out.stat()
                hit = by_inode.get((st.st_dev, st.st_ino))
        if hit is not None:
            raise ValueError(f"output {out} would overwrite an input ({hit}); choose another --out")


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def check_writable(target: PathLike, what: str = "output") -> Path:
    """Check, before any work, that ``target`` can be written: the way the write itself will do it.

    Folders missing above ``target`` are created, the temporary file the atomic write would use is
    created in ``target``'s folder and removed, and the folders created for the check are removed again,
    so nothing is left behind either way.

    Args:
        target: the file about to be written.
        what: its role, for the message (``"output"``, ``"surface"``).

    Raises:
        ValueError: a path component is a file, the folder cannot be created, or it is not writable
            (one line naming the folder and the reason).
    """
    target = Path(target).expanduser().absolute()
    missing: list[Path] = []
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {what} {target}: {folder} is a file, not a folder")
    created: list[Path] = []
    try:
        for sub in reversed(missing):
            try:
                sub.mkdir()
            except OSError as exc:
                raise ValueError(f"cannot write {what} {target}: cannot create the folder {sub} "
                                 f"({_reason(exc)})") from None
            created.append(sub)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
        except OSError as exc:
            raise ValueError(f"cannot write {what} {target}: the folder {target.parent} is not writable "
                             f"({_reason(exc)})") from None
        os.close(fd)
        os.unlink(tmp)
    finally:
        for sub in reversed(created):
            with contextlib.suppress(OSError):
                sub.rmdir()
    return target


def remove_written(paths: Iterable[PathLike]) -> None:
    """Remove files a failed run wrote (best effort), so no partial set of outputs is left behind."""
    for path in paths:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)


_NPY_MAGIC = b"\x93NUMPY"


def npy_problem(path: PathLike) -> str | None:
    """Why ``path`` is not a NumPy array file (``.npy``/``.npz``), or None when its first bytes say it is.

    Text or other files given a NumPy suffix get a plain answer instead of numpy's advice to load them
    with ``allow_pickle=True``.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return _reason(exc)
    npz = p.name.lower().endswith(".npz")
    if (npz and head.startswith(b"PK")) or (not npz and head.startswith(_NPY_MAGIC)):
        return None
    if not head:
        return "the file is empty"
    kind = "a NumPy .npz archive (a zip file)" if npz else "a NumPy array file (no \\x93NUMPY header)"
    shown = " ".join(head.decode("latin-1").split())
    start = f"; it starts with the text {shown[:12]!r}" if shown and shown.isascii() and shown.isprintable() else ""
    return f"it is not {kind}{start}"


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------

_UMASK: int | None = None


def _new_file_mode() -> int:
    """Mode a plain ``open(path, "w")`` would give (mkstemp's files are 0600)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _finish_mode(tmp: Path, target: Path) -> None:
    # keep the permissions of the file being replaced, else what a normal open() would give
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else _new_file_mode()
        os.chmod(tmp, mode)
    except OSError:
        pass


def atomic_write(
    target: Path, write_fn: Callable[[Path], object], what: str, *, suffix: str | None = None
) -> Path:
    """Call ``write_fn(tmp_path)`` on a temporary file next to ``target``, then move it into place.

    Library errors (anything but OSError) become a one-line ``ValueError`` naming ``what``; the
    temporary file never survives a failure or an interrupt.

    Args:
        target: the final file; its folder must exist (see :func:`prepare_target`).
        write_fn: writes the whole content to the path it is given.
        what: the kind of file, for error messages (``"NIfTI"``, ``"a checkpoint"``).
        suffix: the temporary file's suffix; writers that pick the format by suffix need the target's
            (``".nii.gz"``). Default: all of ``target``'s suffixes.
    """
    target = Path(target)
    suffix = "".join(target.suffixes) if suffix is None else suffix
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
        raise ValueError(f"cannot write {target} as {what}: {one_line(str(exc))}") from None
    except BaseException:  # KeyboardInterrupt: still leave no temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_detached(target: Path, write_fn: Callable[[Path], object], what: str, overwrite: bool) -> Path:
    """Like :func:`atomic_write` for header + data-file formats (``.mhd``/``.nhdr`` + ``.raw``).

    The pair is written under its final names in a temporary folder next to the target, then each
    file is moved into place, the data file before the header that points at it.

    Args:
        target: the header file.
        write_fn: writes the header (and whatever data files it names) at the path it is given.
        what: the kind of file, for error messages.
        overwrite: whether existing files with the produced names may be replaced.
    """
    target = Path(target)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        try:
            write_fn(tmp_dir / target.name)
        except OSError:
            raise
        except Exception as exc:
            raise ValueError(f"cannot write {target} as {what}: {one_line(str(exc))}") from None
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


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (parents are created).

    Args:
        path: target file; an existing one is replaced.
        text: the whole content.
        encoding: text encoding.
    """
    target = prepare_target(path, overwrite=True)
    return atomic_write(target, lambda tmp: tmp.write_text(text, encoding=encoding), "text")


# --------------------------------------------------------------------------------------------------
# JSON records
# --------------------------------------------------------------------------------------------------


def json_safe(obj: Any) -> Any:
    """A copy of ``obj`` made of dict/list/str/int/float/bool/None.

    numpy scalars and arrays, torch tensors and dtypes, paths, sets and dataclasses (an
    ``ImageMeta`` among them: its fields are what its ``to_dict`` holds) are converted.

    Args:
        obj: the value to convert.

    Raises:
        TypeError: a value of another type, named in the message.
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    # torch only when it is loaded already: no tensor can exist otherwise, and importing it costs seconds
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.dtype) or (torch is not None and isinstance(obj, torch.dtype)):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return [json_safe(v) for v in sorted(obj, key=repr)]
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    raise TypeError(
        f"cannot store a value of type {type(obj).__name__} as JSON; "
        "convert it to numbers, strings, lists or dicts"
    )


def write_json(path: PathLike, obj: Any, *, overwrite: bool = True, indent: int = 2) -> Path:
    """Write ``obj`` as indented JSON, atomically; numpy scalars/arrays, tensors and paths are converted.

    Args:
        path: target ``.json`` file.
        obj: dicts/lists of numbers and strings (numpy, torch, Path, ImageMeta and dataclasses allowed).
        overwrite: replace an existing file (default); ``False`` raises FileExistsError instead.
        indent: spaces per nesting level.
    """
    target = prepare_target(path, overwrite)
    text = json.dumps(json_safe(obj), indent=indent) + "\n"
    return atomic_write_text(target, text)


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on, for run records.

    Keys: ``python``, ``napari-nestnet``, ``torch``, ``monai``, ``numpy``, ``scikit-image`` and
    ``SimpleITK``; a library that is missing reads ``"not installed"``.
    """
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist, module_name in _VERSIONED.items():
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            # a module imported from a source tree has no installed metadata, but knows its version
            module = sys.modules.get(module_name)
            out[dist] = str(getattr(module, "__version__", "not installed"))
    return out
