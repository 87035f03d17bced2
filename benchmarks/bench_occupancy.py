"""Occupancy at the paper's scale: the five meshes voxelised at 256³, every model fitted by the occupancy task.

Each mesh of ``../shared/data/meshes`` (armadillo, bunny, dragon, lucy, spot) is read with
:func:`reconstruct.app.meshes.read_mesh` and voxelised by :func:`reconstruct.tasks.voxelize` at
``--resolution`` over its tight bounding box, as :mod:`benchmarks.cases` builds occupancy cases (cubic
cells: the longest side gets ``--resolution`` cells, e.g. spot 256 × 252 × 141).  Every model is then
fitted by :func:`reconstruct.tasks.fit_occupancy` at the task's defaults (network, learning rate,
batch of 65,536 random voxels per step, the learning-rate decay) for ``--steps`` steps, one seed after
another.  The one setting changed is ``eval_every = steps``: the IoU is evaluated once, on the final
iterate (at the default, ``steps // 20`` = 20 whole-grid renderings, each ~1-2 min at 256³ on one
thread, which would cost more than the training); it changes no training step.  The fit still renders
the whole grid three times at its end (the last step's evaluation, the best-iterate snapshot, the final
output), counted in ``eval_seconds``.

Reported per fit: IoU at threshold 0.5 of the final iterate on the WHOLE voxel grid (the task's metric,
checked here against a direct count), the median milliseconds of a training step (steps 2 to N − 1:
the first carries the fused activation's torch.compile, the last the renderings), the peak resident
memory of the process that ran the fit (``ru_maxrss``; the process holds only the voxel volume, torch
and the fit) and the seconds of each part.  Every fit runs in its own subprocess, so the peak memory
is that fit's alone; the volumes are voxelised once in the parent.  One thread, tcmalloc when
installed, denormals flushed, like the other CPU benchmarks.  The JSON is written after every fit and
fits already in it (same mesh, model, seed, steps) are skipped, so an interrupted run continues where
it stopped.  Command that produced the committed results::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes all --models nestnet,siren --seeds 0 --steps 60
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes spot --models nestnet,siren --seeds 0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes lucy --models nestnet --seeds 0

(60 steps for every mesh and both models, then the task's default 500 steps on spot and, NestNet only, on
lucy: the 256³ renderings make each fit take 2-10 min on one thread here, 49 min for the first two).

It writes ``benchmarks/results/occupancy_256_cpu.json`` and (re)writes the section
:data:`SECTION_TITLE` of ``benchmarks/RESULTS.md`` (``benchmarks/report.py`` renders the same section
from the JSON when it regenerates the report).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "occupancy_256_cpu.json"
REPORT = ROOT / "benchmarks" / "RESULTS.md"
DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()
SECTION_TITLE = "### Occupancy at 256³ (five meshes, CPU)"
MESHES = ("armadillo", "bunny", "dragon", "lucy", "spot")
#: The issue's goal: NestNet IoU at 0.5 on the whole 256³ grid of every mesh.
GOALS = {"nestnet": 0.995}
#: Fields every fit record carries (the test checks them).
RUN_FIELDS = ("mesh", "model", "seed", "steps", "iou", "iou_check", "best_iou", "ms_per_step", "first_step_seconds",
              "train_seconds", "eval_seconds", "fit_seconds", "peak_rss_mib", "rss_before_fit_mib", "parameters",
              "lr", "batch_size", "shape")
_WORKER_FLAG = "--_worker"


# ---------------------------------------------------------------------------------------------- one fit
def _rss_mib() -> float:
    """Resident memory of this process now (MiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _peak_rss_mib()


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; ``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def fit_once(volume: Any, model: str, seed: int, steps: int | None, threads: int = 1) -> dict[str, Any]:
    """Fit ``model`` to the boolean ``volume`` with ``fit_occupancy`` at its defaults in this process.

    Returns the fit's record (the fields of :data:`RUN_FIELDS` but ``mesh``); the peak memory is this
    process's, so call it in a fresh process for a per-fit number.
    """
    import numpy as np
    import torch

    from reconstruct.tasks import FIT_OCCUPANCY, fit_occupancy

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as reconstruct.fit does on CPU
    steps = steps or FIT_OCCUPANCY.default_steps
    rss_before = _rss_mib()
    t0 = time.perf_counter()
    result = fit_occupancy(volume, model=model, steps=steps, seed=seed, device="cpu", eval_every=steps)
    call_seconds = time.perf_counter() - t0
    peak = _peak_rss_mib()
    elapsed = [0.0] + [float(r["seconds"]) for r in result.history]
    deltas = [b - a for a, b in zip(elapsed[:-1], elapsed[1:])]
    middle = deltas[1:-1] or deltas[:1]  # steps 2..N-1: no compile, no rendering
    ms_per_step = 1000 * statistics.median(middle)
    # The last step's training part is taken as a median step; the rest of the call is rendering and IoU.
    train_seconds = sum(deltas[:-1]) + ms_per_step / 1000 if len(deltas) > 1 else deltas[0]
    pred = np.asarray(result.output) >= 0.5
    ref = np.asarray(volume, dtype=bool)
    union = int(np.count_nonzero(pred | ref))
    params = result.extras["parameters"]
    return {
        "model": model, "seed": seed, "steps": result.steps, "iou": result.metrics["iou"],
        "iou_check": int(np.count_nonzero(pred & ref)) / union if union else 1.0,
        "best_iou": result.best.metrics["iou"] if result.best else None, "best_step": result.best.step
        if result.best else None, "ms_per_step": ms_per_step, "first_step_seconds": deltas[0],
        "train_seconds": train_seconds, "eval_seconds": call_seconds - train_seconds, "fit_seconds": call_seconds,
        "peak_rss_mib": peak, "rss_before_fit_mib": rss_before, "fit_rss_growth_mib": peak - rss_before,
        "parameters": result.model.num_real_parameters() if hasattr(result.model, "num_real_parameters")
        else sum(p.numel() for p in result.model.parameters()),
        "lr": params.get("lr"), "batch_size": params.get("batch_size"), "model_kwargs": params.get("model_kwargs"),
        "shape": list(ref.shape), "voxels": int(ref.size), "threads": torch.get_num_threads(),
        "final_loss": result.history[-1]["loss"] if result.history else None,
    }


def _worker(argv: Sequence[str]) -> None:
    """``--_worker VOLUME.npy MODEL SEED STEPS THREADS OUT.json``: one fit in this (fresh) process."""
    import numpy as np

    volume_path, model, seed, steps, threads, out = argv
    sys.path.insert(0, str(ROOT))
    from reconstruct.app.runtime import tune_allocator

    tune_allocator()
    volume = np.load(volume_path)
    run = fit_once(volume, model, int(seed), int(steps) or None, int(threads))
    Path(out).write_text(json.dumps(run))


def fit_in_subprocess(volume_path: Path, model: str, seed: int, steps: int | None, threads: int) -> dict[str, Any]:
    """:func:`fit_once` in a fresh Python process (its own peak memory); raises with its stderr on failure."""
    with tempfile.TemporaryDirectory(prefix="bench_occupancy_") as tmp:
        out = Path(tmp) / "run.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, str(Path(__file__).resolve()), _WORKER_FLAG, str(volume_path), model, str(seed),
               str(steps or 0), str(threads), str(out)]
        proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"fit {model} seed {seed} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


