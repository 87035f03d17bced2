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
the whole grid once at its end (the last step's evaluation, which the fit reuses for the best iterate and
the output), counted in ``eval_seconds``; fits made before that reuse (the seed-0 fits of six models)
rendered it three times.

Reported per fit: IoU at threshold 0.5 of the final iterate on the WHOLE voxel grid (the task's metric,
checked here against a direct count), the median milliseconds of a training step (steps 2 to N − 1:
the first carries the fused activation's torch.compile, the last the renderings), the peak resident
memory of the process that ran the fit (``ru_maxrss``; the process holds only the voxel volume, torch
and the fit) and the seconds of each part.  Every fit runs in its own subprocess, so the peak memory
is that fit's alone; the volumes are voxelised once in the parent.  One thread, tcmalloc when
installed, denormals flushed, like the other CPU benchmarks.  The JSON is written after every fit and
fits already in it (same mesh, model, seed, steps) are skipped, so an interrupted run continues where
it stopped; a fit at a learning rate that is no longer the task's default (the occupancy sweep of
``benchmarks/sweep_defaults.py``) is fitted again and replaces it (the old one moves to
``superseded_runs``), and the report names the models still at an older rate.  Commands that produced
the committed results::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes all --models nestnet,siren --seeds 0 --steps 60
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes spot --models nestnet,siren --seeds 0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes lucy --models nestnet --seeds 0

(60 steps for every mesh and both models, then the task's default 500 steps on spot and, NestNet only, on
lucy: the 256³ renderings make each fit take 2-10 min on one thread here, 49 min for the first two).
WIRE and ReLU+PE, and seeds 1 and 2 of every model, then ran as two processes side by side, each
writing its own record, merged into the committed one with ``--merge``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes all --steps 60 --report '' --models wire --seeds 0,1 --out /tmp/occ/a.json
    (and --models nestnet,siren,finer,gauss,ffn,mfn,relu_pe --seeds 1, the same --out; in the second
    process --models relu_pe --seeds 0,2 then the other seven models --seeds 2, --out /tmp/occ/b.json)
    .venv/bin/python benchmarks/bench_occupancy.py --merge /tmp/occ/a.json /tmp/occ/b.json

When the occupancy learning-rate sweep changed six models' defaults, NestNet (60 steps, seeds 0-2, then
the task's 500 steps on four meshes) and SIREN (60 steps, seeds 0-2) were fitted again at the new rates,
two processes side by side, and merged the same way; the fits they replace moved to ``superseded_runs``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_occupancy.py --threads 1 --resolution 256 \
        --meshes all --models nestnet --seeds 0,1,2 --steps 60 --report '' --out /tmp/occ/n.json
    (then --meshes lucy,armadillo,dragon,bunny --models nestnet --seeds 0 at the default steps, the same
    --out; in the second process --models siren --seeds 0,1,2 --steps 60, --out /tmp/occ/s.json)
    .venv/bin/python benchmarks/bench_occupancy.py --merge /tmp/occ/n.json /tmp/occ/s.json

It writes ``benchmarks/results/occupancy_256_cpu.json`` and (re)writes the section
:data:`SECTION_TITLE` of ``benchmarks/RESULTS.md`` (``benchmarks/report.py`` renders the same section
from the JSON when it regenerates the report).
"""

from __future__ import annotations

import argparse
import json
import os
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.occupancy_report import (  # noqa: E402  (the report's pieces, re-exported for callers)
    GOALS,
    SECTION_TITLE,
    _key,
    headline,
    results_section,
    table,
    write_section,
)

__all__ = ["GOALS", "SECTION_TITLE", "fit_once", "headline", "merge_records", "results_section", "run_benchmark",
           "table", "voxelise", "write_section"]

RESULT = ROOT / "benchmarks" / "results" / "occupancy_256_cpu.json"
REPORT = ROOT / "benchmarks" / "RESULTS.md"
DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()
MESHES = ("armadillo", "bunny", "dragon", "lucy", "spot")
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

    from reconstruct.app.runtime import allocator_in_use
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
        "allocator": allocator_in_use(),  # per fit: records merged from several machines may differ
        "final_loss": result.history[-1]["loss"] if result.history else None,
        # whole-grid renderings in eval_seconds: the last step's evaluation, reused for the best iterate
        # and the output when it is the best (reconstruct.fit); a best iterate of its own renders again
        "renderings": 1 if result.best is None or result.best.step == result.steps else 2,
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

    from benchmarks.common import add_replacing, at_default_rate, read_json, write_json
    from reconstruct.app.runtime import allocator_in_use
    from reconstruct.tasks import FIT_OCCUPANCY

    out = Path(out)
    steps = steps or FIT_OCCUPANCY.default_steps
    record: dict[str, Any] = read_json(out) if out.exists() else {}
    if record and record.get("resolution") != resolution:
        raise ValueError(f"{out} holds fits at resolution {record.get('resolution')}, not {resolution}; "
                         "pass another --out")
    command = command or _this_command()
    _name_allocators(record)
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
    record.setdefault("runs", [])
    # a fit at a rate that is no longer the task's default is not done: fitting again replaces it
    done = {_key(r) for r in record["runs"] if at_default_rate(r, "fit_occupancy")}
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
                add_replacing(record, run, _key)
                done.add(_key(run))
                record["total_seconds"] = seconds_before + time.perf_counter() - start
                record["load_average"] = list(os.getloadavg())
                write_json(out, record)
                log(f"  {model:8s} seed {seed}: IoU {run['iou']:.4f}  {run['ms_per_step']:.0f} ms/step  "
                    f"peak {run['peak_rss_mib']:.0f} MiB  train {run['train_seconds']:.0f} s + eval "
                    f"{run['eval_seconds']:.0f} s  ({run['seconds']:.0f} s)")
            del volume
    return record


def _name_allocators(record: dict[str, Any]) -> dict[str, Any]:
    """Give fits from before runs named their allocator the record's (before a newer run overwrites it)."""
    for run in record.get("runs", []):
        run.setdefault("allocator", record.get("allocator"))
    return record


