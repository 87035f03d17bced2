"""Batch reconstruction over many files: ``nestnet batch`` and :func:`run_batch`, on Dask.

Every input file is one *item*: it is read with :func:`reconstruct.io.read_image`, handed to one of the
:mod:`reconstruct.tasks` recipes and written back next to a JSON record::

    OUT/<name><suffix>   the result, in the input's format, with its spacing/origin/direction
    OUT/<name>.json      the record: status, reason, metrics, seconds, parameters, versions, input
    OUT/summary.csv      one row per item for the whole run (rewritten atomically at the end)

Metrics (PSNR, SSIM, and for CT those of the FBP baseline) are computed by the task when the item has a
ground truth (the manifest's ``reference`` column). A CT result's pixels are as wide as the sinogram's
detector bins; a super-resolved result covers the input's area on a ``scale``-times finer grid.

Rules the runner keeps:

- **Resumable.** An item is skipped when its output exists and its record says ``"ok"`` with the same
  parameter hash (task, parameters, the item's own options and the input file's size/mtime). The check
  runs in the driver (nothing is submitted) and again inside the task, so a retried item whose output
  already landed returns ``"skipped"`` instead of writing twice. Outputs and records are written
  atomically (temporary file + ``os.replace``): a killed worker never leaves a half file.
- **Faults isolated.** An unreadable or invalid item gets status ``"failed"`` and a one-line reason in
  its record and in the summary; the other items continue. ``nestnet batch`` exits with the number of
  failed items (capped at 125), 0 when all succeed, 126 when the run cannot start (bad arguments,
  inputs or scheduler), 130 when interrupted.
- **Dask.** By default a :class:`distributed.LocalCluster` (worker processes, one thread each) is
  started for the run and closed after it; ``scheduler="tcp://HOST:PORT"`` (or a scheduler JSON file,
  or a :class:`distributed.Client`) sends the items to an existing cluster, whose workers must see the
  same file paths (shared file system) and have napari-nestnet installed; ``scheduler="sequential"``
  runs a plain loop in this process. Items are submitted with ``pure=False`` and unique keys; an item
  on a worker that dies is re-run elsewhere by the scheduler (up to
  ``distributed.scheduler.allowed-failures`` times; the embedded cluster sets it to ``retries``).
- **GPUs.** One GPU per worker. With ``device="auto"`` a worker whose CUDA runtime shows several
  GPUs uses ``cuda:<worker name mod GPU count>`` (the embedded cluster names its workers 0..n-1 and
  starts one worker per GPU); on an external cluster start one worker per GPU with
  ``CUDA_VISIBLE_DEVICES=<i> dask worker tcp://HOST:PORT --nthreads 1`` so each sees exactly one.
- **Allocator.** The embedded cluster starts its workers with tcmalloc preloaded when it is installed
  (``NESTNET_ALLOCATOR=system`` or ``glibc`` leaves it out); every worker calls
  :func:`reconstruct.runtime.tune_allocator` before an item. The record names the allocator used.

This is an application module: the science modules of :mod:`reconstruct` never import it.

Example::

    from reconstruct.batch import run_batch

    summary = run_batch("ct", ["sinograms/"], "recon/", params={"steps": 300, "angles": "0:180:100"})
    print(summary.n_ok, summary.n_failed, summary.summary_csv)
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io as _stdio
import json
import math
import os
import platform
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .io import (
    SUPPORTED_SUFFIXES,
    WRITABLE_SUFFIXES,
    ImageMeta,
    atomic_write_text,
    check_output_path,
    read_image,
    write_image,
    write_json,
)

__all__ = [
    "BATCH_TASKS",
    "SUMMARY_NAME",
    "BatchItem",
    "ItemResult",
    "BatchSummary",
    "parse_angles",
    "collect_items",
    "param_hash",
    "run_item",
    "run_batch",
    "add_batch_parser",
    "run_batch_command",
    "write_phantom_sinograms",
]

#: ``nestnet batch`` task name -> function name in :mod:`reconstruct.tasks`.
BATCH_TASKS: dict[str, str] = {
    "ct": "ct_reconstruct",
    "denoise": "denoise",
    "fit-image": "fit_image",
    "sr": "super_resolve",
}

#: File name of the run's summary table inside the output folder.
SUMMARY_NAME = "summary.csv"

#: Bumped when the meaning of a record changes, so old records are recomputed rather than trusted.
RECORD_VERSION = 1

PathLike = str | os.PathLike

_COMMON_KEYS = ("model", "model_kwargs", "steps", "lr", "lr_decay", "seed", "device", "time_budget_s")
_TASK_KEYS: dict[str, tuple[str, ...]] = {
    "ct": ("angles", "layout", "output_size", "filter_name", "tv_weight"),
    "denoise": (),
    "fit-image": (),
    "sr": ("scale",),
}
# where the computation runs does not change what it computes: a run resumed on a GPU skips CPU results
_NOT_HASHED = ("device",)
_PICTURE_FORMATS = ("png", "jpeg", "bmp")
_GLOB_CHARS = set("*?[")
_SUMMARY_FIELDS = ("name", "status", "reason", "input", "output", "record", "seconds", "param_hash")
_STATUSES = ("ok", "skipped", "failed", "pending")


# --------------------------------------------------------------------------------------------------
# items
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch run.

    Args:
        path: absolute path of the input file.
        name: output stem inside the output folder (unique within the run).
        angles: this item's projection angles for CT (a ``start:stop:count`` spec in degrees, an angles
            file, or a list of degrees), or None for the run's default.
        scale: this item's super-resolution factor, or None for the run's default.
        reference: ground truth image for metrics (absolute path), or None.
    """

    path: str
    name: str
    angles: str | tuple[float, ...] | None = None
    scale: str | int | None = None
    reference: str | None = None


