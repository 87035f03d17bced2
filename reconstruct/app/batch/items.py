"""The items of a batch run: files, folders, glob patterns and CSV manifests, with unique output names.

A manifest is a CSV file with one row per item. Its columns (case-insensitive):

- ``path``: the input file (image, volume, sinogram, frames, or for ``occupancy`` also a mesh), relative
  to the manifest; tasks without an input file (``pinn``) have no ``path`` column;
- ``name``: the output stem (default: the file's stem; for ``pinn`` made from ``beta``);
- ``reference``: a ground truth for metrics, relative to the manifest;
- the task's per-item data inputs: CT ``angles`` (``start:stop:count`` or a file), MISR ``shifts`` and
  ``rotations`` (files);
- any parameter of ``nestnet batch <task>`` by name (``steps``, ``tv_weight``, ``scale``, ``beta``, ...),
  a per-item override of the run's value, parsed by the spec (``none`` for None, JSON for
  ``model_kwargs``). A blank cell means the run's value.
"""

from __future__ import annotations

import csv
import glob
import io as _stdio
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..angles import is_angle_range
from ..files import PathLike
from ..images import SUPPORTED_SUFFIXES, WRITABLE_SUFFIXES
from ..meshes import MESH_SUFFIXES
from .params import column_names

__all__ = ["BatchItem", "collect_items", "MESH_SUFFIXES", "output_suffix", "item_stem", "param_stem"]

#: Mesh files an ``occupancy`` item may be (read with :func:`reconstruct.app.meshes.read_mesh`).

