"""The learning-rate sweeps behind the library's default learning rates (``reconstruct.tasks``).

Every registry model runs a task's *development case* — data no results table uses — at each multiple
of its network's ``recommended_lr`` (3× further outwards, up to three times, while the best is at an edge
of the tried grid);
the multiple with the best final metric becomes the model's default rate for that task
(``reconstruct.tasks.learning_rates``; ``tests/benchmarks/test_lr_defaults.py`` checks the two agree).
The development cases:

* ``image`` (fitting and super-resolution): ``skimage.data.chelsea``, centre square resized, final
  PSNR; a second photo (``skimage.data.astronaut``, same size) is fitted at the recommended and at
  the chosen rate to show whether the choice carries over; it takes no part in the choice.
* ``pinn``: convection at β = 25 and 35 (the tables use 5, 30, 40 and 50), vanilla scheme, the
  task's defaults otherwise; the geometric mean over the two of the final relative L2 error against the
  analytic solution. A first record swept at β = 20 alone; its choice carried badly to the tables'
  β = 30 / 40 (SIREN, WIRE, Gauss and MFN got worse there), so the hard regime's two speeds replaced it.
* ``occupancy``: a 3-D ``skimage.data.binary_blobs`` volume (generated; the tables use the five
  meshes), the task's defaults (65,536 random voxels per step); final IoU at 0.5.

A model that learns the case at no rate tried (its best run is worse than the task's *learnt level*:
PSNR 15 dB, relative L2 0.5, IoU 0.3 — that of calling every voxel inside) keeps its recommended rate
in that record; FFN and ReLU+PE fit no occupancy in 60 steps, so a second occupancy record sweeps the
two at 300 steps and sets theirs. ``--budget-check RECORD --steps N`` fits a record's recommended and
chosen rates again at N steps (the task's default budget, where the sweep ran shorter) and adds the runs
to its ``budget_checks``.

Commands that produced the records (2 processes × 1 thread; ``--rechoose RECORD`` applies the current
choice rule to a record's runs again without running anything, and is appended to its ``commands``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_defaults.py --size 96 --steps 300 --jobs 2 \\
        --out benchmarks/results/lr_defaults_cpu.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_defaults.py --task pinn --jobs 2 \\
        --out benchmarks/results/lr_defaults_pinn_cpu.json  # at β = 20, before --betas (38 min of runs)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_defaults.py --task pinn --jobs 2 \\
        --out benchmarks/results/lr_defaults_pinn_hard_cpu.json  # β = 25 and 35 (89 min of runs, 46 wall)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_defaults.py --task occupancy --size 96 \\
        --steps 60 --jobs 2 --out benchmarks/results/lr_defaults_occupancy_cpu.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_defaults.py --task occupancy --size 96 \\
        --steps 300 --models ffn relu_pe --jobs 2 --out benchmarks/results/lr_defaults_occupancy_300_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTIPLIERS = (1 / 3, 1.0, 3.0, 9.0)
#: the most steps outwards from the grid when its best multiple stays at an edge
MAX_EXTENSIONS = 3
#: the convection speeds of the PINN's development case (no table uses them): the hard regime the
#: tables measure, where a model's best rate differs from its rate at an easy β
PINN_DEV_BETAS = (25.0, 35.0)
#: task -> (metric, whether higher is better, default steps, default size, learnt level): a model whose
#: best run is worse than the learnt level did not learn the case in these steps at any rate tried, so
#: the sweep cannot choose for it: it keeps its recommended rate and wants a sweep with more steps. The
#: occupancy level is the IoU of calling every voxel inside (the blobs' volume fraction, 0.3)
TASKS = {
    "image": ("psnr", True, 300, 96, 15.0),
    "pinn": ("rel_l2", False, 1000, None, 0.5),
    "occupancy": ("iou", True, 60, 96, 0.3),
}


def _photo(name: str, size: int):
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    img = getattr(data, name)().astype(np.float64) / 255.0
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize(img[top:top + side, left:left + side], (size, size), anti_aliasing=True).astype(np.float32)


def blob_volume(size: int, seed: int = 0):
    """The occupancy development volume: smooth 3-D blobs filling about 30 % of a ``size``³ grid."""
    from skimage.data import binary_blobs

    return binary_blobs(length=size, blob_size_fraction=0.2, n_dim=3, volume_fraction=0.3, rng=seed)


class _InProcess:
    """The executor interface of ``ProcessPoolExecutor`` for one job at a time, in this process."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items):
        return map(fn, items)


