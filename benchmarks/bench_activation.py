"""Train-step speed and peak memory of NestNet's nested activation: naive vs fused vs a ReLU MLP.

One train step = forward + backward + Adam on 65,536 coordinates (a 256² image), 2 × 256 hidden,
r = 1 subnetwork.  Models, all of identical shapes:

* ``relu``        NestNet height 1 — a ReLU MLP, the matmul floor;
* ``fused``       NestNet height 2 with the fused activation (default backend: compiled when large);
* ``fused-eager`` the same kernels without ``torch.compile``;
* ``naive``       the reference that materialises the (N, 256, 3) hidden tensor.

Every (allocator, model) pair runs in its own process so that peak RSS is the model's own and the
allocator can be chosen at start-up: ``system`` (glibc defaults), ``glibc-tuned`` (mallopt, see
``reconstruct.app.runtime``) and ``tcmalloc`` (LD_PRELOAD, when installed).  On CUDA only ``system``
runs and peak memory is ``torch.cuda.max_memory_allocated``.

Command that produced the committed results::

    .venv/bin/python benchmarks/bench_activation.py --device cpu
    .venv/bin/python benchmarks/bench_activation.py --device cuda     # on the GPU machine

Targets (CPU): fused / relu <= 1.2 and naive / fused >= 3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("relu", "fused", "fused-eager", "naive")


def _child(model: str, device: str, points: int, steps: int, warmup: int, allocator: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    import monai_nets
    from reconstruct.app.runtime import allocator_in_use, tune_allocator

    if allocator == "glibc-tuned":
        tune_allocator()
    torch.manual_seed(0)
    kwargs = {"relu": {"height": 1}, "fused": {}, "fused-eager": {}, "naive": {"fused": False}}[model]
    monai_nets.set_fused_backend("eager" if model == "fused-eager" else "auto")
    net = monai_nets.NestNet(2, 1, hidden_channels=(256, 256), num_subnets=1, **kwargs).to(device)
    x = (torch.rand(points, 2) * 2 - 1).to(device)
    y = torch.rand(points, 1).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    )
    return {
        "model": model,
        "allocator": allocator_in_use(),
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "peak_mb": peak,
        "peak_kind": "cuda max_memory_allocated" if device == "cuda" else "RSS growth during the steps",
        "steps_timed": steps,
    }


def _run_child(model: str, allocator: str, args) -> dict:
    env = dict(os.environ, NESTNET_ALLOCATOR="system", _NESTNET_REEXEC="1")
    if allocator == "tcmalloc":
        sys.path.insert(0, str(ROOT))
        from reconstruct.app.runtime import tcmalloc_path

        lib = tcmalloc_path()
        if lib is None:
            return {"model": model, "allocator": "tcmalloc", "skipped": "libtcmalloc-minimal4 not installed"}
        env["LD_PRELOAD"] = lib
    cmd = [sys.executable, __file__, "--child", model, "--allocator", allocator, "--device", args.device,
           "--points", str(args.points), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--points", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--allocators", default=None, help="comma list; default all on CPU, system on CUDA")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--allocator", default="system", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.device, args.points, args.steps, args.warmup, args.allocator)))
        return

    allocators = (args.allocators or ("system,glibc-tuned,tcmalloc" if args.device == "cpu" else "system")).split(",")
    models = args.models.split(",")
    import torch

    rows = []
    for allocator in allocators:
        for model in models:
            row = _run_child(model, allocator, args)
            row["allocator_requested"] = allocator
            rows.append(row)
            if "skipped" in row:
                print(f"{allocator:12s} {model:12s} skipped: {row['skipped']}", flush=True)
            else:
                print(f"{allocator:12s} {model:12s} {row['median_ms']:9.1f} ms/step   peak {row['peak_mb']:8.0f} MB",
                      flush=True)

    def ms(alloc, model):
        for r in rows:
            if r["allocator_requested"] == alloc and r["model"] == model and "median_ms" in r:
                return r["median_ms"]
        return None

    ratios = {}
    print("\nratios (same allocator, measured side by side in this run):")
    for alloc in allocators:
        relu, fused, naive, eager = ms(alloc, "relu"), ms(alloc, "fused"), ms(alloc, "naive"), ms(alloc, "fused-eager")
        r = {}
        if relu and fused:
            r["fused/relu"] = fused / relu
        if naive and fused:
            r["naive/fused"] = naive / fused
        if eager and fused:
            r["fused-eager/fused"] = eager / fused
        ratios[alloc] = r
        print(f"  {alloc:12s} " + "  ".join(f"{k} = {v:.2f}" for k, v in r.items()))
    if "system" in allocators:
        print("allocator speed-up over glibc defaults (same model):")
        for alloc in allocators:
            if alloc == "system":
                continue
            ups = {m: ms("system", m) / ms(alloc, m) for m in models if ms("system", m) and ms(alloc, m)}
            ratios.setdefault("allocator_speedup", {})[alloc] = ups
            print(f"  {alloc:12s} " + "  ".join(f"{m}: {v:.2f}x" for m, v in ups.items()))

    record = {
        "benchmark": "bench_activation",
        "command": " ".join([Path(sys.executable).name, "benchmarks/bench_activation.py", *sys.argv[1:]]),
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "points": args.points,
        "rows": rows,
        "ratios": ratios,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    from benchmarks.common import write_json

    path = Path(args.out) / f"activation_{args.device}.json"
    write_json(path, record)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
