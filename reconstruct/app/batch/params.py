"""The parameters of a batch run, read from the task specs: names, validation, per-item values, the hash.

A batch task's options are, in this order (:func:`batch_params`):

1. the common fit settings exposed at the ``batch`` door (:data:`reconstruct.tasks.spec.FIT_PARAMS`);
2. the task's own parameters exposed there (``spec.params_for("batch")``);
3. application options of the batch runner itself (:data:`BATCH_OPTIONS`, e.g. the voxel resolution
   a mesh is read at), described by the same :class:`~reconstruct.tasks.spec.Param`.

plus the task's per-item data inputs (``DataInput.per_item``: CT ``angles``, MISR ``shifts`` and
``rotations``), whose run value is the default for items without their own manifest column.

Everything is validated by the spec (:meth:`TaskSpec.check_params`, :meth:`FitSettings.create`,
:meth:`Param.check`); a manifest's text values are parsed by :meth:`Param.parse`. Adding a parameter to a
task's spec adds it here, to ``nestnet batch <task>`` and to the manifest columns.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...tasks import SPECS, get_spec
from ...tasks.spec import FIT_PARAMS, DataInput, FitSettings, Param, TaskSpec, check_device_name
from ..angles import is_angle_range, parse_angles, parse_numbers
from ..meshes import MESH_OPTIONS

__all__ = [
    "BATCH_TASKS",
    "BATCH_OPTIONS",
    "RECORD_VERSION",
    "batch_spec",
    "batch_params",
    "data_options",
    "parse_value",
    "check_run_params",
    "item_values",
    "split_values",
    "param_hash",
    "file_stamp",
    "column_names",
]

#: ``nestnet batch`` task (the spec's command) -> task name in :data:`reconstruct.tasks.SPECS`.
BATCH_TASKS: dict[str, str] = {spec.command: spec.name for spec in SPECS.values()}

#: Bumped when the meaning of a record changes, so old records are recomputed rather than trusted.
RECORD_VERSION = 3  # 3: integer data normalised and scored by its bit depth (12-bit data: 4,095)

_BATCH = frozenset({"batch"})

#: Options of the batch runner itself (not of the task function), by task name.
BATCH_OPTIONS: dict[str, tuple[Param, ...]] = {
    "fit_occupancy": MESH_OPTIONS,
}

# where the computation runs does not change what it computes: a run resumed on a GPU skips CPU results
_NOT_HASHED = ("device",)
_FIT_BATCH = tuple(p for p in FIT_PARAMS if "batch" in p.doors)


def batch_spec(task: Any) -> TaskSpec:
    """The spec of a batch task given by command (``"ct"``) or task name (``"ct_reconstruct"``)."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a string, got {type(task).__name__}")
    try:
        return get_spec(task)
    except ValueError:
        raise ValueError(f"unknown batch task {task!r}; choose one of {', '.join(BATCH_TASKS)}") from None


def batch_params(spec: TaskSpec) -> tuple[Param, ...]:
    """Every parameter ``nestnet batch <task>`` takes, fit settings first."""
    return (*_FIT_BATCH, *spec.params_for("batch"), *BATCH_OPTIONS.get(spec.name, ()))


def data_options(spec: TaskSpec) -> tuple[DataInput, ...]:
    """The task's per-item data inputs (a run default, or a manifest column per item)."""
    return tuple(i for i in spec.inputs if i.per_item)


def column_names(spec: TaskSpec | None) -> dict[str, tuple[str, str]]:
    """Manifest column (lower case) -> ``(kind, canonical name)``; kind is path/name/reference/input/param.

    A parameter's column is its name or its flag without dashes (``filter`` for ``filter_name``,
    ``time_budget`` for ``time_budget_s``); ``spec=None`` accepts the columns of every task.
    """
    out = {"path": ("path", "path"), "name": ("name", "name"), "reference": ("reference", "reference")}
    for s in ([spec] if spec is not None else list(SPECS.values())):
        for inp in data_options(s):
            out[inp.name.lower()] = ("input", inp.name)
        for p in batch_params(s):
            out[p.name.lower()] = ("param", p.name)
            out[p.cli_flag.lstrip("-").replace("-", "_").lower()] = ("param", p.name)
    return out