def _this_command() -> str:
    """This process's command line as the record writes it (the thread setting included)."""
    return ("OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " .venv/bin/python "
            "benchmarks/bench_occupancy.py " + " ".join(sys.argv[1:]))


def merge_records(out: Path, sources: Sequence[Path], command: str | None = None) -> dict[str, Any]:
    """Add the fits of ``sources`` (records of this benchmark run side by side) to the record ``out``.

    Fits ``out`` already holds (same mesh, model, seed, steps) are kept; the resolutions must agree. The
    commands are appended in order, then ``command`` (the merge's own, so the list reproduces ``out``);
    ``total_seconds`` becomes the sum of every record's (process time,
    not wall-clock: the sources ran at the same time) and a note in the record says so.
    """
    from benchmarks.common import add_replacing, at_default_rate, read_json, write_json

    record: dict[str, Any] = read_json(out) if Path(out).exists() else {}
    _name_allocators(record)
    # as in a run: a fit at a rate that is no longer the default gives way to a source's fit at the default
    done = {_key(r) for r in record.get("runs", []) if at_default_rate(r, "fit_occupancy")}
    merged = 0
    for source in sources:
        other = _name_allocators(read_json(source))
        if record and other.get("resolution") != record.get("resolution"):
            raise ValueError(f"{source} holds fits at resolution {other.get('resolution')}, {out} at "
                             f"{record.get('resolution')}; merge records of one resolution")
        if not record:
            record = {k: v for k, v in other.items() if k not in ("runs", "commands", "total_seconds")}
        record.setdefault("meshes", {}).update(other.get("meshes", {}))
        commands = record.setdefault("commands", [])
        commands += [c for c in other.get("commands", []) if c not in commands]
        record.setdefault("runs", [])
        for run in other.get("runs", []):
            at_default = at_default_rate(run, "fit_occupancy")
            held = {_key(r) for r in record["runs"]}
            if _key(run) in done or (not at_default and _key(run) in held):
                continue
            add_replacing(record, run, _key)
            if at_default:
                done.add(_key(run))
            merged += 1
        record["total_seconds"] = float(record.get("total_seconds", 0.0)) + float(other.get("total_seconds", 0.0))
        if other.get("load_average"):
            record["load_average"] = other["load_average"]
    if command and command not in record.setdefault("commands", []):
        record["commands"].append(command)
    note = (f"{len(sources)} record(s) run side by side were merged in (`--merge`): the minutes in all add up "
            "each process's time, not the wall-clock.")
    if sources and note not in record.setdefault("notes", []):
        record["notes"].append(note)
    write_json(out, record)
    print(f"merged {merged} fit(s) from {len(sources)} record(s) into {out}")
    return record


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
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RECORD",
                        help="fit nothing: add the fits of these records (run side by side) to --out")
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
    if args.merge:
        record = merge_records(args.out, args.merge, command=_this_command())
    else:
        record = run_benchmark(resolution=args.resolution, meshes=meshes, models=models, seeds=seeds, steps=args.steps,
                               out=args.out, data_dir=args.data_dir, threads=args.threads,
                               isolate=not args.in_process)
    print()
    print(table(record))
    print(headline(record))
    if args.report:
        write_section(Path(args.report), results_section(record))
    print(f"total {record.get('total_seconds', 0) / 60:.1f} min; wrote {args.out}"
          + (f" and {args.report}" if args.report else ""))


if __name__ == "__main__":
    main()
