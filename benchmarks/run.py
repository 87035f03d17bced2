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
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import common, report  # noqa: E402  (namespace package next to this file)
from benchmarks.common import (  # noqa: E402
    MODEL_NAMES,
    PROTOCOLS,
    TASK_NAMES,
    is_smoke,
    missing_data_folder_message,
    protocol_tasks,
)
from benchmarks.jobs import (  # noqa: E402
    _configure_torch,
    _reference_records,
    _run_jobs,
    execute_job,
    record_path,
)
from benchmarks.plans import (  # noqa: E402
    ABLATIONS,
    TIMED_ABLATIONS,
    _ablation_jobs,
    _main_job,
    _sweep,
    ablation_variants,
    sweep_multipliers,
)

__all__ = [
    "main",
    "ABLATIONS",
    "parse_args",
    "record_path",
    "execute_job",
    "sweep_multipliers",
    "ablation_variants",
    "is_smoke",
]


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
        args.tasks = _csv(args.task, TASK_NAMES, "task", protocol_tasks(args.protocol))
        args.model_list = _csv(args.models, tuple(available_networks()), "model", MODEL_NAMES)
        args.ablations = _csv(args.ablation, ABLATIONS, "ablation", ABLATIONS) if args.ablation else []
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    absent = [t for t in args.tasks if t not in protocol_tasks(args.protocol)]
    if absent:
        p.error(f"protocol {args.protocol} has no {', '.join(absent)} task; it defines "
                f"{', '.join(protocol_tasks(args.protocol))} (or use --protocol quick)")
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
        print(f"error: {missing_data_folder_message(args.data_dir)}", file=sys.stderr)
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
    timed = [name for name in args.ablations if name in TIMED_ABLATIONS]
    if timed:
        # The time budget comes from the main image runs (equal_time: of every model, whose step
        # times set the step counts; height_time: NestNet's): make sure they exist first.
        models = MODEL_NAMES if "equal_time" in timed else ("nestnet",)
        for seed in range(min(args.seeds, PROTOCOLS[protocol]["ablation_seeds"])):
            jobs += [_main_job(args, results, multipliers, "image", model, seed) for model in models]
    errors += _run_jobs(jobs, args)
    if timed:
        errors += _run_jobs(_ablation_jobs(args, results, multipliers, timing_ready=True), args)
    return errors


if __name__ == "__main__":
    from reconstruct.app.runtime import reexec_with_tcmalloc

    reexec_with_tcmalloc()
    sys.exit(main())
