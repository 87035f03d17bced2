"""One batch item, as it runs on a Dask worker (or in the sequential loop): read, fit, write, record.

:func:`run_item` never raises for a bad item: whatever goes wrong (an unreadable file, a value the spec
refuses, the task's own checks) becomes status ``"failed"`` with a one-line reason in the item's record.
Outputs and records are written atomically. The record is :func:`reconstruct.app.records.run_record`
(every parameter the task ran with, metrics, best iterate, baselines, history, versions) plus the
batch fields: ``status``, ``reason``, ``command``, ``name``, ``param_hash``, ``record_version``, ``worker``,
``allocator``, ``input`` (path, size, mtime), ``options`` (the runner's own, e.g. the voxel resolution),
``overrides`` (the item's manifest values), ``output_shape``, ``output_meta``, ``wall_seconds``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ...tasks.common import check_sinogram_layout
from ..angles import parse_angles, parse_numbers
from ..files import json_safe, one_line, versions, write_json
from ..geometry import output_meta
from ..images import check_data_inside, read_image, write_image
from ..memory import check_memory, mesh_volume_shape, run_estimate
from ..meta import ImageMeta
from .items import MESH_SUFFIXES
from .params import BATCH_OPTIONS, RECORD_VERSION, batch_spec, file_stamp, item_values, split_values

__all__ = ["run_item", "write_failed_record", "reason_of", "done_before"]

_PICTURE_FORMATS = ("png", "jpeg", "bmp")


def reason_of(exc: BaseException) -> str:
    """One line naming the problem (library tracebacks and C++ decorations dropped)."""
    text = one_line(str(exc), limit=None, keep="first", fallback="")
    if not isinstance(exc, (ValueError, TypeError, FileNotFoundError)) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def done_before(output: str, record: str, phash: str) -> dict[str, Any] | None:
    """The earlier record when ``output`` and ``record`` exist, say "ok" and carry ``phash``."""
    import json

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
    from ..runtime import tune_allocator

    allocator = tune_allocator()
    if torch_threads:
        import torch

        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
    return allocator


# ------------------------------------------------------------------------------------------------ reading


def _numbers(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} has dtype {arr.dtype}; store numbers")
    return arr


def _binary_volume(arr: np.ndarray, what: str) -> np.ndarray:
    """A label or probability volume as booleans: floats in [0, 1] at 0.5, anything else > 0."""
    if arr.ndim != 3:
        raise ValueError(f"{what} must be a 3-D volume (D, H, W); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1:
        return arr >= 0.5
    return arr > 0


def _declared_bits(spec, values, meta) -> dict[str, Any]:
    """The file's own bit depth (TIFF ``BitsPerSample``) for tasks that take one, unless the run gives one."""
    bits = meta.extra.get("bit_depth")
    if bits and "bit_depth" in {p.name for p in spec.params} and values.get("bit_depth") is None:
        return {"bit_depth": int(bits)}
    return {}


def _read_image_item(spec, path, values, data):
    arr, meta = read_image(path)
    return {spec.inputs[0].name: _numbers(arr, Path(path).name)}, _declared_bits(spec, values, meta), meta, None, {}


def _read_frames(spec, path, values, data):
    frames, meta = read_image(path)
    frames = _numbers(frames, Path(path).name)
    if frames.ndim not in (3, 4):
        raise ValueError(f"frames {Path(path).name} must be (K, h, w) or (K, h, w, C); got shape {frames.shape}")
    if data.get("shifts") is None:
        raise ValueError("misr needs per-frame shifts: a 'shifts' manifest column or --shifts FILE "
                         "((K, 2) dy, dx in high-resolution pixels)")
    shifts = parse_numbers(data["shifts"], "shifts")
    if shifts.ndim == 1 and shifts.size == 2:
        shifts = shifts.reshape(1, 2)  # one frame written on one line
    rotations = parse_numbers(data.get("rotations"), "rotations")
    if rotations is None:
        rotations = np.zeros(len(frames))  # translations only
    call = {"frames": frames, "shifts": shifts, "rotations": rotations.reshape(-1)}
    return call, _declared_bits(spec, values, meta), meta, 2, {}


def _read_sinogram(spec, path, values, data):
    sino, meta = read_image(path)
    sino = _numbers(sino, Path(path).name)
    if sino.ndim != 2:
        raise ValueError(f"a sinogram must be 2-D, got shape {sino.shape}; give one slice per file")
    layout = values.get("layout", spec.param("layout").default)
    check_sinogram_layout(sino, layout)
    angles = parse_angles(data.get("angles"))
    if angles is None:
        n_angles = sino.shape[1] if layout == "skimage" else sino.shape[0]
        angles = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    return {"sinogram": sino.astype(np.float32), "angles": angles}, {}, meta, None, {}