@dataclass
class ItemResult:
    """Outcome of one item: ``status`` is ``"ok"``, ``"skipped"`` (done before), ``"failed"`` or
    ``"pending"`` (the run was interrupted before it finished)."""

    name: str
    input: str
    status: str
    output: str | None = None
    record: str | None = None
    reason: str | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    param_hash: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemResult:
        known = {f: d[f] for f in cls.__dataclass_fields__ if f in d}
        return cls(**known)


@dataclass
class BatchSummary:
    """What :func:`run_batch` returns: one :class:`ItemResult` per item, in input order."""

    task: str
    out_dir: Path
    summary_csv: Path
    items: list[ItemResult]
    seconds: float
    scheduler: str
    n_workers: int | None = None

    def _count(self, status: str) -> int:
        return sum(1 for r in self.items if r.status == status)

    @property
    def n_ok(self) -> int:
        """Items computed in this run."""
        return self._count("ok")

    @property
    def n_skipped(self) -> int:
        """Items whose output from an earlier run was kept."""
        return self._count("skipped")

    @property
    def n_failed(self) -> int:
        """Items that failed (each with a reason)."""
        return self._count("failed")

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.items if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """Number of failed items capped at 125 (0 when all succeed): the ``nestnet batch`` exit code."""
        return min(self.n_failed, 125)

    @property
    def items_per_minute(self) -> float:
        """Items computed (status ``"ok"``) per minute of wall time."""
        return 60.0 * self.n_ok / self.seconds if self.seconds > 0 else 0.0


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _image_suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in SUPPORTED_SUFFIXES:  # compound suffixes (".nii.gz") come first
        if lower.endswith(suffix):
            return name[-len(suffix):]
    return None


def _stem(path: Path) -> str:
    suffix = _image_suffix(path.name)
    if suffix:
        return path.name[: -len(suffix)]
    return path.name.split(".", 1)[0] or path.name


def _is_candidate(path: Path) -> bool:
    # hidden files include write_image's temporary files (".name.tmp-XXXX.nii.gz")
    return path.is_file() and not path.name.startswith(".") and _image_suffix(path.name) is not None


def _none_if_blank(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value.strip() if isinstance(value, str) else value


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV manifest: ``path`` (required), optional ``angles``, ``scale``, ``reference``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read manifest {path}: {exc}; give a UTF-8 CSV file") from None
    reader = csv.DictReader(_stdio.StringIO(text))
    if not reader.fieldnames:
        raise ValueError(f"manifest {path} is empty; its first row must name the columns (path[,angles,scale])")
    columns = {name.strip().lower(): name for name in reader.fieldnames if name}
    if "path" not in columns:
        raise ValueError(f"manifest {path} has no 'path' column (columns: {', '.join(reader.fieldnames)}); "
                         "name the input column 'path'")
    unknown = sorted(set(columns) - {"path", "angles", "scale", "reference"})
    if unknown:
        raise ValueError(f"manifest {path} has unknown columns {unknown}; use path, angles, scale, reference")
    base = path.parent
    rows = []
    for row in reader:
        entry = _none_if_blank(row.get(columns["path"]))
        if entry is None:
            continue
        item: dict[str, Any] = {"path": str((base / Path(entry).expanduser()).resolve())}
        angles = _none_if_blank(row.get(columns.get("angles", ""), None))
        if angles is not None and ":" not in angles:  # a file name: relative to the manifest
            angles = str((base / Path(angles).expanduser()).resolve())
        item["angles"] = angles
        item["scale"] = _none_if_blank(row.get(columns.get("scale", ""), None))
        ref = _none_if_blank(row.get(columns.get("reference", ""), None))
        item["reference"] = str((base / Path(ref).expanduser()).resolve()) if ref else None
        rows.append(item)
    if not rows:
        raise ValueError(f"manifest {path} lists no inputs; add one row per item with its 'path'")
    return rows


def _unique_names(paths: list[Path]) -> list[str]:
    """Output stems: the file's stem, or its path below the common folder when stems collide."""
    stems = [_stem(p) for p in paths]
    lowered = [s.lower() for s in stems]  # case-insensitive file systems
    names = list(stems)
    clashing = [i for i, s in enumerate(lowered) if lowered.count(s) > 1]
    if clashing:
        common = Path(os.path.commonpath([str(paths[i].parent) for i in clashing]))
        for i in clashing:
            rel = paths[i].parent.relative_to(common).parts
            names[i] = "__".join((*rel, stems[i]))
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # still equal (a.nii and a.nii.gz side by side): number them
        key = name.lower()
        if key in seen:
            seen[key] += 1
            names[i] = f"{name}-{seen[key]}"
        else:
            seen[key] = 1
    return names


def collect_items(inputs: PathLike | Sequence[PathLike], *, exclude: PathLike | None = None) -> list[BatchItem]:
    """Expand files, folders, glob patterns and CSV manifests into batch items, in the order given.

    Args:
        inputs: one entry or several. A file is one item (whatever its suffix: an unreadable one fails
            as an item); a folder contributes its image files (not recursive, hidden files ignored); a
            pattern with ``*``/``?``/``[`` is expanded (``**`` recurses); a ``.csv`` file is a manifest
            with a ``path`` column and optional ``angles`` (``start:stop:count`` degrees, or an angles
            file), ``scale`` and ``reference`` (ground truth for metrics) columns, paths relative to
            the manifest.
        exclude: a folder whose files are never picked up by folders or patterns (the output folder).

    Returns:
        Items with unique output names; a file listed twice is kept once (its first listing).

    Raises:
        ValueError: no inputs, a missing path, a pattern or folder without image files, a bad manifest.
    """
    entries = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not entries:
        raise ValueError("no inputs given; pass files, folders, glob patterns or a CSV manifest")
    skip = Path(exclude).expanduser().resolve() if exclude is not None else None

    def outside(p: Path) -> bool:
        return skip is None or not p.is_relative_to(skip)

    rows: list[dict[str, Any]] = []
    for entry in entries:
        text = os.fspath(entry)
        p = Path(text).expanduser()
        if p.is_file() and p.suffix.lower() == ".csv":
            rows.extend(_read_manifest(p.resolve()))
        elif p.is_file():
            rows.append({"path": str(p.resolve())})
        elif p.is_dir():
            found = sorted(q.resolve() for q in p.iterdir() if _is_candidate(q) and outside(q.resolve()))
            if not found:
                raise ValueError(f"folder {p} has no image files ({', '.join(SUPPORTED_SUFFIXES)})")
            rows.extend({"path": str(q)} for q in found)
        elif _is_glob(text):
            matches = sorted(Path(m).resolve() for m in glob.glob(os.path.expanduser(text), recursive=True))
            found = [q for q in matches if _is_candidate(q) and outside(q)]
            if not found:
                raise ValueError(f"pattern {text!r} matched no image files; check the pattern and quote it "
                                 "so the shell does not expand it")
            rows.extend({"path": str(q)} for q in found)
        else:
            raise FileNotFoundError(f"no such file or folder: {text}")
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(row["path"], row)
    rows = list(unique.values())
    names = _unique_names([Path(r["path"]) for r in rows])
    return [
        BatchItem(path=r["path"], name=n, angles=r.get("angles"), scale=r.get("scale"), reference=r.get("reference"))
        for r, n in zip(rows, names)
    ]


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
        if text.count(":") == 2 and not Path(text).exists():
            parts = text.split(":")
            try:
                start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            except ValueError:
                raise ValueError(f"angles {text!r} is not start:stop:count (e.g. 0:180:100)") from None
            if count < 1 or not (math.isfinite(start) and math.isfinite(stop)):
                raise ValueError(f"angles {text!r}: count must be >= 1 and start/stop finite")
            return np.linspace(start, stop, count, endpoint=False)
        path = Path(text).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():
            raise ValueError(f"angles {text!r} is neither start:stop:count nor an existing file")
        try:
            if path.suffix.lower() == ".npy":
                values = np.load(path, allow_pickle=False)
            else:
                values = np.loadtxt(path.read_text().replace(",", " ").split(), dtype=np.float64)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read angles from {path}: {str(exc).splitlines()[0]}; "
                             "store one number (degrees) per projection") from None
    else:
        values = spec
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"angles must be numbers (degrees), got {type(values).__name__}") from None
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError("angles must be a non-empty list of finite numbers (degrees)")
    return arr