def parse_value(param: Param, value: Any) -> Any:
    """``value`` checked by ``param``; text (command line, manifest) is parsed first (JSON for dicts)."""
    if param.type is dict:  # model_kwargs: a JSON object; FitSettings.create checks its names
        if isinstance(value, str):
            text = value.strip()
            if param.optional and text.lower() in ("", "none", "null"):
                return None
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        if value is None and param.optional:
            return None
        if not isinstance(value, Mapping):
            raise TypeError(f"{param.name} must be a JSON object, e.g. '{{\"hidden_channels\": [128, 128]}}'; "
                            f"got {value!r}")
        return json.loads(json.dumps(dict(value)))  # JSON values only: it goes into records and hashes
    if isinstance(value, str):
        return param.parse(value)
    return param.check(value)


def _data_value(inp: DataInput, value: Any, base_dir: Path | None = None) -> Any:
    """A per-item data input's spec, validated, with file names made absolute (workers may run elsewhere)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value).strip()
        if not text or text.lower() == "none":
            return None
        if not (inp.name == "angles" and is_angle_range(text)):
            path = Path(text).expanduser()
            text = str((base_dir / path if base_dir is not None and not path.is_absolute() else path).resolve())
        value = text
    if inp.name == "angles":
        arr = parse_angles(value)
    else:
        arr = parse_numbers(value, inp.name)
    return value if isinstance(value, str) else np.asarray(arr).tolist()


def split_values(spec: TaskSpec, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any],
                                                                       dict[str, Any], dict[str, Any]]:
    """``values`` as ``(fit settings, task parameters, application options, data inputs)`` dicts."""
    fit_names = {p.name for p in _FIT_BATCH}
    task_names = {p.name for p in spec.params_for("batch")}
    app_names = {p.name for p in BATCH_OPTIONS.get(spec.name, ())}
    data_names = {i.name for i in data_options(spec)}
    parts: tuple[dict[str, Any], ...] = ({}, {}, {}, {})
    for key, value in values.items():
        index = 0 if key in fit_names else 1 if key in task_names else 2 if key in app_names else 3
        if index == 3 and key not in data_names:
            raise TypeError(f"{key!r} is not a parameter of batch task {spec.command!r}")
        parts[index][key] = value
    return parts  # type: ignore[return-value]


def _validated(spec: TaskSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (parsed values by canonical name) validated by the spec; returns them converted."""
    fit, task, app, data = split_values(spec, given)
    device = str(fit.get("device", "auto")).strip().lower()
    check_device_name(device)  # the format only: the workers (maybe on another machine) own the devices
    settings = FitSettings.create(spec, **{**fit, "device": "cpu"})
    # None stays None (the task's default for each item, e.g. the learning rate of an item's own model)
    out: dict[str, Any] = {k: None if v is None else getattr(settings, k) for k, v in fit.items() if k != "device"}
    if "device" in fit:
        out["device"] = device
    checked = spec.check_params(task)
    out.update({k: checked[k] for k in task})
    for p in BATCH_OPTIONS.get(spec.name, ()):
        if p.name in app:
            out[p.name] = p.check(app[p.name])
    by_name = {i.name: i for i in data_options(spec)}
    out.update({k: _data_value(by_name[k], v) for k, v in data.items()})
    return out


