"""Batch throughput: items per minute on the embedded Dask LocalCluster against a plain sequential loop.

The same tiny CT items (rotated Shepp-Logan phantoms, 32 x 32, 45 projections, generated into a temporary
folder by :func:`reconstruct.batch.write_phantom_sinograms`) are reconstructed three ways, each into a fresh
output folder so nothing is skipped:

* ``sequential``        ``run_batch(..., scheduler="sequential")``: one process, torch's default threads;
* ``sequential-1t``     the same loop with ``torch.set_num_threads(1)`` (what each cluster worker uses);
* ``local``             ``run_batch(..., scheduler="local", n_workers=W)``: W worker processes, one
                        thread each; the cluster start-up (processes, imports) is part of the time.

Items per minute = items / wall seconds of the whole ``run_batch`` call. The ratio printed is
``local / sequential``. On a machine shared with other jobs the numbers are noisy: the load average
before and after is stored with them.

Command that produced the committed result (``benchmarks/results/bench_batch.json``)::

    .venv/bin/python benchmarks/bench_batch.py --items 8 --steps 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=8, help="number of CT items")
    parser.add_argument("--size", type=int, default=32, help="phantom side in pixels")
    parser.add_argument("--angles", type=int, default=45, help="projections per sinogram")
    parser.add_argument("--steps", type=int, default=200, help="optimisation steps per item")
    parser.add_argument("--hidden", type=int, default=64, help="hidden width of the 2-layer NestNet")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_batch.json")
    args = parser.parse_args(argv)
    if argv is None:  # the sequential runs get the allocator the embedded workers get (tcmalloc if installed)
        from reconstruct.app.runtime import reexec_with_tcmalloc

        reexec_with_tcmalloc()

    import torch

    from reconstruct.batch import run_batch, write_phantom_sinograms
    from reconstruct.io import write_json

    params = {"steps": args.steps, "model": "nestnet", "model_kwargs": {"hidden_channels": [args.hidden] * 2},
              "device": "cpu"}
    runs: dict[str, dict] = {}
    load_before = _load()
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench_batch-") as tmp:
        manifest = write_phantom_sinograms(Path(tmp) / "data", count=args.items, size=args.size,
                                           n_angles=args.angles, seed=0)
        plan = [("sequential", "sequential", None, default_threads),
                ("sequential-1t", "sequential", None, 1),
                ("local", "local", args.workers, default_threads)]
        for name, scheduler, workers, threads in plan:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            summary = run_batch("ct", [manifest], Path(tmp) / name, params=params, scheduler=scheduler,
                                n_workers=workers, progress=False)
            wall = time.perf_counter() - start
            torch.set_num_threads(default_threads)
            if summary.n_ok != args.items:
                print(f"{name}: {summary.n_failed} items failed: {[r.reason for r in summary.failed]}")
                return 1
            psnrs = [r.metrics.get("psnr", float("nan")) for r in summary.items]
            runs[name] = {
                "scheduler": scheduler,
                "workers": workers or 1,
                "torch_threads": threads if scheduler == "sequential" else 1,
                "allocator": sorted({json.loads(Path(r.record).read_text()).get("allocator", "?")
                                     for r in summary.items}),
                "seconds": round(wall, 3),
                "items_per_minute": round(60.0 * args.items / wall, 2),
                "mean_item_seconds": round(sum(r.seconds for r in summary.items) / args.items, 3),
                "mean_psnr_db": round(sum(psnrs) / len(psnrs), 2),
                "psnr_db_per_item": [round(v, 2) for v in psnrs],
            }
            print(f"{name:14s} {wall:7.1f} s  {runs[name]['items_per_minute']:6.1f} items/min  "
                  f"mean PSNR {runs[name]['mean_psnr_db']:.2f} dB")
    ratio = runs["local"]["items_per_minute"] / runs["sequential"]["items_per_minute"]
    ratio_1t = runs["local"]["items_per_minute"] / runs["sequential-1t"]["items_per_minute"]
    print(f"local cluster ({args.workers} workers) / sequential loop: {ratio:.2f}x "
          f"(vs the one-thread loop: {ratio_1t:.2f}x)")
    result = {
        "benchmark": "bench_batch",
        "command": "benchmarks/bench_batch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "task": "ct",
        "items": args.items,
        "size": args.size,
        "n_angles": args.angles,
        "params": params,
        "runs": runs,
        "ratio_local_vs_sequential": round(ratio, 3),
        "ratio_local_vs_sequential_1t": round(ratio_1t, 3),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_default_threads": default_threads,
                    "load_average_before": load_before, "load_average_after": _load()},
        "note": "shared machine: other jobs were running, the numbers are noisy",
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
