"""Planning of benchmark jobs: the main tables, the learning-rate sweep and the ablations.

Each function returns job dicts for :func:`benchmarks.jobs._run_jobs` (the sweep runs its own, as its
extensions depend on the results of the grid).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from benchmarks.common import MODEL_NAMES, PROTOCOLS, TASK_FUNCTIONS, model_kwargs_for, nestnet_defaults, read_json
from benchmarks.jobs import _cases, _run_jobs, _slug, record_path

__all__ = ["ABLATIONS", "TIMED_ABLATIONS", "PRIOR_TASKS", "sweep_multipliers", "ablation_variants"]

ABLATIONS = ("height", "init", "subnets", "share", "equal_params", "equal_time", "height_time", "frequencies",
             "prior")
#: Ablations whose runs get the wall-clock of the main table's NestNet run (it has to exist first).
TIMED_ABLATIONS = ("equal_time", "height_time")
# The tasks where reconstruct.tasks gives NestNet a smoother default than its image-fitting one; the
# "prior" ablation runs NestNet there at its image-fitting settings, as the baselines run.
PRIOR_TASKS = ("denoise", "sisr")


# ------------------------------------------------------------------------------------ learning rates
def sweep_multipliers(results: Path, protocol: str) -> dict[str, tuple[float, str]]:
    """Per model, the learning-rate multiplier of today's image default that won the sweep.

    The winner is the best final PSNR on the development image; it is stored as an absolute rate, so
    a default that changed since the sweep (``reconstruct.tasks.learning_rates``) is not multiplied
    twice: the multiplier returned is ``winning lr / today's default``.
    """
    from reconstruct.tasks import default_lr

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
        if rec["model"] not in best or score > best[rec["model"]][1]:
            best[rec["model"]] = (float(rec["lr"]), score)
    return {m: (float(f"{lr / default_lr(m, 'fit_image'):.6g}"), "sweep") for m, (lr, score) in best.items()
            if math.isfinite(score)}


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
        model_kwargs=model_kwargs_for(protocol, model),
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


def _equal_param_width(protocol: str, channels: int, target: int) -> int:
    from monai_nets import get_network

    def count(width: int) -> int:
        kw = model_kwargs_for(protocol, "nestnet", {"hidden_channels": (width, width)})
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

    if name in ("height", "height_time"):
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
            "siren", 2, channels, **model_kwargs_for(protocol, "siren")
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
    defaults = nestnet_defaults()
    main_kwargs = model_kwargs_for(args.protocol, "nestnet")
    for name in args.ablations:
        if (name in TIMED_ABLATIONS) != timing_ready:
            continue
        variants = ablation_variants(name, args.protocol, str(args.data_dir), args.max_images)
        budget = None
        if name in TIMED_ABLATIONS:
            budget = _equal_time_budget(results, args.protocol, seeds)
            if budget is None:
                print(
                    f"{name}: no NestNet image records to take the time budget from; skipped", flush=True
                )
                continue
        if name == "prior":
            jobs += _prior_jobs(args, results, multipliers, seeds, variants)
            continue
        for seed in seeds:
            for label, model, extra in variants:
                lr, mult, source = _lr(model, "image", multipliers)
                kw = model_kwargs_for(args.protocol, model, extra)
                # The default configuration is the main table's NestNet run (equal_time: the budget is
                # by definition NestNet's time for its steps).  Its quality is shared, but it is run once
                # more among the ablations ("ablation/default") so that time-per-step ratios compare
                # runs made under the same machine load.
                is_default = model == "nestnet" and name != "equal_params" and (
                    {**defaults, **main_kwargs} == {**defaults, **kw}
                )
                if is_default and name in TIMED_ABLATIONS:
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
                elif name == "height_time" and not is_default:
                    # No main-table run of this height to read its step time from: the job times a few
                    # steps of its own network first (jobs._calibrated_steps), then runs budget / that.
                    job["calibrate_budget_s"] = budget
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
                    model_kwargs=model_kwargs_for(args.protocol, model, extra), seed=seed, lr=lr,
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


def _main_job(args, results: Path, multipliers, task: str, model: str, seed: int) -> dict:
    """The job of one main-table record (task, model, seed)."""
    lr, mult, source = _lr(model, task, multipliers)
    return _base_job(
        args, results, kind=task, task=task, model=model, label=model,
        model_kwargs=model_kwargs_for(args.protocol, model), seed=seed, lr=lr, lr_multiplier=mult,
        lr_source=source, path=str(_main_record_path(results, args.protocol, task, model, seed)),
    )