def check_run_params(spec: TaskSpec, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's parameters validated once (one error for the run, not one per item).

    ``None`` for a parameter that does not accept None means its default (the entry is dropped); for
    one that does (``data_filter``, ``time_budget_s``) it is passed on. Text values are parsed.

    Raises:
        TypeError: a name the task does not take (the message lists those it takes).
        ValueError: a value out of range, an unknown model or device, a bad angles spec or file.
    """
    params = dict(params or {})
    by_name = {p.name: p for p in batch_params(spec)}
    data_names = {i.name for i in data_options(spec)}
    unknown = sorted(set(params) - set(by_name) - data_names)
    if unknown:
        allowed = [*by_name, *sorted(data_names)]
        raise TypeError(f"unknown parameters for batch task {spec.command!r}: {', '.join(unknown)}; "
                        f"it takes {', '.join(allowed)}")
    given: dict[str, Any] = {}
    for key, value in params.items():
        if key in data_names:
            if value is not None:
                given[key] = value
            continue
        p = by_name[key]
        if value is None and not p.optional:
            continue
        given[key] = parse_value(p, value)
    return _validated(spec, given)


def item_values(spec: TaskSpec, run: Mapping[str, Any], item: Any) -> dict[str, Any]:
    """The values one item runs with: the run's, then the item's own (manifest columns), validated.

    Args:
        spec: the task's spec.
        run: :func:`check_run_params` output.
        item: a :class:`~reconstruct.app.batch.items.BatchItem` or its dict (``inputs``, ``params``).

    Raises:
        ValueError / TypeError: an item value the spec refuses (the message names the parameter).
    """
    inputs = item["inputs"] if isinstance(item, Mapping) else item.inputs
    overrides = item["params"] if isinstance(item, Mapping) else item.params
    by_name = {p.name: p for p in batch_params(spec)}
    values = dict(run)
    for key, value in (overrides or {}).items():
        if key not in by_name:
            raise TypeError(f"{key!r} is not a parameter of batch task {spec.command!r}")
        values[key] = parse_value(by_name[key], value)
    for key, value in (inputs or {}).items():
        if value is not None:
            values[key] = value
    return _validated(spec, values)


def _effective(spec: TaskSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value an item runs with, defaults filled (what the hash compares)."""
    fit, task, app, data = split_values(spec, values)
    settings = FitSettings.create(spec, **{**fit, "device": "cpu"})
    out = {k: v for k, v in settings.parameters().items() if k not in _NOT_HASHED}
    out.update(spec.check_params(task))
    out.update({p.name: app.get(p.name, p.default) for p in BATCH_OPTIONS.get(spec.name, ())})
    out.update(data)
    return out


def file_stamp(path: Any) -> dict[str, Any] | None:
    """``{"size", "mtime_ns"}`` of a file, or None (no such file, or not a path)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def param_hash(task: str, params: Mapping[str, Any], item: Any) -> str:
    """Hash deciding whether an earlier result can be kept.

    It covers the task, every value the item runs with (the run's parameters, the item's own, the
    defaults filled in; not ``device``), its data inputs (angles, shifts, ...) and the size and
    modification time of its input file and of every file it names (data inputs, reference).
    """
    spec = batch_spec(task)
    inputs = item["inputs"] if isinstance(item, Mapping) else item.inputs
    path = item["path"] if isinstance(item, Mapping) else item.path
    reference = item["reference"] if isinstance(item, Mapping) else item.reference
    try:
        values: Any = _effective(spec, item_values(spec, params, item))
    except (TypeError, ValueError):  # the item will fail with this error: hash what was given
        overrides = item["params"] if isinstance(item, Mapping) else item.params
        values = {"run": dict(params), "item": dict(overrides or {})}
    data = {k: v for k, v in values.items() if k in {i.name for i in data_options(spec)}} \
        if isinstance(values, dict) else {}
    payload = {
        "record_version": RECORD_VERSION,
        "task": spec.name,
        "values": values,
        "files": {k: file_stamp(v) for k, v in {**data, **dict(inputs or {})}.items() if isinstance(v, str)},
        "reference": file_stamp(reference),
        "input": file_stamp(path),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