# -------------------------------------------------------------------------------------------- the run
def voxelise(mesh: str, resolution: int, data_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The boolean volume of ``meshes/<mesh>.obj`` at ``resolution`` and what it took."""
    import numpy as np

    from reconstruct.app.meshes import read_mesh
    from reconstruct.tasks import voxelize

    path = Path(data_dir) / "meshes" / f"{mesh}.obj"
    t0 = time.perf_counter()
    triangles = read_mesh(path)
    read_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    volume = np.asarray(voxelize(triangles, resolution), dtype=bool)
    return volume, {"file": f"meshes/{mesh}.obj", "faces": int(len(triangles.faces)), "shape": list(volume.shape),
                    "voxels": int(volume.size), "occupancy": float(volume.mean()), "read_seconds": read_seconds,
                    "voxelise_seconds": time.perf_counter() - t0}


def _key(run: dict[str, Any]) -> tuple:
    return run["mesh"], run["model"], int(run["seed"]), int(run["steps"])


def run_benchmark(
    *,
    resolution: int = 256,
    meshes: Sequence[str] = MESHES,
    models: Sequence[str] = ("nestnet", "siren"),
    seeds: Sequence[int] = (0,),
    steps: int | None = None,
    out: Path = RESULT,
    data_dir: Path = DATA_DIR,
    threads: int = 1,
    isolate: bool = True,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Voxelise ``meshes``, fit every model × seed on each, write the record to ``out`` after every fit.

    Fits already in ``out`` (same mesh, model, seed and steps; same resolution) are kept and skipped.
    ``isolate=False`` fits in this process (quicker to start; peak memory is then the process's so far).
    Returns the record.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from benchmarks.common import read_json, write_json
    from reconstruct.app.runtime import allocator_in_use
    from reconstruct.tasks import FIT_OCCUPANCY

    out = Path(out)
    steps = steps or FIT_OCCUPANCY.default_steps
    record: dict[str, Any] = read_json(out) if out.exists() else {}
    if record and record.get("resolution") != resolution:
        raise ValueError(f"{out} holds fits at resolution {record.get('resolution')}, not {resolution}; "
                         "pass another --out")
    command = command or "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " .venv/bin/python " \
        "benchmarks/bench_occupancy.py " + " ".join(sys.argv[1:])
    commands = list(record.get("commands", []))
    if command not in commands:
        commands.append(command)
    record.update({
        "benchmark": "bench_occupancy", "command": commands[0], "commands": commands,
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": threads,
        "allocator": allocator_in_use(), "flush_denormal": True, "device": "cpu", "resolution": resolution,
        "grid": "tight bounding box, cubic cells, longest side = resolution (benchmarks.cases)",
        "task_default_steps": FIT_OCCUPANCY.default_steps, "eval_every": "steps (the final iterate only)",
        "threshold": 0.5, "isolated": isolate, "goals": GOALS,
        "date": record.get("date", time.strftime("%Y-%m-%d %H:%M")),
    })
    record.setdefault("meshes", {})
    runs: list[dict[str, Any]] = record.setdefault("runs", [])
    done = {_key(r) for r in runs}
    seconds_before = float(record.get("total_seconds", 0.0))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_occupancy_volumes_") as tmp:
        for mesh in meshes:
            todo = [(model, seed) for model in models for seed in seeds if (mesh, model, seed, steps) not in done]
            if not todo:
                log(f"{mesh}: every fit already in {out}")
                continue
            volume, info = voxelise(mesh, resolution, data_dir)
            record["meshes"][mesh] = info
            log(f"{mesh}: {info['shape']} = {info['voxels']:,} voxels, occupancy {info['occupancy']:.3f}, "
                f"voxelised in {info['voxelise_seconds']:.1f} s")
            volume_path = Path(tmp) / f"{mesh}.npy"
            np.save(volume_path, volume)
            for model, seed in todo:
                t0 = time.perf_counter()
                if isolate:
                    run = fit_in_subprocess(volume_path, model, seed, steps, threads)
                else:
                    run = fit_once(volume, model, seed, steps, threads)
                run = {"mesh": mesh, **run, "seconds": time.perf_counter() - t0}
                runs.append(run)
                done.add(_key(run))
                record["total_seconds"] = seconds_before + time.perf_counter() - start
                record["load_average"] = list(os.getloadavg())
                write_json(out, record)
                log(f"  {model:8s} seed {seed}: IoU {run['iou']:.4f}  {run['ms_per_step']:.0f} ms/step  "
                    f"peak {run['peak_rss_mib']:.0f} MiB  train {run['train_seconds']:.0f} s + eval "
                    f"{run['eval_seconds']:.0f} s  ({run['seconds']:.0f} s)")
            del volume
    return record


# ------------------------------------------------------------------------------------------- reporting
def _summary(record: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(mesh, steps, model) -> IoU mean/min/max over seeds, mean ms/step, max peak memory, seeds."""
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for run in record.get("runs", []):
        groups.setdefault((run["mesh"], int(run["steps"]), run["model"]), []).append(run)
    summary = {}
    for key, group in groups.items():
        ious = [r["iou"] for r in group]
        summary[key] = {"iou": statistics.fmean(ious), "iou_min": min(ious), "iou_max": max(ious),
                        "ms_per_step": statistics.fmean(r["ms_per_step"] for r in group),
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in group),
                        "seconds": statistics.fmean(r["seconds"] for r in group),
                        "seeds": sorted(int(r["seed"]) for r in group)}
    return summary