def _case_names(task: str, size: int | None, betas: tuple[float, ...] = PINN_DEV_BETAS) -> tuple[str, str | None]:
    """(development case, validation case or None), in words, for the record."""
    if task == "image":
        return (f"skimage.data.chelsea, centre square resized to {size}² RGB",
                f"skimage.data.astronaut, centre square resized to {size}² RGB")
    if task == "pinn":
        return (f"convection beta = {' and '.join(f'{b:g}' for b in betas)}, vanilla scheme, task defaults"
                + (" (geometric mean of the final errors)" if len(betas) > 1 else ""), None)
    return (f"skimage.data.binary_blobs(length={size}, blob_size_fraction=0.2, n_dim=3, volume_fraction=0.3, "
            "rng=0)", None)


def run_one(job: dict) -> dict:
    """One run in this worker: the job plus ``{"<metric>": final value, "seconds": ...}``."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from reconstruct import tasks

    start = time.perf_counter()
    common = {"model": job["model"], "steps": job["steps"], "lr": job["lr"], "seed": 0}
    if job["task"] == "image":
        img = _photo(job["image"], job["size"])
        result = tasks.fit_image(img, reference=img, **common)
    elif job["task"] == "pinn":
        errors = {f"{b:g}": float(tasks.solve_convection(b, **common).metrics["rel_l2"]) for b in job["betas"]}
        # one number per run for the choice: the geometric mean, so each speed's error counts relatively
        mean = float(math.exp(sum(math.log(max(e, 1e-12)) for e in errors.values()) / len(errors)))
        return {**job, "rel_l2": mean, "rel_l2_per_beta": errors, "seconds": time.perf_counter() - start}
    else:
        volume = blob_volume(job["size"])
        result = tasks.fit_occupancy(volume, eval_every=job["steps"], **common)
    metric = TASKS[job["task"]][0]
    return {**job, metric: float(result.metrics[metric]), "seconds": time.perf_counter() - start}


def best_run(rows: list[dict], task: str) -> dict:
    """The run of ``rows`` with the best final metric of ``task``."""
    metric, higher = TASKS[task][:2]
    return (max if higher else min)(rows, key=lambda r: r[metric])


def choose(sweep: list[dict], task: str) -> dict[str, dict]:
    """model -> its chosen multiple of the recommended rate: the best run's, once the case was learnt."""
    metric, higher, _, _, learnt_level = TASKS[task]
    chosen = {}
    for m in dict.fromkeys(r["model"] for r in sweep):
        rows = [r for r in sweep if r["model"] == m]
        best = best_run(rows, task)
        tried = sorted(r["multiplier"] for r in rows)
        learnt = best[metric] >= learnt_level if higher else best[metric] <= learnt_level
        if not learnt:
            best = next(r for r in rows if r["multiplier"] == 1.0)
            print(f"{m}: dev {metric} is worse than {learnt_level:g} at every rate tried; it keeps its "
                  "recommended rate (sweep it again with more --steps)", file=sys.stderr)
        chosen[m] = {"multiplier": best["multiplier"], "lr": best["lr"], f"dev_{metric}": best[metric],
                     "at_edge": learnt and best["multiplier"] in (tried[0], tried[-1]), "learnt": learnt}
    return chosen


def rechoose(path: Path, command: str) -> None:
    """Apply this script's choice rule to a committed record's runs again (the runs stay as measured)."""
    from benchmarks.common import write_json

    record = json.loads(path.read_text())
    record["chosen"] = choose(record["sweep"], record.get("task", "image"))
    commands = record.get("commands", [record["command"]])
    record["commands"] = commands + ([command] if command not in commands else [])
    write_json(path, record)