def _read_projections(spec, path, values, data):
    """A 3-D projection file for ``ct3d``: angles and (geometry formats) detector pitch / slice spacing, as the CLI."""
    arr, meta = read_image(path)
    arr = _numbers(arr, Path(path).name)
    if arr.ndim != 3:
        raise ValueError(f"projections must be 3-D ((Z, angles, detectors) or (views, rows, cols)), got shape "
                         f"{arr.shape}")
    geometry = values.get("geometry", spec.param("geometry").default)
    angles = parse_angles(data.get("angles"))
    if angles is None:
        n_angles = arr.shape[0] if geometry == "cone" else arr.shape[1]
        angles = np.linspace(0.0, 180.0 if geometry == "parallel" else 360.0, n_angles, endpoint=False)
    derived: dict[str, Any] = {}
    if meta.format in ("nifti", "mha", "nrrd") and meta.ndim == 3:
        if values.get("det_spacing") is None:
            derived["det_spacing"] = float(meta.spacing_zyx[2])
        if geometry != "cone" and values.get("slice_spacing") is None:
            derived["slice_spacing"] = float(meta.spacing_zyx[0])
    return {"projections": arr.astype(np.float32), "angles": angles}, derived, meta, None, {}


def _read_occupancy(spec, path, values, data):
    options: dict[str, Any] = {}
    if path.lower().endswith(MESH_SUFFIXES):
        from ...occupancy import voxelize
        from ..meshes import read_mesh

        options = {p.name: values.get(p.name, p.default) for p in BATCH_OPTIONS[spec.name]}
        mesh = read_mesh(path)
        shape = mesh_volume_shape(mesh, options["resolution"], options["padding"])
        check_memory(run_estimate(spec, shape, values))  # before voxelising
        volume, grid = voxelize(mesh, options["resolution"], padding=options["padding"], return_grid=True)
        spacing = tuple(float(s) for s in grid.spacing)
        # the voxel grid's place in the mesh's space, so the volume overlays the mesh in a viewer
        meta = ImageMeta(tuple(reversed(spacing)), tuple(reversed(tuple(grid.origin))), tuple(np.eye(3).ravel()))
    else:
        arr, meta = read_image(path)
        volume = _binary_volume(_numbers(arr, Path(path).name), f"volume {Path(path).name}")
        spacing = meta.spacing_zyx if meta.ndim == 3 else None
    return {"volume": volume}, {"spacing": spacing}, meta, None, options


def _read_nothing(spec, path, values, data):
    return {}, {}, None, None, {}


_READERS = {
    "super_resolve_multi": _read_frames,
    "ct_reconstruct": _read_sinogram,
    "ct_reconstruct_3d": _read_projections,
    "fit_occupancy": _read_occupancy,
    "solve_convection": _read_nothing,
}


