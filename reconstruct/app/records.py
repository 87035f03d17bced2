"""The run record: one builder for what the CLI, ``nestnet batch``, the napari layers and the benchmarks keep.

A record says what ran (task, the exact parameters the task reports in ``result.extras["parameters"]``),
what it gave (final metrics, the best iterate by the reference — oracle early stopping, kept apart and
marked so — and the classical baselines the task computed: FBP, bicubic), how (steps run, why it
stopped, the ground-truth-free stop rule's choice, device, seconds, normalisation) and with which
versions. Everything is JSON-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..stopping import stop_summary
from .files import json_safe, versions

__all__ = ["run_record", "BASELINE_KEYS"]

#: ``result.extras`` keys holding a classical baseline's metrics, by the baseline's name.
BASELINE_KEYS: dict[str, str] = {"fbp": "fbp_metrics", "bicubic": "bicubic_metrics"}

_NOT_RECORDED = ("parameters", "normalisation", "stop", *BASELINE_KEYS.values())


def _floats(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (values or {}).items()}


def run_record(
    result: Any,
    *,
    task: str,
    inputs: Mapping[str, Any] | None = None,
    output: Any = None,
    history: bool = True,
    with_versions: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON-safe record of one fit.

    Args:
        result: the task's :class:`~reconstruct.fit.FitResult`.
        task: the task name (a :data:`reconstruct.tasks.SPECS` key).
        inputs: what was read (paths, layer names, generated data), by role.
        output: where the result went (a path or a layer name).
        history: include the per-step history (loss and metrics).
        with_versions: include the package versions.
        extra: further fields of the front door (command line, batch status, figure path ...).

    Returns:
        ``{"task", "inputs", "output", "parameters", "normalisation", "metrics", "best" (oracle),
        "baselines", "steps_run", "stopped_by", "stop", "device", "seconds", [extras], [history], [versions]}``.
        ``stop`` is the ground-truth-free choice (``result.extras["stop"]``, see
        :meth:`reconstruct.tasks.common.StopPlan.report`: ``rule`` held_out / discrepancy / none, the chosen
        ``step``, the held-out ``curve`` or the ``residual_rms`` at the stop and ``sigma`` with its
        ``sigma_source``), None for a task without a stop rule.
    """
    best = None
    if result.best is not None:
        best = {"step": int(result.best.step), "metrics": _floats(result.best.metrics),
                "oracle": True}  # chosen with the reference: not something a user without ground truth gets
    extras = result.extras or {}
    baselines = {name: _floats(extras[key]) for name, key in BASELINE_KEYS.items() if extras.get(key)}
    stop = extras.get("stop")
    if stop is None and (getattr(result, "held_out", None) or getattr(result, "discrepancy", None)):
        stop = stop_summary(result)  # a fit() called directly, not through a task
    scalars = {k: v for k, v in extras.items()
               if k not in _NOT_RECORDED and not isinstance(v, np.ndarray) and np.ndim(v) == 0}
    record: dict[str, Any] = {
        "task": task,
        "inputs": dict(inputs or {}),
        "output": None if output is None else str(output),
        "parameters": extras.get("parameters", {}),
        "normalisation": extras.get("normalisation"),
        "metrics": _floats(result.metrics),
        "best": best,
        "baselines": baselines,
        "steps_run": int(result.steps),
        "stopped_by": str(result.stopped_by),
        "stop": stop,
        "device": str(result.device),
        "seconds": float(result.seconds),
        "extras": scalars,
        **extra,
    }
    if extras.get("tv_search") is not None:  # the TV weights compared on held-out data, and the one chosen
        record["tv_search"] = extras["tv_search"]
    if history:
        record["history"] = result.history
    if with_versions:
        record["versions"] = versions()
    return json_safe(record)