def budget_check(path: Path, steps: int, models: list[str] | None, jobs: int, command: str) -> list[dict]:
    """Run a record's recommended and chosen rates again at ``steps`` (e.g. the task's default budget, when
    the sweep ran shorter) on its development case, and add the runs to its ``budget_checks``: does the
    choice carry over to the budget users run?"""
    from benchmarks.common import write_json

    record = json.loads(path.read_text())
    task = record.get("task", "image")
    case = {r["model"]: {k: r[k] for k in ("task", "size", "image", "betas") if k in r} for r in record["sweep"]}
    checks = [{**case[m], "steps": steps, "model": m,
               "multiplier": k, "lr": record["recommended_lr"][m] * k}
              for m in (models or list(record["chosen"])) if record["chosen"][m]["multiplier"] != 1.0
              for k in (1.0, record["chosen"][m]["multiplier"])]
    with ProcessPoolExecutor(jobs) if jobs > 1 else _InProcess() as pool:
        runs = list(pool.map(run_one, checks))
    metric = TASKS[task][0]
    for run in runs:
        print(f"{run['model']:8s} x{run['multiplier']:.3g} at {steps} steps: {metric} {run[metric]:.4g}")
    record["budget_checks"] = [*record.get("budget_checks", []), *runs]
    record["commands"] = [*record.get("commands", [record["command"]]), command]
    write_json(path, record)
    return runs


SECTION_TITLE = "### Default learning rates (sweeps on development cases, CPU)"
_TASK_NAMES = {"image": "fitting and super-resolution", "pinn": "convection PINN", "occupancy": "occupancy"}
_METRIC_NAMES = {"psnr": "PSNR (dB)", "rel_l2": "relative L2 error (lower is better)", "iou": "IoU at 0.5"}


def _recommended_then_chosen(runs: list[dict], metric: str, fmt: str) -> str:
    """``"model a → b"`` per model of ``runs``: its run at the recommended rate (×1), then at the other one."""
    parts = []
    for m in dict.fromkeys(r["model"] for r in runs):
        mine = sorted((r for r in runs if r["model"] == m), key=lambda r: r["multiplier"] != 1.0)
        parts.append(f"{m} {mine[0][metric]:{fmt}} → {mine[-1][metric]:{fmt}}")
    return "; ".join(parts)