def _to_input_dtype(out: np.ndarray, meta: ImageMeta | None) -> np.ndarray:
    """Pictures go back to their integer dtype (the task returns the input's value range as float)."""
    if meta is None:
        return out
    dtype = np.dtype(str(meta.extra.get("dtype", "float32")))
    if meta.format not in _PICTURE_FORMATS or dtype.kind not in "iu":
        return out
    info = np.iinfo(dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(dtype)


def _compute(spec, item: Mapping[str, Any], values: Mapping[str, Any]):
    """Read the item, run the task; ``(result, output array, output meta, options used)``."""
    from ...tasks import TASKS

    fit, task, app, data = split_values(spec, values)
    if not item.get("allow_external_data"):  # a header naming a data file elsewhere reads nothing here
        for path in (item.get("path"), item.get("reference")):
            if path:
                check_data_inside(path)
    reader = _READERS.get(spec.name, _read_image_item)
    device = _pick_device(str(fit.get("device", "auto")))
    call, derived, meta, ndim, options = reader(spec, item["path"], {**values, "device": device}, data)
    kwargs = {**fit, **task, **derived, "device": device}
    main = next(iter(call.values()), None)
    check_memory(run_estimate(spec, None if main is None else np.shape(main), kwargs))
    if item.get("reference"):  # scored by the task, by the project's metric conventions
        ref = _numbers(read_image(item["reference"])[0], Path(item["reference"]).name)  # its dtype: the data range
        kwargs["reference"] = _binary_volume(ref, "reference") if spec.name == "fit_occupancy" else ref
    result = TASKS[spec.name](**call, **kwargs)
    ran = (result.extras or {}).get("parameters") or {**task}
    out_meta = output_meta(spec, meta, ran, ndim=ndim, extras=result.extras)
    out = np.asarray(result.output)
    if spec.output_grid in ("detector", "own") or spec.name == "fit_occupancy":
        out = out.astype(np.float32, copy=False)
    else:
        out = _to_input_dtype(out, meta)
    return result, out, out_meta, options


# ------------------------------------------------------------------------------------------------ records


def _inputs(spec, item: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """What the item read, by role."""
    out: dict[str, Any] = {}
    if spec.inputs and item.get("path"):
        out[spec.inputs[0].name] = item["path"]
    for inp in spec.inputs[1:]:
        if inp.per_item:
            out[inp.name] = values.get(inp.name)
    out["reference"] = item.get("reference")
    return out


def _batch_fields(spec, item: Mapping[str, Any], phash: str, allocator: str) -> dict[str, Any]:
    return {
        "record_version": RECORD_VERSION,
        "command": spec.command,
        "name": item["name"],
        "param_hash": phash,
        "worker": _worker_name(),
        "allocator": allocator,
        "input": {"path": item.get("path") or None, **(file_stamp(item.get("path")) or {})},
        "overrides": dict(item.get("params") or {}),
    }


def write_failed_record(task: str, item: Mapping[str, Any], params: Mapping[str, Any], phash: str, reason: str,
                        *, allocator: str = "", seconds: float = 0.0, values: Mapping[str, Any] | None = None) -> None:
    """The record of an item that did not run to the end (best effort: a failure to write is ignored)."""
    spec = batch_spec(task)
    record = {
        "task": spec.name,
        **_batch_fields(spec, item, phash, allocator),
        "status": "failed",
        "reason": reason,
        "inputs": _inputs(spec, item, values or params),
        "output": None,
        "parameters": json_safe(dict(values if values is not None else params)),
        "metrics": {},
        "versions": versions(),
        "wall_seconds": seconds,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        write_json(item["record"], record)
    except (OSError, ValueError, TypeError):
        pass


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
        task: a batch task (command or task name).
        item: a :class:`~reconstruct.app.batch.items.BatchItem` as a dict plus ``output`` and ``record`` paths.
        params: the run's validated parameters (:func:`~reconstruct.app.batch.params.check_run_params`).
        phash: the item's :func:`~reconstruct.app.batch.params.param_hash`; an existing "ok" record with it
            means "skipped".
        torch_threads: intra-op threads for torch on this worker (None leaves it).

    Returns:
        An :class:`~reconstruct.app.batch.runner.ItemResult` as a dict.
    """
    from ..records import run_record

    start = time.perf_counter()
    base = {"name": item["name"], "input": item.get("path") or "", "output": item["output"],
            "record": item["record"], "param_hash": phash}
    earlier = done_before(item["output"], item["record"], phash)
    if earlier is not None:  # a retried item whose output already landed: never write twice
        return {**base, "status": "skipped", "seconds": float(earlier.get("wall_seconds", 0.0)),
                "metrics": dict(earlier.get("metrics") or {})}
    spec = batch_spec(task)
    allocator = _prepare_worker(torch_threads)
    values: dict[str, Any] | None = None
    try:
        values = item_values(spec, params, item)
        result, out, out_meta, options = _compute(spec, item, values)
        write_image(item["output"], out, out_meta, overwrite=True)
        record = run_record(result, task=spec.name, inputs=_inputs(spec, item, values), output=item["output"],
                            **_batch_fields(spec, item, phash, allocator), status="ok", reason=None,
                            options=options, output_shape=list(out.shape),
                            output_meta=out_meta.to_dict() if out_meta is not None else None)
        metrics = dict(record["metrics"])
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one bad item must not stop the run: record it and go on
        reason = reason_of(exc)
        seconds = time.perf_counter() - start
        write_failed_record(task, item, params, phash, reason, allocator=allocator, seconds=seconds, values=values)
        return {**base, "status": "failed", "reason": reason, "seconds": seconds, "metrics": {}, "output": None}
    seconds = time.perf_counter() - start
    record["wall_seconds"] = seconds
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        write_json(item["record"], record)
    except (OSError, ValueError, TypeError) as exc:
        return {**base, "status": "failed", "reason": f"cannot write the record: {reason_of(exc)}",
                "seconds": seconds, "metrics": {}, "output": None}
    return {**base, "status": "ok", "reason": None, "seconds": seconds, "metrics": metrics}