_GLOB_CHARS = set("*?[")
_PICTURES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch run.

    Args:
        path: absolute path of the input file (``""`` for a task without one, the PINN).
        name: output stem inside the output folder (unique within the run).
        reference: ground truth for metrics (absolute path), or None.
        inputs: the item's own per-item data inputs by name (CT ``angles``: a ``start:stop:count`` spec
            or an absolute file name; MISR ``shifts``/``rotations``: files); absent ones take the run's.
        params: the item's own parameter values by name (manifest text, parsed by the spec when it runs).
    """

    path: str
    name: str
    reference: str | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def angles(self) -> Any:
        """The item's CT angles spec, or None (the run's)."""
        return self.inputs.get("angles")

    @property
    def scale(self) -> Any:
        """The item's super-resolution factor as given, or None (the run's)."""
        return self.params.get("scale")


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _known_suffix(name: str, suffixes: Sequence[str]) -> str | None:
    lower = name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):  # compound suffixes (".nii.gz") first
        if lower.endswith(suffix):
            return name[-len(suffix):]
    return None


def _suffixes(task: Any) -> tuple[str, ...]:
    name = getattr(task, "name", task)
    return SUPPORTED_SUFFIXES + (MESH_SUFFIXES if name in (None, "fit_occupancy") else ())


def item_stem(path: Path) -> str:
    """The file name without its (possibly compound) suffix."""
    suffix = _known_suffix(path.name, SUPPORTED_SUFFIXES + MESH_SUFFIXES)
    if suffix:
        return path.name[: -len(suffix)]
    return path.name.split(".", 1)[0] or path.name


def output_suffix(spec: Any, input_path: str) -> str:
    """The suffix of an item's output: the input's format where it can be written, else a float format."""
    if spec.output_grid == "own" or not input_path:
        return ".npz"  # numbers with their grid (spacing/origin), read back by read_image
    suffix = _known_suffix(Path(input_path).name, SUPPORTED_SUFFIXES)
    if suffix is None:
        return ".nii.gz"  # a mesh, or an unknown file
    lower = suffix.lower()
    if lower in _PICTURES:
        # a CT reconstruction is attenuation, an occupancy a probability: float32 TIFF, not a picture
        return ".tif" if spec.output_grid == "detector" or spec.name == "fit_occupancy" else ".png"
    return suffix if lower in WRITABLE_SUFFIXES else ".nii.gz"


def _is_candidate(path: Path, suffixes: Sequence[str]) -> bool:
    # hidden files include write_image's temporary files (".name.tmp-XXXX.nii.gz")
    return path.is_file() and not path.name.startswith(".") and _known_suffix(path.name, suffixes) is not None


def _blank(value: Any) -> Any:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _resolve(base: Path, text: str) -> str:
    return str((base / Path(text).expanduser()).resolve())


def _read_manifest(path: Path, spec: Any) -> list[dict[str, Any]]:
    """Rows of a CSV manifest (see the module docstring) as item dicts."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read manifest {path}: {exc}; give a UTF-8 CSV file") from None
    reader = csv.DictReader(_stdio.StringIO(text))
    if not reader.fieldnames:
        raise ValueError(f"manifest {path} is empty; its first row must name the columns (path[,reference,...])")
    known = column_names(spec)
    columns: dict[str, tuple[str, str]] = {}
    unknown = []
    for raw in reader.fieldnames:
        key = (raw or "").strip().lower().replace("-", "_")
        if key in known:
            columns[raw] = known[key]
        else:
            unknown.append(raw)
    if unknown:
        allowed = sorted({name for _, name in known.values()})
        task = f" of task {spec.command!r}" if spec is not None else ""
        raise ValueError(f"manifest {path} has unknown columns {unknown}; the columns{task} are {', '.join(allowed)}")
    needs_path = spec is None or bool(spec.inputs)
    kinds = {kind for kind, _ in columns.values()}
    if needs_path and "path" not in kinds:
        raise ValueError(f"manifest {path} has no 'path' column (columns: {', '.join(reader.fieldnames)}); "
                         "name the input column 'path'")
    if not needs_path and "path" in kinds:
        raise ValueError(f"manifest {path} has a 'path' column but task {spec.command!r} takes no input file; "
                         "give one row of parameters per item")
    base = path.parent
    rows = []
    for number, row in enumerate(reader, start=2):
        item: dict[str, Any] = {"path": "", "name": None, "reference": None, "inputs": {}, "params": {},
                                "row": f"{path.name}:{number}"}
        for raw, (kind, name) in columns.items():
            value = _blank(row.get(raw))
            if value is None:
                continue
            if kind == "path":
                item["path"] = _resolve(base, value)
            elif kind == "name":
                item["name"] = value
            elif kind == "reference":
                item["reference"] = _resolve(base, value)
            elif kind == "input":  # file names relative to the manifest; an angle range as it is
                item["inputs"][name] = value if name == "angles" and is_angle_range(value) else _resolve(base, value)
            else:
                item["params"][name] = value
        if needs_path and not item["path"]:
            continue
        if not needs_path and not any(_blank(v) for v in row.values()):
            continue
        rows.append(item)
    if not rows:
        raise ValueError(f"manifest {path} lists no items; add one row per item"
                         + (" with its 'path'" if needs_path else ""))
    return rows


def _unique_stems(paths: list[Path]) -> list[str]:
    """Output stems: the file's stem, or its path below the common folder when stems collide."""
    stems = [item_stem(p) for p in paths]
    lowered = [s.lower() for s in stems]  # case-insensitive file systems
    names = list(stems)
    clashing = [i for i, s in enumerate(lowered) if lowered.count(s) > 1]
    if clashing:
        common = Path(os.path.commonpath([str(paths[i].parent) for i in clashing]))
        for i in clashing:
            rel = paths[i].parent.relative_to(common).parts
            names[i] = "__".join((*rel, stems[i]))
    return names


def param_stem(params: Mapping[str, Any], spec: Any, index: int) -> str:
    """A name for an item without an input file: its positional parameters (``beta5``), else its row."""
    positional = [p.name for p in spec.params if p.positional] if spec is not None else []
    parts = [f"{k}{params[k]}" for k in positional if k in params]
    stem = "_".join(parts) if parts else f"item{index:03d}"
    return re.sub(r"[^A-Za-z0-9_+]", lambda m: {".": "p", "-": "m"}.get(m.group(), "_"), stem)