def results_section(records: list[dict]) -> list[str]:
    """The Markdown section of the committed sweep records (``benchmarks/report.py`` writes it)."""
    lines = [SECTION_TITLE, "",
             "Each registry model on a task's development case (no table uses it) at multiples of its "
             "`recommended_lr`; the bold cell, the best final metric, is the task's default "
             "(`reconstruct.tasks.learning_rates`). A model whose best run stays below the learnt level keeps "
             "its recommended rate (*not learnt*).", ""]
    order = list(_TASK_NAMES)
    for record in sorted(records, key=lambda r: (order.index(r.get("task", "image")), r["steps"])):
        task = record.get("task", "image")
        metric = record.get("metric", "psnr")
        rows = record["sweep"]
        multiples = sorted({r["multiplier"] for r in rows})
        lines += [f"#### {_TASK_NAMES.get(task, task)}: {record.get('dev_case') or record.get('dev_image')}, "
                  f"{record['steps']} steps, final {_METRIC_NAMES.get(metric, metric)}", "",
                  "| model | recommended lr | " + " | ".join(f"×{k:.3g}" for k in multiples) + " | default lr |",
                  "|---" * (len(multiples) + 3) + "|"]
        for model, choice in record["chosen"].items():
            got = {r["multiplier"]: r[metric] for r in rows if r["model"] == model}
            cells = [("" if k not in got else f"**{got[k]:.4g}**" if k == choice["multiplier"] and choice["learnt"]
                      else f"{got[k]:.4g}") for k in multiples]
            lines.append(f"| {model} | {record['recommended_lr'][model]:.3g} | " + " | ".join(cells) + " | "
                         + (f"{choice['lr']:.3g}" if choice["learnt"] else f"{choice['lr']:.3g} (*not learnt*)")
                         + " |")
        checks = record.get("budget_checks", [])
        if checks:
            steps = ", ".join(map(str, sorted({c["steps"] for c in checks})))
            lines += ["", f"At {steps} steps (the task's budget) on the same case, recommended → chosen rate: "
                      + _recommended_then_chosen(checks, metric, ".4g") + "."]
        if record.get("validation"):
            lines += ["", f"Validation on {record.get('validation_image')} (not part of the choice), recommended → "
                      "chosen: " + _recommended_then_chosen(record["validation"], metric, ".2f") + "."]
        lines += ["", "Produced by: " + " then ".join(f"`{c}`" for c in record.get("commands", [record["command"]])),
                  ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(TASKS), default="image")
    parser.add_argument("--size", type=int, default=None, help="image side / volume length (image, occupancy)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--betas", type=float, nargs="+", default=list(PINN_DEV_BETAS),
                        help="pinn: the convection speeds of the development case")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rechoose", type=Path, default=None, metavar="RECORD",
                        help="choose again from RECORD's runs with the current rule (runs nothing)")
    parser.add_argument("--budget-check", type=Path, default=None, metavar="RECORD",
                        help="run RECORD's recommended and chosen rates again at --steps (for --models) and add "
                             "them to its budget_checks")
    args = parser.parse_args(argv)
    command = " ".join(["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_defaults.py",
                        *(argv if argv is not None else sys.argv[1:])])
    sys.path.insert(0, str(ROOT))
    if args.rechoose is not None:
        rechoose(args.rechoose, command)
        return 0
    if args.budget_check is not None:
        if args.steps is None:
            parser.error("--budget-check needs --steps")
        budget_check(args.budget_check, args.steps, args.models, args.jobs, command)
        return 0
    metric, higher, default_steps, default_size, _ = TASKS[args.task]
    steps = args.steps or default_steps
    size = args.size or default_size
    from monai_nets.registry import available_networks, network_class

    models = args.models or available_networks()
    base = {m: float(network_class(m).recommended_lr) for m in models}
    first = {"task": args.task, "steps": steps, **({"size": size} if size else {}),
             **({"image": "chelsea"} if args.task == "image" else {}),
             **({"betas": list(args.betas)} if args.task == "pinn" else {})}
    jobs = [{**first, "model": m, "multiplier": k, "lr": base[m] * k} for m in models for k in MULTIPLIERS]
    # one job at a time runs in this process (tests, a debugger); more in worker processes
    with (ProcessPoolExecutor(args.jobs) if args.jobs > 1 else _InProcess()) as pool:
        sweep = list(pool.map(run_one, jobs))
        # a best multiple at an edge of the tried grid has not bracketed the optimum: step outwards
        # (at most MAX_EXTENSIONS times) until it has
        step = MULTIPLIERS[-1] / MULTIPLIERS[-2]
        for _ in range(MAX_EXTENSIONS):
            extra = []
            for m in models:
                rows = [r for r in sweep if r["model"] == m]
                tried = sorted(r["multiplier"] for r in rows)
                best = best_run(rows, args.task)["multiplier"]
                if best in (tried[0], tried[-1]):
                    k = best * step if best == tried[-1] else best / step
                    extra.append({**first, "model": m, "multiplier": k, "lr": base[m] * k})
            if not extra:
                break
            sweep += list(pool.map(run_one, extra))
        chosen = choose(sweep, args.task)
        validation = []
        if args.task == "image":
            checks = [{**first, "image": "astronaut", "model": m, "multiplier": k, "lr": base[m] * k}
                      for m in models for k in sorted({1.0, chosen[m]["multiplier"]})]
            validation = list(pool.map(run_one, checks))
    print(f"{'model':8s} {'recommended':>11s}  dev {metric} per multiple of it  -> chosen lr"
          + ("   astronaut: recommended -> chosen" if validation else ""))
    for m in models:
        cells = " ".join(f"x{r['multiplier']:.3g}: {r[metric]:.4g}" for r in sorted(
            (r for r in sweep if r["model"] == m), key=lambda r: r["multiplier"]))
        line = f"{m:8s} {base[m]:11.2g} {cells}  {chosen[m]['lr']:9.3g}"
        if validation:
            val = {r["multiplier"]: r[metric] for r in validation if r["model"] == m}
            line += f"   {val[1.0]:6.2f} -> {val[chosen[m]['multiplier']]:6.2f}"
        print(line)
    dev_case, validation_case = _case_names(args.task, size, tuple(args.betas))
    record = {"command": command,
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "task": args.task, "metric": metric, "higher_is_better": higher,
              "dev_case": dev_case, "steps": steps, "multipliers": list(MULTIPLIERS), "recommended_lr": base,
              "sweep": sweep, "chosen": chosen}
    if args.task == "image":
        # the image record's original keys, kept for readers of the committed file
        record.update(dev_image=dev_case, validation_image=validation_case, validation=validation)
    if args.out is not None:
        from benchmarks.common import write_json  # strict JSON, written atomically

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
