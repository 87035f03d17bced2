"""Projector throughput and peak memory: ours (pure PyTorch) beside scikit-image's radon / iradon.

Cases (each in its own process, so peak RSS is the case's own; ``ms`` is the best of ``--repeat``):

* parallel beam, ``N``² image × ``N`` angles (``--size``; circle=False, i.e. rays across the whole
  padded square, the detector ``ceil(sqrt 2 N)`` bins as scikit-image's): forward, exact adjoint and
  FBP at each of ``--batches``, and ``skimage.transform.radon`` / ``iradon`` (with and without its
  filter: FBP and plain back-projection) at batch 1 (scikit-image has no batch: its batch-16 time is
  16 × batch 1). Ours is Joseph's projector applied as a cached sparse matrix: ``first call`` is the
  first call's time, which builds the matrix (and, for the adjoint, its transpose) once per geometry;
  ``ms`` is the best of ``--repeat`` calls after it;
* fan beam (flat detector) forward at the same size, batch 1;
* cone beam, ``M``³ volume × ``V`` views on an ``M × M`` panel (``--cone 64 90`` on a 2-core CPU;
  the issue's 256³ × 360 is ``--cone 256 360`` on a GPU): forward, adjoint, FDK.

Ratios printed and stored are scikit-image time / ours (> 1: ours faster).

Command that produced the committed results (one thread, like scikit-image, on a 2-core CPU that
other jobs shared while it ran: both sides' absolute times are inflated, the ratios less so)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_projectors.py --device cpu --size 512 \
        --batches 1 16 --cone 64 90 --out benchmarks/results/projectors_cpu.json

On a GPU: ``--device cuda --size 512 --batches 1 16 256 --cone 256 360`` (torch-radon's published T4 figure:
0.61 ms per 512² × 512-angle sinogram at batch 256).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, repeat: int, sync) -> float:
    best = float("inf")
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def run_case(case: dict) -> dict:
    """One measurement, in this process: ``{"ms": ..., "peak_rss_mb" | "peak_cuda_mb": ...}``."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from reconstruct.projectors import ConeBeam3D, FanBeam2D
    from reconstruct.radon import Radon

    device = torch.device(case["device"])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n, batch, kind, op_name = case["n"], case["batch"], case["kind"], case["op"]
    rng = np.random.default_rng(0)
    if kind == "skimage":
        from skimage.transform import iradon, radon

        theta = np.linspace(0.0, 180.0, n, endpoint=False)
        image = rng.random((n, n))
        sino = radon(image, theta, circle=False)
        fn = {"forward": lambda: radon(image, theta, circle=False),
              "fbp": lambda: iradon(sino, theta, circle=False, output_size=n),
              "adjoint": lambda: iradon(sino, theta, circle=False, output_size=n, filter_name=None)}[op_name]
        setup_ms, ms = None, _time(fn, case["repeat"], sync)
    else:
        with torch.no_grad():
            if kind == "parallel":
                angles = np.linspace(0, np.pi, n, endpoint=False)
                op = Radon(n, angles, det_count=int(np.ceil(np.sqrt(2) * n)), backend="torch").to(device)
                shape = (batch, n, n)
            elif kind == "fan":
                angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
                op = FanBeam2D((n, n), angles, int(1.5 * n), 2.0 * n, 4.0 * n, 1.2).to(device)
                shape = (batch, n, n)
            else:
                m, views = n, case["views"]
                angles = np.linspace(0, 2 * np.pi, views, endpoint=False)
                op = ConeBeam3D((m, m, m), angles, (m, m), 3.0 * m, 6.0 * m, 2.0).to(device)
                shape = (batch, m, m, m)
            x = torch.rand(shape, device=device)
            # random projections: the speed does not depend on the values, and no forward matrix is built
            # for the adjoint / FBP cases beyond what they need themselves
            y = torch.rand((batch, *getattr(op, "projector", op).projection_shape), device=device)
            if op_name == "forward":
                def fn():
                    return op(x)
            elif op_name == "adjoint":
                adjoint = op.backprojection

                def fn():
                    return adjoint(y)
            else:
                def fn():
                    return op.fbp(y, circle=False) if kind == "parallel" else op.fbp(y)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            setup_ms = _time(fn, 1, sync)  # the first call builds (and caches) the sparse matrices
            ms = _time(fn, case["repeat"], sync)
    out = {"ms": ms, "setup_ms": setup_ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256, help="N of the N² image × N angles cases")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--cone", type=int, nargs=2, default=[64, 90], metavar=("M", "VIEWS"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0

    n = args.size
    cases = []
    for b in args.batches:
        for op in ("forward", "adjoint", "fbp"):
            cases.append({"kind": "parallel", "op": op, "n": n, "batch": b})
    if args.device == "cpu":
        cases += [{"kind": "skimage", "op": op, "n": n, "batch": 1} for op in ("forward", "adjoint", "fbp")]
    cases.append({"kind": "fan", "op": "forward", "n": n, "batch": 1})
    m, views = args.cone
    cases += [{"kind": "cone", "op": op, "n": m, "views": views, "batch": 1} for op in ("forward", "adjoint", "fbp")]
    results = []
    for case in cases:
        case = {**case, "device": args.device, "repeat": 1 if case["batch"] > 1 else args.repeat}
        proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                              text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        row = {**case, **json.loads(proc.stdout.strip().splitlines()[-1])}
        row["ms_per_item"] = row["ms"] / row["batch"]
        results.append(row)
        setup = "" if row["setup_ms"] is None else f"  first call {row['setup_ms']:9.1f} ms"
        print(f"{row['kind']:9s} {row['op']:8s} n={row['n']:4d} batch={row['batch']:3d}  "
              f"{row['ms']:10.1f} ms  ({row['ms_per_item']:9.1f} ms/item){setup}  peak RSS "
              f"{row['peak_rss_mb']:7.0f} MB", flush=True)
    sk = {r["op"]: r["ms"] for r in results if r["kind"] == "skimage"}
    ratios = {}
    for r in results:
        if r["kind"] == "parallel" and r["op"] in sk:
            ratios[f"{r['op']}_batch{r['batch']}"] = sk[r["op"]] / r["ms_per_item"]
    for key, value in ratios.items():
        print(f"skimage / ours, {key}: {value:.2f}x")
    record = {"command": " ".join(["benchmarks/bench_projectors.py", *(argv or sys.argv[1:])]),
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "results": results, "skimage_over_ours": ratios}
    if args.out is not None:
        sys.path.insert(0, str(ROOT))
        from benchmarks.common import write_json  # strict JSON, written atomically

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