def _ordered_models(record: dict[str, Any]) -> list[str]:
    models = list(dict.fromkeys(r["model"] for r in record.get("runs", [])))
    return sorted(models, key=lambda m: (m != "nestnet", models.index(m)))


def _rows(record: dict[str, Any]) -> list[tuple[str, int]]:
    order = {m: i for i, m in enumerate(MESHES)}
    rows = {(r["mesh"], int(r["steps"])) for r in record.get("runs", [])}
    return sorted(rows, key=lambda k: (order.get(k[0], len(order)), k[0], k[1]))


def _ratio_cell(cell: dict | None, ref: dict | None, field: str, missing: str = "–") -> str:
    """``cell[field]``, and its ratio to ``ref``'s when that is another model's."""
    if not cell:
        return missing
    return f"{cell[field]:.0f}" + (f" ({cell[field] / ref[field]:.2f}×)" if ref and cell is not ref else "")


def _iou_cell(cell: dict | None) -> str:
    """Mean IoU over the seeds (and their range, with several)."""
    if not cell:
        return "–"
    spread = f" ({cell['iou_min']:.4f}–{cell['iou_max']:.4f})" if len(cell["seeds"]) > 1 else ""
    return f"{cell['iou']:.4f}{spread}"


def table(record: dict[str, Any]) -> str:
    """Plain-text table: per mesh the IoU of every model, its ms/step and peak memory as ratios to NestNet's."""
    summary, models = _summary(record), _ordered_models(record)
    base = models[0] if models else None
    head = f"{'mesh':10s} {'steps':>5s} " + " ".join(f"{m + ' IoU':>12s}" for m in models)
    head += "  " + " ".join(f"{m + ' ms':>12s}" for m in models) + "  " + " ".join(f"{m + ' MiB':>12s}"
                                                                                    for m in models)
    lines = [head]
    for mesh, steps in _rows(record):
        cells = [summary.get((mesh, steps, m)) for m in models]
        ref = summary.get((mesh, steps, base))
        iou = " ".join(f"{c['iou']:12.4f}" if c else f"{'-':>12s}" for c in cells)
        ms = " ".join(f"{_ratio_cell(c, ref, 'ms_per_step', '-'):>12s}" for c in cells)
        mem = " ".join(f"{_ratio_cell(c, ref, 'peak_rss_mib', '-'):>12s}" for c in cells)
        lines.append(f"{mesh:10s} {steps:5d} {iou}  {ms}  {mem}")
    return "\n".join(lines)