# --------------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------------


def _check_task(task: str) -> str:
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, got {type(task).__name__}")
    key = task.strip().lower().replace("_", "-")
    aliases = {v.replace("_", "-"): k for k, v in BATCH_TASKS.items()}  # "ct-reconstruct" -> "ct"
    key = aliases.get(key, key)
    if key not in BATCH_TASKS:
        raise ValueError(f"unknown batch task {task!r}; choose one of {', '.join(BATCH_TASKS)}")
    return key


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _number(value: Any, name: str, *, low: float = 0.0, high: float = math.inf, low_open: bool = True) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = math.isfinite(out) and (out > low if low_open else out >= low) and out <= high
    if not ok:
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    return out


def _check_params(task: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate run parameters up front (one error for the run, not one per item) and fill defaults."""
    from monai_nets import available_networks

    from .radon import FILTER_NAMES, LAYOUTS

    params = dict(params or {})
    allowed = _COMMON_KEYS + _TASK_KEYS[task]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown parameters for batch task {task!r}: {', '.join(unknown)}; "
                         f"allowed: {', '.join(allowed)}")
    out: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
    model = str(out.get("model", "nestnet")).strip().lower().replace("-", "_")
    if model not in available_networks():
        raise ValueError(f"unknown model {out.get('model')!r}; choose one of {', '.join(available_networks())}")
    out["model"] = model
    kwargs = out.get("model_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"model_kwargs must be a dict, got {type(kwargs).__name__}")
        try:
            out["model_kwargs"] = json.loads(json.dumps(dict(kwargs)))
        except (TypeError, ValueError):
            raise TypeError("model_kwargs must hold JSON values (numbers, strings, lists)") from None
    if "steps" in out:
        out["steps"] = _positive_int(out["steps"], "steps")
    if "lr" in out:
        out["lr"] = _number(out["lr"], "lr")
    if "lr_decay" in out:
        out["lr_decay"] = _number(out["lr_decay"], "lr_decay", high=1.0)
    if "seed" in out:
        if isinstance(out["seed"], bool) or not isinstance(out["seed"], (int, np.integer)) or out["seed"] < 0:
            raise ValueError(f"seed must be a non-negative integer, got {out['seed']!r}")
        out["seed"] = int(out["seed"])
    if "time_budget_s" in out:
        out["time_budget_s"] = _number(out["time_budget_s"], "time_budget_s")
    device = str(out.get("device", "auto")).strip().lower()
    head, _, index = device.partition(":")
    if head not in ("auto", "cpu", "cuda") or (index and (head != "cuda" or not index.isdigit())):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {out.get('device')!r}")
    out["device"] = device
    if task == "ct":
        layout = out.get("layout", "skimage")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        out["layout"] = layout
        if "output_size" in out:
            out["output_size"] = _positive_int(out["output_size"], "output_size")
        if "filter_name" in out and out["filter_name"] not in FILTER_NAMES:
            raise ValueError(f"filter_name must be one of {', '.join(FILTER_NAMES)}, got {out['filter_name']!r}")
        if "tv_weight" in out:
            out["tv_weight"] = _number(out["tv_weight"], "tv_weight", low_open=False)
        if "angles" in out:
            spec = out["angles"]
            if isinstance(spec, (str, os.PathLike)) and ":" not in os.fspath(spec):
                spec = str(Path(spec).expanduser().resolve())  # workers may run elsewhere: absolute
            elif not isinstance(spec, (str, os.PathLike)):
                spec = [float(a) for a in parse_angles(spec)]
            parse_angles(spec)  # fail now, not once per item
            out["angles"] = spec
    if task == "sr":
        out["scale"] = _positive_int(out.get("scale", 4), "scale")
    # defaults filled in so the record (and the hash) say what actually ran
    try:
        from . import tasks as _tasks

        out.setdefault("steps", int(_tasks.DEFAULT_STEPS[BATCH_TASKS[task]]))
        if "lr" not in out:
            out["lr"] = float(_tasks.default_lr(model, BATCH_TASKS[task]))
    except (ImportError, KeyError, AttributeError, TypeError, ValueError):
        pass  # the task applies its own defaults
    return out


def _file_stamp(path: PathLike | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def param_hash(task: str, params: Mapping[str, Any], item: BatchItem) -> str:
    """Hash deciding whether an earlier result can be kept: task, parameters (except ``device``), the
    item's own angles/scale/reference and the size and modification time of its input (and of an angles
    or reference file)."""
    angles = item.angles if item.angles is not None else params.get("angles")
    payload = {
        "record_version": RECORD_VERSION,
        "task": task,
        "params": {k: v for k, v in sorted(params.items()) if k not in _NOT_HASHED},
        "angles": list(angles) if isinstance(angles, (list, tuple)) else angles,
        "angles_file": _file_stamp(angles) if isinstance(angles, str) and ":" not in angles else None,
        "scale": item.scale,
        "reference": _file_stamp(item.reference),
        "input": _file_stamp(item.path),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# --------------------------------------------------------------------------------------------------
# one item (runs on a worker)
# --------------------------------------------------------------------------------------------------


def _output_suffix(task: str, input_path: str) -> str:
    suffix = _image_suffix(Path(input_path).name)
    if suffix is None:
        return ".nii.gz"
    lower = suffix.lower()
    if lower in (".png", ".jpg", ".jpeg", ".bmp"):
        # a CT reconstruction is attenuation, not a picture: keep its values in float32 TIFF
        return ".tif" if task == "ct" else ".png"
    return suffix if lower in WRITABLE_SUFFIXES else ".nii.gz"


def _versions() -> dict[str, str]:
    from importlib import metadata

    import monai
    import torch

    try:
        own = metadata.version("napari-nestnet")
    except metadata.PackageNotFoundError:
        own = "unknown"
    return {"napari-nestnet": own, "torch": torch.__version__, "monai": monai.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _reason(exc: BaseException) -> str:
    """One line naming the problem (library tracebacks and C++ decorations dropped)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if not isinstance(exc, (ValueError, TypeError, FileNotFoundError)) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _done_before(output: str, record: str, phash: str) -> dict[str, Any] | None:
    """The earlier record when ``output`` and ``record`` exist, say "ok" and carry ``phash``."""
    if not (os.path.isfile(output) and os.path.isfile(record)):
        return None
    try:
        with open(record, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if isinstance(rec, dict) and rec.get("status") == "ok" and rec.get("param_hash") == phash:
        return rec
    return None


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _pick_device(device: str) -> str:
    """``auto`` on a worker that sees several GPUs: one GPU per worker, by worker name."""
    if device != "auto":
        return device
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    digits = "".join(c for c in str(name) if c.isdigit())
    return f"cuda:{int(digits) % torch.cuda.device_count()}" if digits else device


def _prepare_worker(torch_threads: int | None) -> str:
    """Tune the allocator (idempotent) and torch's threads; returns the allocator in use."""
    try:
        from .runtime import tune_allocator
    except ImportError:
        allocator = "system"
    else:
        allocator = tune_allocator()
    if torch_threads:
        import torch

        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
    return allocator


def _plain_image(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"the image has dtype {arr.dtype}; store numbers")
    return arr


def _ct_meta(meta: ImageMeta, layout: str) -> ImageMeta:
    """Image geometry from a sinogram's: pixels as wide as the detector bins, origin and direction kept."""
    if meta.ndim != 2:
        return ImageMeta.default(2, format=meta.format)
    # numpy rows are SimpleITK's y axis: skimage layout (detectors x angles) has detectors on rows
    det_spacing = meta.spacing[1] if layout == "skimage" else meta.spacing[0]
    return ImageMeta((det_spacing, det_spacing), meta.origin, meta.direction, format=meta.format,
                     extra={k: v for k, v in meta.extra.items() if k != "metadata"})


def _sr_meta(meta: ImageMeta, scale: int) -> ImageMeta:
    """Geometry of the ``scale``-times finer grid covering the same area."""
    spacing = np.asarray(meta.spacing) / scale
    # both grids start at the same edge, half a pixel before their first centre: the fine one is nearer it
    shift = (spacing - np.asarray(meta.spacing)) / 2.0
    origin = np.asarray(meta.origin) + meta.direction_matrix @ shift
    return ImageMeta(tuple(spacing), tuple(origin), meta.direction, format=meta.format, extra=dict(meta.extra))


def _to_input_dtype(out: np.ndarray, meta: ImageMeta) -> np.ndarray:
    """Pictures go back to their integer dtype (the task returns the input's value range as float)."""
    dtype = np.dtype(str(meta.extra.get("dtype", "float32")))
    if meta.format not in _PICTURE_FORMATS or dtype.kind not in "iu":
        return out
    info = np.iinfo(dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(dtype)


def _common_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = {k: params[k] for k in ("model", "model_kwargs", "steps", "lr", "lr_decay", "seed",
                                      "time_budget_s") if k in params}
    kwargs["device"] = _pick_device(str(params.get("device", "auto")))
    return kwargs


def _compute(task: str, item: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, np.ndarray, ImageMeta]:
    """Read the input, run the task, return ``(FitResult, output array, output meta)``."""
    from . import tasks as _tasks

    arr, meta = read_image(item["path"])
    arr = _plain_image(arr)
    reference = None
    if item.get("reference"):
        reference = _plain_image(read_image(item["reference"])[0])  # its dtype sets the metric's data range
    kwargs = _common_kwargs(params)
    if reference is not None:  # scored by the task, by the project's metric conventions
        kwargs["reference"] = reference
    if task == "ct":
        if arr.ndim != 2:
            raise ValueError(f"a sinogram must be 2-D, got shape {arr.shape}; give one slice per file")
        layout = params.get("layout", "skimage")
        spec = item.get("angles") if item.get("angles") is not None else params.get("angles")
        angles = parse_angles(spec)
        if angles is None:
            n_angles = arr.shape[1] if layout == "skimage" else arr.shape[0]
            angles = np.linspace(0.0, 180.0, n_angles, endpoint=False)
        extra = {k: params[k] for k in ("output_size", "filter_name", "tv_weight") if k in params}
        result = _tasks.ct_reconstruct(arr.astype(np.float32), angles, layout=layout, **extra, **kwargs)
        out, out_meta = np.asarray(result.output, dtype=np.float32), _ct_meta(meta, layout)
    elif task == "sr":
        scale = item.get("scale") if item.get("scale") is not None else params.get("scale", 4)
        scale = _positive_int(scale, "scale")
        result = _tasks.super_resolve(arr, scale=scale, **kwargs)
        out, out_meta = np.asarray(result.output), _sr_meta(meta, scale)
    else:
        fn = _tasks.denoise if task == "denoise" else _tasks.fit_image
        result = fn(arr, **kwargs)
        out, out_meta = np.asarray(result.output), meta
    if task != "ct":
        out = _to_input_dtype(out, meta)
    return result, out, out_meta


def _floats(values: Any) -> dict[str, float] | None:
    return {str(k): float(v) for k, v in values.items()} if isinstance(values, Mapping) else None


def run_item(
    task: str,
    item: Mapping[str, Any],
    params: Mapping[str, Any],
    phash: str,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Process one item and write its output and record; never raises for a bad item.

    This is what runs on a Dask worker (or in the sequential loop).

    Args:
        task: a key of :data:`BATCH_TASKS`.
        item: a :class:`BatchItem` as a dict plus ``output`` and ``record`` paths.
        params: validated run parameters.
        phash: the item's :func:`param_hash`; an existing "ok" record with it means "skipped".
        torch_threads: intra-op threads for torch on this worker (None leaves it).

    Returns:
        An :class:`ItemResult` as a dict.
    """
    start = time.perf_counter()
    base = {"name": item["name"], "input": item["path"], "output": item["output"], "record": item["record"],
            "param_hash": phash}
    earlier = _done_before(item["output"], item["record"], phash)
    if earlier is not None:  # a retried item whose output already landed: never write twice
        return {**base, "status": "skipped", "seconds": float(earlier.get("seconds", 0.0)),
                "metrics": dict(earlier.get("metrics") or {})}
    allocator = _prepare_worker(torch_threads)
    record: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "name": item["name"],
        "task": task,
        "task_function": f"reconstruct.tasks.{BATCH_TASKS[task]}",
        "input": {"path": item["path"], **(_file_stamp(item["path"]) or {})},
        "reference": item.get("reference"),
        "param_hash": phash,
        "parameters": dict(params),
        "worker": _worker_name(),
        "allocator": allocator,
        "versions": _versions(),
    }
    for key in ("angles", "scale"):  # the item's own options win over the run's defaults
        if item.get(key) is not None:
            record["parameters"][key] = item[key]
    try:
        result, out, out_meta = _compute(task, item, params)
        write_image(item["output"], out, out_meta, overwrite=True)
        metrics = _floats(result.metrics) or {}
        best = result.best
        extras = result.extras or {}
        record.update({
            "status": "ok",
            "reason": None,
            "output": item["output"],
            "output_shape": list(out.shape),
            "output_meta": out_meta.to_dict(),
            "metrics": metrics,
            # the best iterate by the reference (oracle early stopping): for information, the output is final
            "best": {"step": int(best.step), "metrics": _floats(best.metrics)} if best is not None else None,
            "fbp_metrics": _floats(extras.get("fbp_metrics")),
            "bicubic_metrics": _floats(extras.get("bicubic_metrics")),
            "normalisation": extras.get("normalisation"),
            "steps": int(result.steps),
            "fit_seconds": float(result.seconds),
            "stopped_by": str(result.stopped_by),
            "device": str(result.device),
        })
        status, reason = "ok", None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one bad item must not stop the run: record it and go on
        status, reason, metrics = "failed", _reason(exc), {}
        record.update({"status": "failed", "reason": reason, "output": None, "metrics": {}})
    seconds = time.perf_counter() - start
    record["seconds"] = seconds
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        write_json(item["record"], record)
    except (OSError, ValueError, TypeError) as exc:
        status, reason = "failed", f"cannot write the record: {_reason(exc)}"
    return {**base, "status": status, "reason": reason, "seconds": seconds, "metrics": metrics,
            "output": item["output"] if status == "ok" else None}


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


def _write_summary(path: Path, results: list[ItemResult]) -> Path:
    metric_names = sorted({k for r in results for k in r.metrics})
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*_SUMMARY_FIELDS, *metric_names], lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = {k: getattr(r, k) for k in _SUMMARY_FIELDS}
        row["seconds"] = f"{r.seconds:.3f}"
        row.update({k: f"{v:.6g}" for k, v in r.metrics.items()})
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def _default_workers(n_pending: int) -> int:
    import torch

    if torch.cuda.is_available():
        return max(1, min(torch.cuda.device_count(), n_pending))
    cores = os.cpu_count() or 1
    try:  # each worker holds torch plus a fit: keep about 2 GB per worker
        import psutil

        cores = min(cores, max(1, int(psutil.virtual_memory().total // (2 << 30))))
    except ImportError:
        pass
    return max(1, min(cores, n_pending))


def _tcmalloc_preload() -> str | None:
    """``LD_PRELOAD`` value that starts the embedded workers with tcmalloc (see :mod:`reconstruct.runtime`)."""
    if os.environ.get("NESTNET_ALLOCATOR", "").lower() in ("system", "glibc"):
        return None
    try:
        from .runtime import tcmalloc_path
    except ImportError:
        return None
    lib = tcmalloc_path()
    if lib is None or not sys.platform.startswith("linux"):
        return None
    return (lib + " " + os.environ.get("LD_PRELOAD", "")).strip()


def _describe(scheduler: Any) -> str:
    if scheduler is None:
        return "local"
    if isinstance(scheduler, str):
        return scheduler
    return f"client:{getattr(scheduler, 'scheduler', None) and scheduler.scheduler.address}"


def _run_sequential(task, jobs, params, on_result) -> None:
    for job, phash in jobs:
        on_result(run_item(task, job, params, phash))


def _run_dask(task, jobs, params, on_result, scheduler, n_workers, retries) -> int | None:
    import dask
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    own_client = True
    torch_threads = None
    if scheduler is None or scheduler == "local":
        n_workers = n_workers or _default_workers(len(jobs))
        torch_threads = max(1, (os.cpu_count() or 1) // n_workers)
        # the embedded scheduler and the nannies live in this process, so this config reaches them
        config: dict[str, Any] = {"distributed.scheduler.allowed-failures": int(retries)}
        preload = _tcmalloc_preload()
        if preload:  # the allocator must be chosen before a worker process starts
            config["distributed.nanny.pre-spawn-environ.LD_PRELOAD"] = preload
        with dask.config.set(config):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
    elif isinstance(scheduler, Client):
        client, own_client = scheduler, False
    elif isinstance(scheduler, str) and scheduler.endswith(".json"):
        client = Client(scheduler_file=scheduler, timeout="30s")
    else:
        client = Client(scheduler, timeout="30s")
    futures = {}
    try:
        for job, phash in jobs:
            key = f"nestnet-batch-{job['name']}-{uuid.uuid4().hex[:8]}"
            fut = client.submit(run_item, task, job, params, phash, torch_threads,
                                key=key, pure=False, retries=int(retries))
            futures[fut] = job
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # lost too many workers (KilledWorker), or an infrastructure error
                res = {"name": job["name"], "input": job["path"], "status": "failed",
                       "reason": f"not run: {_reason(exc)}", "record": job["record"]}
                _write_failed_record(task, job, params, res["reason"])
            on_result(res)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    return n_workers


def _write_failed_record(task: str, job: Mapping[str, Any], params: Mapping[str, Any], reason: str) -> None:
    record = {"record_version": RECORD_VERSION, "name": job["name"], "task": task, "status": "failed",
              "reason": reason, "input": {"path": job["path"]}, "output": None, "metrics": {},
              "parameters": dict(params), "versions": _versions(),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        write_json(job["record"], record)
    except (OSError, ValueError, TypeError):
        pass


def run_batch(
    task: str,
    inputs: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    *,
    params: Mapping[str, Any] | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    retries: int = 2,
    progress: bool = True,
) -> BatchSummary:
    """Run one task over many inputs; see the module docstring for the rules.

    Args:
        task: ``"ct"``, ``"denoise"``, ``"fit-image"`` or ``"sr"``.
        inputs: files, folders, glob patterns and CSV manifests (see :func:`collect_items`).
        out_dir: output folder (created); must not be an input or inside an input folder.
        params: task parameters: ``model``, ``model_kwargs``, ``steps``, ``lr``, ``lr_decay``, ``seed``,
            ``device``, ``time_budget_s``; for ``ct`` also ``angles`` (default for items without their
            own; None means ``0:180:n_angles``), ``layout``, ``output_size``, ``filter_name``,
            ``tv_weight``; for ``sr`` ``scale`` (default 4).
        scheduler: None or ``"local"`` (an embedded LocalCluster for this run), ``"sequential"`` (a
            plain loop here), ``"tcp://HOST:PORT"``, a scheduler JSON file, or a ``distributed.Client``.
        n_workers: worker processes of the embedded cluster (default: one per GPU, else one per core,
            at most one per 2 GB of memory and one per item).
        retries: times an item is re-run after its worker is lost or the task raises.
        progress: show a tqdm progress bar over the items (on stderr).

    Returns:
        A :class:`BatchSummary`; ``summary.exit_code`` is the number of failed items capped at 125.

    Note:
        The embedded cluster starts worker processes by spawning: in a script, call ``run_batch`` under
        ``if __name__ == "__main__":`` (as for any ``multiprocessing`` or Dask program).

    Raises:
        ValueError / FileNotFoundError / TypeError: bad task, parameters, inputs or output folder
            (nothing has run).
        KeyboardInterrupt: after writing the summary so far (unfinished items are ``"pending"``).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    task = _check_task(task)
    params = _check_params(task, params)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    if n_workers is not None:
        n_workers = _positive_int(n_workers, "n_workers")
    if isinstance(scheduler, str):
        scheduler = scheduler.strip()
        if scheduler not in ("local", "sequential") and not scheduler.endswith(".json") \
                and "://" not in scheduler:
            raise ValueError(f"scheduler {scheduler!r} is not 'local', 'sequential', 'tcp://HOST:PORT' "
                             "or a scheduler .json file")
    out = Path(out_dir).expanduser().resolve()
    explicit = [e for e in ([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
                if not _is_glob(os.fspath(e)) and Path(e).expanduser().exists()]
    check_output_path(out, explicit, want_file=False)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    items = collect_items(inputs, exclude=out)
    read_paths = {Path(i.path) for i in items} | {Path(i.reference) for i in items if i.reference}
    jobs: list[tuple[dict[str, Any], str]] = []
    for item in items:
        output = out / f"{item.name}{_output_suffix(task, item.path)}"
        if output in read_paths:
            raise ValueError(f"output {output} would overwrite an input; choose another --out")
        job = {**asdict(item), "output": str(output), "record": str(out / f"{item.name}.json")}
        if isinstance(job["angles"], tuple):
            job["angles"] = list(job["angles"])
        jobs.append((job, param_hash(task, params, item)))
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, ItemResult] = {}
    todo: list[tuple[dict[str, Any], str]] = []
    for job, phash in jobs:
        earlier = _done_before(job["output"], job["record"], phash)
        if earlier is None:
            todo.append((job, phash))
        else:
            results[job["name"]] = ItemResult(job["name"], job["path"], "skipped", job["output"], job["record"],
                                              None, float(earlier.get("seconds", 0.0)),
                                              dict(earlier.get("metrics") or {}), phash)
    bar = tqdm(total=len(jobs), initial=len(results), unit="item", desc=f"nestnet batch {task}",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    n_failed = 0

    def on_result(res: Mapping[str, Any]) -> None:
        nonlocal n_failed
        r = ItemResult.from_dict(res)
        results[r.name] = r
        if r.status == "failed":
            n_failed += 1
            bar.set_postfix(failed=n_failed)
        bar.update(1)

    mode = "sequential" if scheduler == "sequential" else _describe(scheduler)
    workers_used: int | None = None
    try:
        if todo:
            if scheduler == "sequential":
                _run_sequential(task, todo, params, on_result)
            else:
                workers_used = _run_dask(task, todo, params, on_result, scheduler, n_workers, retries)
    finally:
        bar.close()
        ordered = []
        for job, phash in jobs:
            ordered.append(results.get(job["name"]) or ItemResult(
                job["name"], job["path"], "pending", None, None, "interrupted before it finished", 0.0, {}, phash))
        summary_path = _write_summary(out / SUMMARY_NAME, ordered)
    return BatchSummary(task, out, summary_path, ordered, time.perf_counter() - start, mode, workers_used)


def write_phantom_sinograms(
    folder: PathLike,
    count: int = 4,
    size: int = 64,
    n_angles: int = 60,
    *,
    pixel_size: float = 1.0,
    suffix: str = ".nii.gz",
    seed: int = 0,
) -> Path:
    """Write ``count`` small CT test items (rotated Shepp-Logan phantoms) and a manifest; returns the manifest.

    For demos, tests and benchmarks (the MONAI bundle in ``configs/`` uses it). Each item ``i`` is a
    sinogram ``sino_<i>`` (scikit-image layout, detectors × angles, made by ``skimage.transform.radon``
    over ``0:180:n_angles``; SimpleITK spacing ``(1, pixel_size)``: detector bins ``pixel_size`` wide) and
    its phantom ``phantom_<i>`` (values in [0, 1], spacing ``pixel_size``). ``manifest.csv`` lists them
    with ``path``, ``angles`` and ``reference`` columns.

    Args:
        folder: where to write (created).
        count: number of items.
        size: phantom side in pixels.
        n_angles: projections per sinogram.
        pixel_size: physical pixel size stored in the files.
        suffix: file type of the images (``.nii.gz``, ``.mha``, ``.nrrd``, ``.tif``, ``.npz``).
        seed: seeds the rotation and contrast of each phantom.
    """
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, resize, rotate

    count = _positive_int(count, "count")
    size = _positive_int(size, "size")
    n_angles = _positive_int(n_angles, "n_angles")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    yy, xx = np.mgrid[:size, :size] - (size // 2)
    inside = (xx**2 + yy**2) <= (size // 2 - 1) ** 2  # radon(circle=True) sees only the inscribed disc
    theta = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    angles_spec = f"0:180:{n_angles}"
    rows = ["path,angles,reference"]
    for i in range(count):
        phantom = rotate(base, float(rng.uniform(-30, 30)), preserve_range=True) * float(rng.uniform(0.7, 1.0))
        phantom = np.clip(phantom * inside, 0.0, 1.0).astype(np.float32)
        sino = radon(phantom, theta=theta, circle=True).astype(np.float32)
        sino_name, ref_name = f"sino_{i:03d}{suffix}", f"phantom_{i:03d}{suffix}"
        write_image(folder / sino_name, sino, ImageMeta((1.0, pixel_size), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)),
                    overwrite=True)
        write_image(folder / ref_name, phantom,
                    ImageMeta((pixel_size, pixel_size), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)), overwrite=True)
        rows.append(f"{sino_name},{angles_spec},{ref_name}")
    return atomic_write_text(folder / "manifest.csv", "\n".join(rows) + "\n")


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------

_EPILOG = """\
inputs: image files, folders (their image files), glob patterns (quote them; ** recurses) or CSV
manifests with a 'path' column and optional 'angles' (start:stop:count degrees or an angles file),
'scale' and 'reference' (ground truth for metrics) columns.

outputs in --out: <name><suffix> (the input's format and geometry; pictures give .png, or .tif for
CT), <name>.json (status, reason, metrics, seconds, parameters, versions) and summary.csv. A rerun
skips items whose output and record exist for the same parameters, so an interrupted run continues.

exit status: 0 all items succeeded; 1-125 the number of failed items (capped at 125); 126 the run
could not start (bad arguments, inputs or scheduler); 130 interrupted.

examples:
  nestnet batch ct sinograms/ --out recon/ --angles 0:180:100 --steps 300
  nestnet batch denoise 'scans/**/*.nii.gz' --out denoised/ --scheduler tcp://10.0.0.5:8786
  nestnet batch ct manifest.csv --out recon/ --workers 4
"""


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        example = '{"hidden_channels": [128, 128]}'
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object; write e.g. '{example}'")
    return value


def _exit_on_usage_error(parser: argparse.ArgumentParser) -> None:
    # usage errors must not be mistaken for "2 items failed": they exit 126 like any failure to start
    def error(message: str):
        parser.print_usage(sys.stderr)
        parser.exit(126, f"{parser.prog}: error: {message}\n")

    parser.error = error  # type: ignore[method-assign]


def add_batch_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``batch`` sub-command to an ``argparse`` sub-parsers object; sets ``func=run_batch_command``.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.

    Returns:
        The ``batch`` parser.
    """
    from monai_nets import available_networks

    from .radon import FILTER_NAMES, LAYOUTS

    p = subparsers.add_parser(
        "batch",
        help="run a task over many files (Dask; resumable)",
        description="Reconstruct, denoise, fit or super-resolve many images, on a local or remote Dask "
                    "cluster; resumable, one bad item never stops the run.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _exit_on_usage_error(p)
    p.add_argument("task", choices=list(BATCH_TASKS), help="what to do with each item")
    p.add_argument("inputs", nargs="+", help="files, folders, glob patterns or CSV manifests")
    p.add_argument("--out", "-o", required=True, help="output folder (created)")
    g = p.add_argument_group("fit")
    g.add_argument("--model", default="nestnet", choices=available_networks(), help="network (default nestnet)")
    g.add_argument("--model-kwargs", type=_json_object, default=None, metavar="JSON",
                   help='network arguments as JSON, e.g. \'{"hidden_channels": [128, 128]}\'')
    g.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the task's)")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: per model and task)")
    g.add_argument("--lr-decay", type=float, default=None, help="factor the learning rate reaches at the end")
    g.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    g.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--time-budget", type=float, default=None, metavar="SECONDS", help="stop each fit after this")
    c = p.add_argument_group("ct")
    c.add_argument("--angles", default=None, metavar="SPEC",
                   help="start:stop:count degrees (count from start, stop excluded) or an angles file; "
                        "default 0:180:<number of projections>")
    c.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="sinogram layout: skimage = detectors x angles (default), torch = angles x detectors")
    c.add_argument("--output-size", type=int, default=None, help="reconstruction size (default: detectors)")
    c.add_argument("--filter", dest="filter_name", choices=FILTER_NAMES, default=None, help="FBP filter")
    c.add_argument("--tv-weight", type=float, default=None, help="total-variation weight (default 0)")
    s = p.add_argument_group("sr")
    s.add_argument("--scale", type=int, default=None, help="super-resolution factor (default 4)")
    d = p.add_argument_group("dask")
    d.add_argument("--scheduler", default="local",
                   help="local (default: a cluster started for this run), sequential (no Dask), "
                        "tcp://HOST:PORT or a scheduler JSON file")
    d.add_argument("--workers", type=int, default=None, help="worker processes of the local cluster")
    d.add_argument("--retries", type=int, default=2, help="re-runs of an item whose worker was lost (default 2)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_batch_command)
    return p


def _params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    task = _check_task(args.task)
    names = {"model": "model", "model_kwargs": "model_kwargs", "steps": "steps", "lr": "lr",
             "lr_decay": "lr_decay", "seed": "seed", "device": "device", "time_budget_s": "time_budget"}
    if task == "ct":
        names.update({"angles": "angles", "layout": "layout", "output_size": "output_size",
                      "filter_name": "filter_name", "tv_weight": "tv_weight"})
    if task == "sr":
        names["scale"] = "scale"
    params = {key: getattr(args, attr, None) for key, attr in names.items()}
    given_elsewhere = [flag for flag, attr in (("--angles", "angles"), ("--layout", "layout"),
                       ("--output-size", "output_size"), ("--filter", "filter_name"),
                       ("--tv-weight", "tv_weight"), ("--scale", "scale"))
                       if attr not in names.values() and getattr(args, attr, None) is not None]
    if given_elsewhere:
        raise ValueError(f"{', '.join(given_elsewhere)} do not apply to task {args.task!r}")
    return {k: v for k, v in params.items() if v is not None}


def run_batch_command(args: argparse.Namespace, *, echo: Callable[[str], Any] | None = None) -> int:
    """Run ``nestnet batch`` from parsed arguments; returns the exit code (see the parser's epilog).

    Args:
        args: what the parser from :func:`add_batch_parser` produced.
        echo: where the closing report goes (default: stderr).
    """
    def default_echo(text: str) -> None:
        print(text, file=sys.stderr)

    say = echo or default_echo
    try:
        summary = run_batch(args.task, args.inputs, args.out, params=_params_from_args(args),
                            scheduler=args.scheduler, n_workers=args.workers, retries=args.retries,
                            progress=not args.no_progress)
    except KeyboardInterrupt:
        say("nestnet batch: interrupted; run the same command again to continue")
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, OSError) as exc:
        say(f"nestnet batch: error: {_reason(exc)}")
        return 126
    say(f"nestnet batch {summary.task}: {len(summary.items)} items - {summary.n_ok} done, "
        f"{summary.n_skipped} skipped, {summary.n_failed} failed in {summary.seconds:.1f} s; "
        f"summary: {summary.summary_csv}")
    for r in summary.failed:
        say(f"  failed {r.input}: {r.reason}")
    return summary.exit_code
