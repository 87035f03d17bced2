"""Execution of benchmark jobs: one (task, model, seed) run of every case, written as a JSON record.

A *job* is a plain dict (built by :mod:`benchmarks.plans`); :func:`execute_job` runs it in this
process or in a worker process and writes ``record_path(...)``.  Existing usable records are
skipped by :func:`_run_jobs` unless ``--force``.  The classical references of a task are computed
once per protocol into ``references.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.cases import build_cases, case_hash, dev_case, task_config, task_steps
from benchmarks.common import ROOT, TASK_FUNCTIONS, TASK_METRICS, is_smoke, read_json, write_json
from benchmarks.references import classical_references

__all__ = ["execute_job", "record_path"]

HISTORY_POINTS = 150
_CASE_CACHE: dict[tuple, list] = {}
_RUNTIME: dict[str, Any] = {}


# -------------------------------------------------------------------------------------------- records
def _slug(text: str) -> str:
    return (
        "".join(ch if ch.isalnum() or ch in "-_." else "" for ch in text.replace("=", "")).strip(".") or "x"
    )


def record_path(results: Path, protocol: str, kind: str, label: str, seed: int) -> Path:
    """``results/<protocol>/<kind>/<label>_seed<k>.json`` (kind: task, ``lr_sweep``, ``ablation/<name>``)."""
    return Path(results) / protocol / kind / f"{_slug(label)}_seed{seed}.json"


def _git_commit() -> str | None:
    """HEAD of the checkout the benchmark ran from (records say which code measured them)."""
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = ROOT / ".git" / head[5:]
            if ref.exists():
                return ref.read_text().strip()[:12]
            packed = (ROOT / ".git" / "packed-refs").read_text().splitlines()
            return next((line.split()[0][:12] for line in packed if line.endswith(head[5:])), None)
        return head[:12]
    except OSError:
        return None


def _configure_torch(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    # Denormals: Gauss's exp(-(s z)²) and WIRE's Gaussian window underflow into subnormal floats, which
    # the CPU handles ~10x slower (measured here: Gauss 777 -> 71 ms/step).  Flushing them to zero
    # changes no result beyond 1e-38 and keeps the timings about the networks, not the FPU.
    torch.set_flush_denormal(True)
    from reconstruct.app.runtime import allocator_in_use, tune_allocator

    tune_allocator()
    _RUNTIME.update(
        threads=torch.get_num_threads(),
        allocator=allocator_in_use(),
        torch=torch.__version__,
        flush_denormal=True,
        git_commit=_git_commit(),
    )


def _cases(protocol: str, task: str, data_dir: str, max_cases: int | None) -> list:
    key = (protocol, task, data_dir, max_cases)
    if key not in _CASE_CACHE:
        if task == "dev":
            _CASE_CACHE[key] = [dev_case(protocol, Path(data_dir))]
        else:
            _CASE_CACHE[key] = build_cases(protocol, task, Path(data_dir), max_cases)
    return _CASE_CACHE[key]


def _subsample(history: list[dict], points: int = HISTORY_POINTS) -> list[dict]:
    """Every k-th history entry plus every full evaluation (entries with SSIM/IoU/rel. L2) and the last."""
    if len(history) <= points:
        keep = history
    else:
        stride = math.ceil(len(history) / points)
        keep = [
            h
            for i, h in enumerate(history)
            if i % stride == 0 or i == len(history) - 1 or any(k in h for k in ("ssim", "iou", "rel_l2"))
        ]
    return [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in h.items()} for h in keep]


CALIBRATION_STEPS = 6


def _calibrated_steps(fn: Any, case: Any, kwargs: dict[str, Any], budget_s: float, planned: int | None) -> dict:
    """Steps that fill ``budget_s`` for this job's network: time a short fit of it on the case.

    A fit of :data:`CALIBRATION_STEPS` steps without the reference (no evaluations); the first step
    (allocation, compilation) is left out of the per-step time.  The count is capped at 4x the
    protocol's steps and at least 10.
    """
    probe = {**kwargs, "steps": CALIBRATION_STEPS}
    probe.pop("reference", None)
    result = fn(*case.args, **probe)
    times = [h["seconds"] for h in result.history]
    per_step = (times[-1] - times[0]) / max(len(times) - 1, 1)
    cap = 4 * planned if planned else None
    steps = max(10, int(budget_s / max(per_step, 1e-9)))
    return {"s_per_step": per_step, "steps": min(steps, cap) if cap else steps, "budget_s": budget_s,
            "probe_steps": CALIBRATION_STEPS}


def _run_case(job: dict, case) -> dict:
    import numpy as np
    import torch

    from reconstruct import tasks
    from reconstruct.app.records import run_record

    task = job["task"]
    fn = getattr(tasks, TASK_FUNCTIONS[task])
    steps = job.get("steps") or task_steps(job["protocol"], task, case)
    kwargs: dict[str, Any] = dict(case.kwargs)
    kwargs.update(
        model=job["model"],
        model_kwargs=dict(job["model_kwargs"]),
        lr=job["lr"],
        seed=job["seed"],
        device=job["device"],
    )
    calibration = None
    if job.get("calibrate_budget_s"):
        calibration = _calibrated_steps(fn, case, kwargs, float(job["calibrate_budget_s"]), steps)
        steps = calibration["steps"]
    if steps is not None:
        kwargs["steps"] = int(steps)
    if job.get("time_budget_s"):
        kwargs["time_budget_s"] = float(job["time_budget_s"])
    if case.reference is not None:
        kwargs["reference"] = case.reference
    if task == "occupancy":
        kwargs["batch_size"] = int(task_config(job["protocol"], task)["batch_size"])
    out: dict[str, Any] = {
        "case": case.name,
        "group": case.group,
        "description": case.description,
        "data_hash": case_hash(case),
        "steps_requested": steps,
        "lr": job["lr"],
    }
    if calibration is not None:
        out["calibration"] = calibration
    torch.manual_seed(job["seed"])
    t0 = time.perf_counter()
    try:
        result = fn(*case.args, **kwargs)
    except FloatingPointError as exc:  # divergence is a result (stability), not a crash
        out.update(
            status="diverged",
            error=str(exc),
            seconds=time.perf_counter() - t0,
            final={},
            best={},
            best_step=None,
            history=[],
            params=None,
        )
        return out
    rec = run_record(result, task=TASK_FUNCTIONS[task], history=False, with_versions=False)
    best = rec["best"] or {}  # the oracle best iterate (chosen with the ground truth), reported apart
    out.update(
        status="ok",
        params=int(result.model.num_real_parameters())
        if hasattr(result.model, "num_real_parameters")
        else int(sum(p.numel() for p in result.model.parameters())),
        steps=rec["steps_run"],
        seconds=rec["seconds"],
        s_per_step=rec["seconds"] / max(rec["steps_run"], 1),
        stopped_by=rec["stopped_by"],
        device=rec["device"],
        final=rec["metrics"],
        best=best.get("metrics", {}),
        best_step=best.get("step"),
        effective_model_kwargs=rec["parameters"].get("model_kwargs"),
        extras_metrics={f"{name}_metrics": metrics for name, metrics in rec["baselines"].items()},
        history=_subsample(result.history),
    )
    if not out["final"] and task == "pinn" and "exact" in result.extras:
        from reconstruct.metrics import rel_l2

        out["final"] = {"rel_l2": rel_l2(np.asarray(result.output), np.asarray(result.extras["exact"]))}
    return out


def execute_job(job: dict) -> dict:
    """Run every case of one (task, model, seed) job and write its record; returns the record."""
    if not _RUNTIME:
        _configure_torch(job.get("threads"))
    case_task = "dev" if job["kind"] == "lr_sweep" else job["task"]
    cases = _cases(job["protocol"], case_task, job["data_dir"], job.get("max_cases"))
    results = [_run_case(job, case) for case in cases]
    statuses = {r["status"] for r in results}
    record = {
        "task": job["task"],
        "kind": job["kind"],
        "label": job["label"],
        "model": job["model"],
        "model_kwargs": job["model_kwargs"],
        "protocol": job["protocol"],
        "seed": job["seed"],
        "params": next((r["params"] for r in results if r.get("params")), None),
        "steps": results[0].get("steps_requested") if results else None,
        "lr": job["lr"],
        "lr_multiplier": job.get("lr_multiplier", 1.0),
        "lr_source": job.get("lr_source", "default"),
        "time_budget_s": job.get("time_budget_s"),
        "steps_override": job.get("steps_override"),
        "seconds": float(sum(r.get("seconds", 0.0) for r in results)),
        "status": "ok" if statuses == {"ok"} else "diverged",
        "variant": job.get("variant"),
        "ablation": job.get("ablation"),
        "cases": results,
        "metrics": list(TASK_METRICS[job["task"]]),
        "environment": {
            **_RUNTIME,
            "device": job["device"],
            "jobs": job.get("jobs", 1),
            "host": platform.node(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": job["command"],
    }
    write_json(Path(job["path"]), record)
    return record


def _summary_line(record: dict) -> str:
    metric = record["metrics"][0]
    parts = []
    for case in record["cases"]:
        if case["status"] != "ok":
            parts.append(f"{case['case']}: {case['status']}")
            continue
        f, b = case["final"].get(metric), case["best"].get(metric)
        fmt = (lambda v: f"{v:.4g}") if metric in ("rel_l2", "iou") else (lambda v: f"{v:.2f}")
        text = f"{case['case']}: {metric} {fmt(f) if f is not None else '-'}"
        if b is not None:
            text += f" (best {fmt(b)} @ {case['best_step']})"
        parts.append(text + f" {case['seconds']:.1f}s")
    return "; ".join(parts)


def _data_hashes(args: argparse.Namespace, job: dict) -> dict[str, str]:
    task = "dev" if job["kind"] == "lr_sweep" else job["task"]
    cases = _cases(job["protocol"], task, job["data_dir"], job.get("max_cases"))
    return {c.name: case_hash(c) for c in cases}


def _usable_record(path: Path, data_hashes: dict[str, str] | None = None) -> bool:
    """An existing, complete, non-smoke record measured on the current data."""
    if not path.exists():
        return False
    try:
        record = read_json(path)
    except (OSError, ValueError):  # a truncated file from a killed run: recompute it
        return False
    if is_smoke(record):
        return False
    if data_hashes:
        for case in record.get("cases", []):
            # records written before fingerprints existed carry none: they are kept
            if "data_hash" in case and data_hashes.get(case["case"]) not in (None, case["data_hash"]):
                return False
        if {c["case"] for c in record.get("cases", [])} < set(data_hashes):
            return False  # fewer cases than now asked for (e.g. a larger --max-images)
    return True


def _run_jobs(jobs: list[dict], args) -> list[str]:
    """Execute ``jobs`` (skipping existing records unless --force); returns error messages."""
    seen, unique = set(), []
    for j in jobs:  # a default-config ablation variant and the main table share one record
        if j["path"] not in seen:
            seen.add(j["path"])
            unique.append(j)
    jobs = unique
    todo = [j for j in jobs if args.force or not _usable_record(Path(j["path"]), _data_hashes(args, j))]
    if len(jobs) - len(todo):
        print(f"{len(jobs) - len(todo)} record(s) exist already (use --force to recompute)", flush=True)
    errors: list[str] = []
    if not todo:
        return errors
    t_start = time.perf_counter()

    def done(i: int, job: dict, record: dict | None, err: str | None) -> None:
        elapsed = time.perf_counter() - t_start
        head = f"[{i}/{len(todo)} {elapsed / 60:5.1f} min] {job['kind']:<22} {job['label']:<24}"
        head += f" seed {job['seed']}"
        if err:
            errors.append(f"{head}: {err}")
            print(f"{head}: ERROR {err}", flush=True)
        else:
            print(f"{head}: {_summary_line(record)}", flush=True)

    if args.jobs == 1:
        for i, job in enumerate(todo, 1):
            try:
                rec = execute_job(job)
                done(i, job, rec, None)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one broken run must not lose the others
                traceback.print_exc()
                done(i, job, None, f"{type(exc).__name__}: {exc}")
        return errors

    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = args.threads or 1
    with ProcessPoolExecutor(
        max_workers=args.jobs,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(execute_job, {**job, "threads": threads}): job for job in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            job = futures[fut]
            try:
                done(i, job, fut.result(), None)
            except Exception as exc:
                done(i, job, None, f"{type(exc).__name__}: {exc}")
    return errors


def _worker_init(threads: int) -> None:
    _configure_torch(threads)


def _reference_records(args, results: Path) -> None:
    """Classical references per case, computed once per protocol and task (``references.json``)."""
    for task in args.tasks:
        path = Path(results) / args.protocol / task / "references.json"
        cases = _cases(args.protocol, task, str(args.data_dir), args.max_images)
        existing = read_json(path) if path.exists() and not args.force else {"cases": {}}
        missing = [
            c
            for c in cases
            if existing["cases"].get(c.name, {}).get("data_hash", "absent") != case_hash(c)
        ]
        if not missing:
            continue
        for case in missing:
            refs = classical_references(task, case)
            existing["cases"][case.name] = {
                "group": case.group,
                "description": case.description,
                "data_hash": case_hash(case),
                "methods": refs,
            }
            if refs:
                text = ", ".join(
                    f"{k} {v['metrics'].get(TASK_METRICS[task][0], float('nan')):.2f}"
                    for k, v in refs.items()
                )
                print(f"references {task} {case.name}: {text}", flush=True)
        existing.update(
            task=task, protocol=args.protocol, command=args.command, date=time.strftime("%Y-%m-%d %H:%M:%S")
        )
        write_json(path, existing)