def headline(record: dict[str, Any]) -> str:
    """One line: per step budget, where NestNet reaches the goal and where it comes first."""
    summary, models = _summary(record), _ordered_models(record)
    if "nestnet" not in models:
        return "No NestNet fits in this record."
    goal = GOALS["nestnet"]
    rows = _rows(record)
    parts = []
    for budget in sorted({s for _, s in rows}):
        reached, missed, first, not_first = [], [], [], []
        for mesh, steps in rows:
            mine = summary.get((mesh, steps, "nestnet"))
            if steps != budget or not mine:
                continue
            (reached if mine["iou"] >= goal else missed).append(f"{mesh} {mine['iou']:.4f}")
            others = {m: summary[(mesh, steps, m)]["iou"] for m in models
                      if m != "nestnet" and (mesh, steps, m) in summary}
            if others:
                best_other = max(others, key=others.get)
                if mine["iou"] >= others[best_other]:
                    first.append(f"{mesh} ({best_other} {others[best_other]:.4f})")
                else:
                    not_first.append(f"{mesh} ({best_other} {others[best_other]:.4f})")
        if not reached and not missed:
            continue
        part = f"at {budget} steps NestNet reaches IoU ≥ {goal} on " + (", ".join(reached) if reached else "no mesh")
        if missed:
            part += ", misses it on " + ", ".join(missed)
        if first:
            part += "; it comes first on " + ", ".join(first)
        if not_first:
            part += ("; it is not first" if not first else ", not") + " on " + ", ".join(not_first)
        parts.append(part)
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def results_section(record: dict[str, Any]) -> list[str]:
    """The Markdown section of one record (the benchmark and ``benchmarks/report.py`` both write it)."""
    summary, models = _summary(record), _ordered_models(record)
    base = models[0] if models else None
    commands = record.get("commands") or [record.get("command", "?")]
    lines = [
        SECTION_TITLE, "",
        "Produced by: " + " then ".join(f"`{c}`" for c in commands) + f" on {record.get('date', '?')}, torch "
        f"{record.get('torch', '?')}, {record.get('cpu_count', '?')} cores, {record.get('threads', '?')} thread(s), "
        f"allocator {record.get('allocator', '?')}, load average "
        f"{', '.join(f'{x:.1f}' for x in record.get('load_average', []))} (a shared machine); "
        f"{record.get('total_seconds', 0) / 60:.0f} min in all.",
        "",
        f"What was done: each mesh voxelised at {record.get('resolution')}³ over its tight bounding box (cubic "
        "cells, as `benchmarks.cases`; shapes below), every model fitted by `reconstruct.tasks.fit_occupancy` at "
        "the task's defaults (network, learning rate, 65,536 random voxels per step, lr decay) for the steps "
        f"shown (the task's default is {record.get('task_default_steps')}), one fit per subprocess, on the CPU at "
        "one thread; the IoU is evaluated once, on the final iterate (`eval_every = steps`), at threshold 0.5 on "
        "the whole grid. ms/step: median training step (first and last steps excluded: compile, renderings). "
        "Peak: the fit process's maximum RSS. Ratios are to NestNet's.",
        "",
        "**" + headline(record) + "**",
        "",
        "| mesh | grid (voxels) | steps | seeds | " + " | ".join(f"{m} IoU" for m in models) + " | "
        + " | ".join(f"{m} ms/step" for m in models) + " | " + " | ".join(f"{m} peak MiB" for m in models) + " |",
        "|" + "---|" * (4 + 3 * len(models)),
    ]
    for mesh, steps in _rows(record):
        info = record.get("meshes", {}).get(mesh, {})
        grid = "×".join(str(s) for s in info.get("shape", [])) + (f" ({info['voxels'] / 1e6:.1f} M)"
                                                                  if info.get("voxels") else "")
        cells = [summary.get((mesh, steps, m)) for m in models]
        ref = summary.get((mesh, steps, base))
        seeds = sorted({s for c in cells if c for s in c["seeds"]})
        lines.append(f"| {mesh} | {grid} | {steps} | {','.join(map(str, seeds))} | "
                     + " | ".join(_iou_cell(c) for c in cells) + " | "
                     + " | ".join(_ratio_cell(c, ref, "ms_per_step") for c in cells) + " | "
                     + " | ".join(_ratio_cell(c, ref, "peak_rss_mib") for c in cells) + " |")
    runs = record.get("runs", [])
    if runs:
        lines.append("")
        for budget in sorted({int(r["steps"]) for r in runs}):
            per_model = {m: [r for r in runs if r["model"] == m and int(r["steps"]) == budget] for m in models}
            parts = [f"{m} {statistics.fmean(r['seconds'] for r in rs):.0f} s (training "
                     f"{statistics.fmean(r['train_seconds'] for r in rs):.0f} s, whole-grid renderings and IoU "
                     f"{statistics.fmean(r['eval_seconds'] for r in rs):.0f} s)" for m, rs in per_model.items() if rs]
            lines.append(f"- Time per fit at {budget} steps (mean over its meshes): " + "; ".join(parts) + ".")
        per_voxel = {m: [1e6 * r["eval_seconds"] / (3 * r["voxels"]) for r in runs if r["model"] == m] for m in models}
        steps_range = {m: [r["ms_per_step"] for r in runs if r["model"] == m] for m in models}
        lines.append("- Each fit renders the whole grid three times at its end (the last step's evaluation, the "
                     "best-iterate snapshot, the final output): " + ", ".join(
                         f"{m} {min(v):.1f}–{max(v):.1f} µs a voxel a rendering" for m, v in per_voxel.items() if v)
                     + ". At the task's default `eval_every` (steps // 20) a fit would render it 22 times.")
        lines.append("- ms/step over the fits (the same batch of 65,536 voxels each): " + ", ".join(
            f"{m} {min(v):.0f}–{max(v):.0f}" for m, v in steps_range.items() if v)
                     + " — the spread is the shared machine's load, not the mesh.")
        vox = [info.get("voxelise_seconds", 0.0) for info in record.get("meshes", {}).values()]
        if vox:
            lines.append(f"- Voxelising at {record.get('resolution')}³ (embree ray parity, three axes) took "
                         f"{min(vox):.1f}–{max(vox):.1f} s a mesh.")
    lines.append("")
    return lines