def _check_name(name: str, where: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{where}: name {name!r} must be a plain file stem (no folders, not hidden)")
    return name


def _number_duplicates(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = list(names)
    for i, name in enumerate(names):  # still equal (a.nii and a.nii.gz side by side): number them
        key = name.lower()
        if key in seen:
            seen[key] += 1
            out[i] = f"{name}-{seen[key]}"
        else:
            seen[key] = 1
    return out


def collect_items(inputs: PathLike | Sequence[PathLike], *, exclude: PathLike | None = None,
                  task: Any = None) -> list[BatchItem]:
    """Expand files, folders, glob patterns and CSV manifests into batch items, in the order given.

    Args:
        inputs: one entry or several. A file is one item (whatever its suffix: an unreadable one fails
            as an item); a folder contributes its image files (and mesh files for ``occupancy``; not
            recursive, hidden files ignored); a pattern with ``*``/``?``/``[`` is expanded (``**``
            recurses); a ``.csv`` file is a manifest (see the module docstring), paths relative to it.
        exclude: a folder whose files are never picked up by folders or patterns (the output folder).
        task: the batch task (command, task name or spec): its manifest columns are checked and named
            by its spec. None accepts the columns of every task.

    Returns:
        Items with unique output names; a file listed twice is kept once (its first listing).

    Raises:
        ValueError: no inputs, a pattern or folder without input files, a bad manifest.
        FileNotFoundError: a path that does not exist.
    """
    if task is not None and not hasattr(task, "output_grid"):
        from .params import batch_spec

        task = batch_spec(task)
    entries = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not entries:
        raise ValueError("no inputs given; pass files, folders, glob patterns or a CSV manifest")
    skip = Path(exclude).expanduser().resolve() if exclude is not None else None
    suffixes = _suffixes(task)

    def outside(p: Path) -> bool:
        return skip is None or not p.is_relative_to(skip)

    def plain(p: Path) -> dict[str, Any]:
        return {"path": str(p), "name": None, "reference": None, "inputs": {}, "params": {}}

    rows: list[dict[str, Any]] = []
    for entry in entries:
        text = os.fspath(entry)
        p = Path(text).expanduser()
        if p.is_file() and p.suffix.lower() == ".csv":
            rows.extend(_read_manifest(p.resolve(), task))
        elif task is not None and not task.inputs:
            raise ValueError(f"task {task.command!r} takes no input files; give CSV manifests of parameters "
                             f"(one row per item), not {text!r}")
        elif p.is_file():
            rows.append(plain(p.resolve()))
        elif p.is_dir():
            found = sorted(q.resolve() for q in p.iterdir() if _is_candidate(q, suffixes) and outside(q.resolve()))
            if not found:
                raise ValueError(f"folder {p} has no input files ({', '.join(suffixes)})")
            rows.extend(plain(q) for q in found)
        elif _is_glob(text):
            matches = sorted(Path(m).resolve() for m in glob.glob(os.path.expanduser(text), recursive=True))
            found = [q for q in matches if _is_candidate(q, suffixes) and outside(q)]
            if not found:
                raise ValueError(f"pattern {text!r} matched no input files; check the pattern and quote it "
                                 "so the shell does not expand it")
            rows.extend(plain(q) for q in found)
        else:
            raise FileNotFoundError(f"no such file or folder: {text}")
    unique: list[dict[str, Any]] = []
    seen_paths: set[str] = set()
    for row in rows:
        if row["path"] and row["path"] in seen_paths:
            continue
        seen_paths.add(row["path"])
        unique.append(row)
    file_rows = [i for i, r in enumerate(unique) if r["path"]]
    stems = dict(zip(file_rows, _unique_stems([Path(unique[i]["path"]) for i in file_rows])))
    names = []
    for i, row in enumerate(unique):
        where = row.get("row", row["path"])
        name = row["name"] or stems.get(i) or param_stem(row["params"], task, i)
        names.append(_check_name(name, where))
    names = _number_duplicates(names)
    return [BatchItem(path=r["path"], name=n, reference=r["reference"], inputs=dict(r["inputs"]),
                      params=dict(r["params"])) for r, n in zip(unique, names)]
