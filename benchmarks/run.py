#!/usr/bin/env python
"""Benchmark runner: NestNet against the INR baselines and classical methods on the paper's tasks.

Writes one JSON record per (task, model, seed) under ``benchmarks/results/<protocol>/<task>/`` and
regenerates ``benchmarks/RESULTS.md`` with tables and plots (``benchmarks/plots/``).  Existing records
are kept (a long run resumes where it stopped) unless ``--force``.

The quick protocol, all tasks, the learning-rate sweep and every ablation (the committed results)::

    .venv/bin/python benchmarks/run.py --protocol quick --task all --seeds 3 --sweep-lr \\
        --ablation all --jobs 2

A slice of the paper protocol on a GPU::

    python benchmarks/run.py --protocol paper --task image --models nestnet,siren --seeds 1 --max-images 2 \\
        --device cuda --data-dir /path/to/shared/data

Only rebuild RESULTS.md and the plots from the records::

    .venv/bin/python benchmarks/run.py --report
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common, report  # noqa: E402  (namespace package next to this file)
from benchmarks.common import (  # noqa: E402
    MODEL_NAMES,
    PROTOCOLS,
    TASK_FUNCTIONS,
    TASK_METRICS,
    TASK_NAMES,
    read_json,
    write_json,
)

__all__ = ["main", "ABLATIONS", "parse_args", "record_path"]

ABLATIONS = ("height", "init", "subnets", "share", "equal_params", "equal_time", "frequencies", "prior")
# The tasks where reconstruct.tasks gives NestNet a smoother default than its image-fitting one; the
# "prior" ablation runs NestNet there at its image-fitting settings, as the baselines run.
PRIOR_TASKS = ("denoise", "sisr")
HISTORY_POINTS = 150
_CASE_CACHE: dict[tuple, list] = {}
_RUNTIME: dict[str, Any] = {}


# ------------------------------------------------------------------------------------------ arguments
def _csv(
    value: str, allowed: tuple[str, ...], what: str, all_value: tuple[str, ...] | None = None
) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    if all_value is not None and items == ["all"]:
        return list(all_value)
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(bad) or value!r}; choose from {', '.join(allowed)}"
        )
    return items


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of the runner (see the module docstring)."""
    from monai_nets import available_networks

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="all", help=f"comma list of {', '.join(TASK_NAMES)}, or all")
    p.add_argument("--models", default=",".join(MODEL_NAMES), help="comma list of network names, or all")
    p.add_argument("--protocol", default="quick", choices=list(PROTOCOLS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per model (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--ablation", default="",
        help=f"comma list of {', '.join(ABLATIONS)}, or all (NestNet; image task, prior: denoise and sisr)",
    )
    p.add_argument(
        "--sweep-lr",
        action="store_true",
        help="first sweep each model's learning rate on the development image (results/<protocol>/lr_sweep)",
    )
    p.add_argument(
        "--report", action="store_true", help="only regenerate RESULTS.md and the plots from the records"
    )
    p.add_argument("--force", action="store_true",
                   help="recompute records that already exist (the learning-rate sweep starts afresh)")
    p.add_argument("--max-images", type=int, default=None, help="use at most this many cases per task")
    p.add_argument(
        "--data-dir", default=str(common.DEFAULT_DATA_DIR), help="the shared benchmark data folder"
    )
    p.add_argument("--out", default=str(HERE), help="folder receiving results/, plots/ and RESULTS.md")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (worker processes; 1 thread each)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    p.add_argument("--steps", type=int, default=None, help="override every task's step budget (smoke runs)")
    p.add_argument("--no-report", action="store_true", help="do not regenerate RESULTS.md at the end")
    args = p.parse_args(argv)
    try:
        args.tasks = _csv(args.task, TASK_NAMES, "task", TASK_NAMES)
        args.model_list = _csv(args.models, tuple(available_networks()), "model", MODEL_NAMES)
        args.ablations = _csv(args.ablation, ABLATIONS, "ablation", ABLATIONS) if args.ablation else []
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    if args.max_images is not None and args.max_images < 1:
        p.error("--max-images must be at least 1")
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be at least 1")
    args.command = " ".join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)])
    return args


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
    from reconstruct.runtime import allocator_in_use, tune_allocator

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
            _CASE_CACHE[key] = [common.dev_case(protocol, Path(data_dir))]
        else:
            _CASE_CACHE[key] = common.build_cases(protocol, task, Path(data_dir), max_cases)
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