def write_section(path: Path, section: list[str]) -> None:
    """Replace the section :data:`SECTION_TITLE` in ``path`` (up to the next heading), or append it."""
    from reconstruct.app.files import atomic_write_text

    path = Path(path)
    text = path.read_text() if path.exists() else ""
    block = "\n".join(section).rstrip() + "\n\n"
    pattern = re.compile(r"^" + re.escape(SECTION_TITLE) + r"\n.*?(?=^#{1,3} |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block
    atomic_write_text(path, text.rstrip() + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == _WORKER_FLAG:
        _worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256, help="cells along each mesh's longest side")
    parser.add_argument("--meshes", default="all", help=f"comma-separated, or 'all' ({','.join(MESHES)})")
    parser.add_argument("--models", default="nestnet,siren", help="comma-separated networks, or 'all'")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=None, help="steps of every fit (default: the task's, 500)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of each fit")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the folder holding meshes/")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--report", default=str(REPORT), help="RESULTS.md to write the section to ('': none)")
    parser.add_argument("--in-process", action="store_true",
                        help="fit in this process (peak memory is then the process's, not each fit's)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from reconstruct.app.runtime import reexec_with_tcmalloc, tune_allocator

    reexec_with_tcmalloc()
    tune_allocator()
    import monai_nets

    meshes = list(MESHES) if args.meshes == "all" else [m.removesuffix(".obj") for m in args.meshes.split(",") if m]
    models = list(monai_nets.available_networks()) if args.models == "all" else [m for m in args.models.split(",")
                                                                                  if m]
    unknown = sorted(set(models) - set(monai_nets.available_networks()))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(monai_nets.available_networks())}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    record = run_benchmark(resolution=args.resolution, meshes=meshes, models=models, seeds=seeds, steps=args.steps,
                           out=args.out, data_dir=args.data_dir, threads=args.threads, isolate=not args.in_process)
    print()
    print(table(record))
    print(headline(record))
    if args.report:
        write_section(Path(args.report), results_section(record))
    print(f"total {record.get('total_seconds', 0) / 60:.1f} min; wrote {args.out}"
          + (f" and {args.report}" if args.report else ""))


if __name__ == "__main__":
    main()