def _run_case(job: dict, case) -> dict:
    import numpy as np
    import torch

    from reconstruct import tasks

    task = job["task"]
    fn = getattr(tasks, TASK_FUNCTIONS[task])
    steps = job.get("steps") or common.task_steps(job["protocol"], task, case)
    kwargs: dict[str, Any] = dict(case.kwargs)
    kwargs.update(
        model=job["model"],
        model_kwargs=dict(job["model_kwargs"]),
        lr=job["lr"],
        seed=job["seed"],
        device=job["device"],
    )
    if steps is not None:
        kwargs["steps"] = int(steps)
    if job.get("time_budget_s"):
        kwargs["time_budget_s"] = float(job["time_budget_s"])
    if case.reference is not None:
        kwargs["reference"] = case.reference
    if task == "occupancy":
        kwargs["batch_size"] = int(common.task_config(job["protocol"], task)["batch_size"])
    out: dict[str, Any] = {
        "case": case.name,
        "group": case.group,
        "description": case.description,
        "data_hash": common.case_hash(case),
        "steps_requested": steps,
        "lr": job["lr"],
    }
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
    hist = result.history
    out.update(
        status="ok",
        params=int(result.model.num_real_parameters())
        if hasattr(result.model, "num_real_parameters")
        else int(sum(p.numel() for p in result.model.parameters())),
        steps=int(result.steps),
        seconds=float(result.seconds),
        s_per_step=float(result.seconds) / max(int(result.steps), 1),
        stopped_by=result.stopped_by,
        device=result.device,
        final={k: float(v) for k, v in result.metrics.items()},
        best={k: float(v) for k, v in (result.best.metrics if result.best else {}).items()},
        best_step=int(result.best.step) if result.best else None,
        effective_model_kwargs=(result.extras.get("parameters") or {}).get("model_kwargs"),
        extras_metrics={
            k: {m: float(v) for m, v in val.items()}
            for k, val in result.extras.items()
            if k.endswith("_metrics") and isinstance(val, dict)
        },
        history=_subsample(hist),
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


# ------------------------------------------------------------------------------------ learning rates
def sweep_multipliers(results: Path, protocol: str) -> dict[str, tuple[float, str]]:
    """Per model, the learning-rate multiplier that won the sweep (final PSNR on the development image)."""
    folder = Path(results) / protocol / "lr_sweep"
    best: dict[str, tuple[float, float]] = {}
    if not folder.is_dir():
        return {}
    for path in sorted(folder.glob("*.json")):
        rec = read_json(path)
        case = rec["cases"][0] if rec.get("cases") else None
        score = -math.inf
        if case and case["status"] == "ok" and case["final"].get("psnr") is not None:
            score = case["final"]["psnr"]
        mult = float(rec["lr_multiplier"])
        if rec["model"] not in best or score > best[rec["model"]][1]:
            best[rec["model"]] = (mult, score)
    return {m: (mult, "sweep") for m, (mult, score) in best.items() if math.isfinite(score)}


def _lr(model: str, task: str, multipliers: dict[str, tuple[float, str]]) -> tuple[float, float, str]:
    from reconstruct.tasks import default_lr

    mult, source = multipliers.get(model, (1.0, "default"))
    return default_lr(model, TASK_FUNCTIONS[task]) * mult, mult, source


def _sweep_job(args: argparse.Namespace, results: Path, model: str, mult: float) -> dict:
    from reconstruct.tasks import default_lr

    protocol = args.protocol
    return _base_job(
        args,
        results,
        kind="lr_sweep",
        task="image",
        model=model,
        label=f"{model}_x{mult:g}",
        model_kwargs=common.model_kwargs_for(protocol, model),
        seed=0,
        lr=default_lr(model, "fit_image") * mult,
        lr_multiplier=mult,
        lr_source="sweep-candidate",
        path=str(Path(results) / protocol / "lr_sweep" / f"{_slug(model)}_x{mult:g}.json"),
    )


def _tried_multipliers(results: Path, protocol: str, model: str) -> list[float]:
    folder = Path(results) / protocol / "lr_sweep"
    return sorted(
        float(read_json(p)["lr_multiplier"]) for p in folder.glob(f"{_slug(model)}_x*.json")
    ) if folder.is_dir() else []


def _sweep(args: argparse.Namespace, results: Path) -> list[str]:
    """The grid of learning-rate multipliers, then up to ``lr_extend`` more grid steps for every model
    whose best multiplier lies at an edge of what was tried (a sweep that peaks at its edge has not
    found the optimum)."""
    cfg = PROTOCOLS[args.protocol]
    mults = cfg["lr_multipliers"]
    if args.force:
        # A forced sweep starts afresh: records of earlier extensions would otherwise stay in the
        # comparison (from older code) and stop this run from extending past them.
        folder = results / args.protocol / "lr_sweep"
        for model in args.model_list:
            for stale in folder.glob(f"{_slug(model)}_x*.json"):
                stale.unlink()
    jobs = [_sweep_job(args, results, model, mult) for model in args.model_list for mult in mults]
    print(f"learning-rate sweep: {len(jobs)} runs on the development image", flush=True)
    errors = _run_jobs(jobs, args)
    factor = mults[-1] / mults[-2] if len(mults) > 1 else 2.0
    for _ in range(cfg.get("lr_extend", 0)):
        best = sweep_multipliers(results, args.protocol)
        extra = []
        for model in args.model_list:
            tried = _tried_multipliers(results, args.protocol, model)
            if model not in best or len(tried) < 2:
                continue
            m = best[model][0]
            if math.isclose(m, tried[-1]):
                extra.append(_sweep_job(args, results, model, float(f"{m * factor:.6g}")))
            elif math.isclose(m, tried[0]):
                extra.append(_sweep_job(args, results, model, float(f"{m / factor:.6g}")))
        if not extra:
            break
        print(
            "learning-rate sweep, best at an edge; extending: " + ", ".join(j["label"] for j in extra),
            flush=True,
        )
        errors += _run_jobs(extra, args)
    return errors


# ---------------------------------------------------------------------------------------------- jobs
def _base_job(args: argparse.Namespace, results: Path, **kw: Any) -> dict:
    job = {
        "protocol": args.protocol,
        "device": args.device,
        "data_dir": str(args.data_dir),
        "max_cases": args.max_images,
        "command": args.command,
        "steps": args.steps,
        "steps_override": args.steps,
        "jobs": args.jobs,
        "threads": args.threads,
        "time_budget_s": None,
    }
    job.update(kw)
    return job


def _nestnet_defaults() -> dict[str, Any]:
    from monai_nets import NestNet

    sig = inspect.signature(NestNet.__init__)
    return {k: v.default for k, v in sig.parameters.items() if v.default is not inspect.Parameter.empty}


def _equal_param_width(protocol: str, channels: int, target: int) -> int:
    from monai_nets import get_network

    def count(width: int) -> int:
        kw = common.model_kwargs_for(protocol, "nestnet", {"hidden_channels": (width, width)})
        return get_network("nestnet", 2, channels, **kw).num_real_parameters()

    lo, hi = 2, 1024
    while hi - lo > 1:  # parameter count grows with the width: bisect
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= target else (lo, mid)
    return lo if abs(count(lo) - target) <= abs(count(hi) - target) else hi


def ablation_variants(
    name: str, protocol: str, data_dir: str, max_cases: int | None
) -> list[tuple[str, str, dict]]:
    """``[(label, model, model_kwargs extra)]`` of one ablation (NestNet unless ``equal_time``)."""
    from monai_nets import DEFAULT_NUM_FREQUENCIES, get_network

    if name == "height":
        return [(f"height={h}", "nestnet", {"height": h}) for h in (2, 3, 4)]
    if name == "init":
        return [(f"init={v}", "nestnet", {"subnet_init": v}) for v in ("prescribed", "random")]
    if name == "subnets":
        return [(f"r={r}", "nestnet", {"num_subnets": r}) for r in (1, 2)]
    if name == "share":
        return [
            ("shared", "nestnet", {"share_subnets": True}),
            ("per-layer", "nestnet", {"share_subnets": False}),
        ]
    if name == "frequencies":
        ms = sorted({8, 16, 32, 64, DEFAULT_NUM_FREQUENCIES})
        return [(f"m={m}", "nestnet", {"num_frequencies": m}) for m in ms]
    if name == "equal_params":
        case = _cases(protocol, "image", data_dir, max_cases)[0]
        channels = case.reference.shape[2] if case.reference.ndim == 3 else 1
        target = get_network(
            "siren", 2, channels, **common.model_kwargs_for(protocol, "siren")
        ).num_real_parameters()
        width = _equal_param_width(protocol, channels, target)
        return [(f"nestnet width={width}", "nestnet", {"hidden_channels": (width, width)})]
    if name == "equal_time":
        return [(m, m, {}) for m in MODEL_NAMES]
    if name == "prior":
        return [("nestnet image settings", "nestnet", {"num_frequencies": DEFAULT_NUM_FREQUENCIES})]
    raise ValueError(f"unknown ablation {name!r}")


def _main_record_path(results: Path, protocol: str, task: str, model: str, seed: int) -> Path:
    return record_path(results, protocol, task, model, seed)


def _ablation_jobs(args, results: Path, multipliers, timing_ready: bool) -> list[dict]:
    jobs = []
    seeds = range(min(args.seeds, PROTOCOLS[args.protocol]["ablation_seeds"]))
    defaults = _nestnet_defaults()
    main_kwargs = common.model_kwargs_for(args.protocol, "nestnet")
    for name in args.ablations:
        if (name == "equal_time") != timing_ready:
            continue
        variants = ablation_variants(name, args.protocol, str(args.data_dir), args.max_images)
        budget = None
        if name == "equal_time":
            budget = _equal_time_budget(results, args.protocol, seeds)
            if budget is None:
                print(
                    "equal_time: no NestNet image records to take the time budget from; skipped", flush=True
                )
                continue
        if name == "prior":
            jobs += _prior_jobs(args, results, multipliers, seeds, variants)
            continue
        for seed in seeds:
            for label, model, extra in variants:
                lr, mult, source = _lr(model, "image", multipliers)
                kw = common.model_kwargs_for(args.protocol, model, extra)
                # The default configuration is the main table's NestNet run (equal_time: the budget is
                # by definition NestNet's time for its steps).  Its quality is shared, but it is run once
                # more among the ablations ("ablation/default") so that time-per-step ratios compare
                # runs made under the same machine load.
                is_default = model == "nestnet" and name != "equal_params" and (
                    {**defaults, **main_kwargs} == {**defaults, **kw}
                )
                if is_default and name == "equal_time":
                    path = _main_record_path(results, args.protocol, "image", "nestnet", seed)
                    kind, job_label = "image", "nestnet"
                elif is_default:
                    path = record_path(results, args.protocol, "ablation/default", "default", seed)
                    kind, job_label = "ablation/default", "default"
                else:
                    path = record_path(results, args.protocol, f"ablation/{name}", label, seed)
                    kind, job_label = f"ablation/{name}", label
                job = _base_job(
                    args,
                    results,
                    kind=kind,
                    task="image",
                    model=model,
                    label=job_label,
                    model_kwargs=kw,
                    seed=seed,
                    lr=lr,
                    lr_multiplier=mult,
                    lr_source=source,
                    path=str(path),
                    ablation=name,
                    variant=label,
                )
                if name == "equal_time" and not is_default:
                    per_step = _mean_step_time(results, args.protocol, model, seeds)
                    if per_step is None:
                        continue
                    job["steps"] = max(10, int(round(budget / per_step)))
                    job["time_budget_s"] = budget
                jobs.append(job)
    return jobs


def _prior_jobs(args, results: Path, multipliers, seeds, variants) -> list[dict]:
    """NestNet at its image-fitting settings on the tasks where the library gives it a smoother default."""
    jobs = []
    for task in PRIOR_TASKS:
        for seed in seeds:
            for label, model, extra in variants:
                lr, mult, source = _lr(model, task, multipliers)
                jobs.append(_base_job(
                    args, results, kind="ablation/prior", task=task, model=model, label=label,
                    model_kwargs=common.model_kwargs_for(args.protocol, model, extra), seed=seed, lr=lr,
                    lr_multiplier=mult, lr_source=source, ablation="prior", variant=label,
                    path=str(record_path(results, args.protocol, "ablation/prior", f"{task} {label}", seed)),
                ))
    return jobs


def _main_records(results: Path, protocol: str, model: str, seeds) -> list[dict]:
    recs = []
    for seed in seeds:
        path = _main_record_path(results, protocol, "image", model, seed)
        if path.exists():
            rec = read_json(path)
            if rec["status"] == "ok":
                recs.append(rec)
    return recs


def _mean_step_time(results: Path, protocol: str, model: str, seeds) -> float | None:
    recs = _main_records(results, protocol, model, seeds)
    values = [c["s_per_step"] for r in recs for c in r["cases"] if c.get("s_per_step")]
    return sum(values) / len(values) if values else None


def _equal_time_budget(results: Path, protocol: str, seeds) -> float | None:
    """The wall-clock NestNet (2 x 256) needs for the image task's step budget: every model gets it."""
    recs = _main_records(results, protocol, "nestnet", seeds)
    values = [r["seconds"] for r in recs]
    return sum(values) / len(values) if values else None


def _data_hashes(args: argparse.Namespace, job: dict) -> dict[str, str]:
    task = "dev" if job["kind"] == "lr_sweep" else job["task"]
    cases = _cases(job["protocol"], task, job["data_dir"], job.get("max_cases"))
    return {c.name: common.case_hash(c) for c in cases}


def is_smoke(record: dict) -> bool:
    """A record made with ``--steps`` (a smoke run), which a real run recomputes and the report skips."""
    return bool(record.get("steps_override")) or " --steps " in f" {record.get('command', '')} "


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
            if existing["cases"].get(c.name, {}).get("data_hash", "absent") != common.case_hash(c)
        ]
        if not missing:
            continue
        for case in missing:
            refs = common.classical_references(task, case)
            existing["cases"][case.name] = {
                "group": case.group,
                "description": case.description,
                "data_hash": common.case_hash(case),
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks described by ``argv`` and regenerate the report; returns the exit status."""
    args = parse_args(argv)
    out = Path(args.out)
    results = out / "results"
    if args.steps is not None and not args.report:
        # Smoke runs with a step override never mix with (or block) real records; the report skips them.
        results = results / f"_smoke_steps{args.steps}"
    if args.report:
        path = report.generate(out)
        print(f"wrote {path}")
        return 0
    if args.protocol != "tiny" and not Path(args.data_dir).is_dir():
        print(
            f"error: benchmark data folder {args.data_dir} not found; pass --data-dir (the folder with "
            "cameraman.tif, kodak.png, parrot.png, chest.png, div2k/, meshes/) or use --protocol tiny",
            file=sys.stderr,
        )
        return 2
    if args.threads is None and args.jobs == 1:
        args.threads = os.cpu_count() or 1
    _configure_torch(args.threads if args.jobs == 1 else None)
    try:
        errors = _run_all(args, results)
    except common.DataMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_report:
        path = report.generate(out)
        print(f"wrote {path}")
    if errors:
        print(f"{len(errors)} run(s) failed:", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    return 0


def _main_job(args, results: Path, multipliers, task: str, model: str, seed: int) -> dict:
    """The job of one main-table record (task, model, seed)."""
    lr, mult, source = _lr(model, task, multipliers)
    return _base_job(
        args, results, kind=task, task=task, model=model, label=model,
        model_kwargs=common.model_kwargs_for(args.protocol, model), seed=seed, lr=lr, lr_multiplier=mult,
        lr_source=source, path=str(_main_record_path(results, args.protocol, task, model, seed)),
    )


def _run_all(args, results: Path) -> list[str]:
    errors: list[str] = []
    protocol = args.protocol
    if args.sweep_lr:
        errors += _sweep(args, results)
    multipliers = sweep_multipliers(results, protocol)
    if multipliers:
        print(
            "learning-rate multipliers from the sweep: "
            + ", ".join(f"{m} x{v[0]:g}" for m, v in sorted(multipliers.items())),
            flush=True,
        )

    _reference_records(args, results)
    jobs = [
        _main_job(args, results, multipliers, task, model, seed)
        for task in args.tasks
        for seed in range(args.seeds)
        for model in args.model_list
    ]
    if args.ablations:
        jobs += _ablation_jobs(args, results, multipliers, timing_ready=False)
    if "equal_time" in args.ablations:
        # The time budget comes from the main image runs of every model: make sure they exist first.
        for seed in range(min(args.seeds, PROTOCOLS[protocol]["ablation_seeds"])):
            jobs += [_main_job(args, results, multipliers, "image", model, seed) for model in MODEL_NAMES]
    errors += _run_jobs(jobs, args)
    if "equal_time" in args.ablations:
        errors += _run_jobs(_ablation_jobs(args, results, multipliers, timing_ready=True), args)
    return errors


if __name__ == "__main__":
    from reconstruct.runtime import reexec_with_tcmalloc

    reexec_with_tcmalloc()
    sys.exit(main())
