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

``--small`` (issue 12): the point counts of 2-D CT fits, where ``auto`` decides whether compiling pays.
NestNet 2 × 256 with the library default r = 2 (``get_network("nestnet", spatial_dims=2, ...)``),
one thread, train steps at 1,024 / 4,096 / 9,216 / 16,384 / 65,536 points: fused eager vs fused
compiled vs a plain torch ReLU MLP of the same width on the same Fourier features, all in one
process, interleaved rounds, medians of the per-round ratios.  The one-off compile time is measured
in fresh processes (cold: an empty Inductor cache; warm: the cache that run left), with the number of
graphs compiled while the point count changes (train steps and ``no_grad`` renders of other sizes)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_activation.py --small

writes ``benchmarks/results/activation_small_cpu.json``.
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


# --------------------------------------------------------------------------- --small (issue 12)
SMALL_POINTS = (1024, 4096, 9216, 16384, 65536)
SMALL_MODELS = ("relu-mlp", "eager", "compiled")
#: Point counts that follow the first compiled step in the compile child: train steps of other sizes,
#: then ``no_grad`` renders (the fit loop renders in chunks); none may compile a new graph.
SHAPE_CHANGES_TRAIN = (4096, 16384, 1024, 65536, 777, 9216)
SHAPE_CHANGES_RENDER = (65536, 3000, 9216, 100)


def _small_setup(points: int, seed: int = 0):
    """The three models of ``--small`` on one batch: name -> (net, optimizer, fused backend or None)."""
    sys.path.insert(0, str(ROOT))
    import torch
    from torch import nn

    import monai_nets
    from monai_nets.encodings import DEFAULT_NUM_FREQUENCIES, FourierFeatures

    models = {}
    for name in SMALL_MODELS:
        torch.manual_seed(seed)
        if name == "relu-mlp":
            enc = FourierFeatures(2, DEFAULT_NUM_FREQUENCIES, scale=0.25)
            net = nn.Sequential(enc, nn.Linear(enc.out_features, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                nn.Linear(256, 1))
            backend = None
        else:
            net = monai_nets.get_network("nestnet", spatial_dims=2, out_channels=1)
            backend = "eager" if name == "eager" else "compile"
        models[name] = (net, torch.optim.Adam(net.parameters(), lr=1e-3), backend)
    return models


def _train_step(net, opt, backend, x, y) -> None:
    import monai_nets

    if backend is not None:
        monai_nets.set_fused_backend(backend)
    opt.zero_grad(set_to_none=True)
    loss = ((net(x) - y) ** 2).mean()
    loss.backward()
    opt.step()


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _small_compile_child(points: int) -> dict:
    """One fresh process: the first compiled train step (compile + step) and what follows it."""
    sys.path.insert(0, str(ROOT))
    import torch

    from reconstruct.app.runtime import tune_allocator

    torch.set_num_threads(1)
    tune_allocator()
    models = _small_setup(points)
    net, opt, _ = models["compiled"]
    eager_net, eager_opt, _ = models["eager"]
    x, y = torch.rand(points, 2) * 2 - 1, torch.rand(points, 1)
    _train_step(eager_net, eager_opt, "eager", x, y)  # allocator and autograd warm, so the first step is compile
    t0 = time.perf_counter()
    _train_step(net, opt, "compile", x, y)
    first = time.perf_counter() - t0
    graphs_first = _graphs_compiled()
    steady, steady_eager = [], []
    for _ in range(5):
        for name, runs in (("compile", steady), ("eager", steady_eager)):
            t0 = time.perf_counter()
            _train_step(*((net, opt) if name == "compile" else (eager_net, eager_opt)), name, x, y)
            runs.append(time.perf_counter() - t0)
    changes = []
    for n in SHAPE_CHANGES_TRAIN:
        t0 = time.perf_counter()
        _train_step(net, opt, "compile", torch.rand(n, 2) * 2 - 1, torch.rand(n, 1))
        changes.append({"kind": "train", "points": n, "s": time.perf_counter() - t0, "graphs": _graphs_compiled()})
    with torch.no_grad():
        for n in SHAPE_CHANGES_RENDER:
            t0 = time.perf_counter()
            net(torch.rand(n, 2) * 2 - 1)
            changes.append({"kind": "render", "points": n, "s": time.perf_counter() - t0, "graphs": _graphs_compiled()})
    step = statistics.median(steady)
    return {
        "points": points,
        "first_step_s": first,
        "steady_step_s": step,
        "steady_eager_step_s": statistics.median(steady_eager),
        "compile_s": first - step,
        "graphs_after_first_step": graphs_first,
        "graphs_after_shape_changes": _graphs_compiled(),
        "shape_changes": changes,
    }


def _run_compile_child(points: int, cache_dir: str) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir, OMP_NUM_THREADS="1", NESTNET_ALLOCATOR="")
    cmd = [sys.executable, __file__, "--small-compile-child", str(points)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _small_timings(points_list, rounds: int, cell_s: float) -> list[dict]:
    """Per point count: median ms per train step of each model and the medians of per-round ratios."""
    import torch

    rows = []
    for points in points_list:
        models = _small_setup(points)
        x, y = torch.rand(points, 2) * 2 - 1, torch.rand(points, 1)
        est = {}
        for name, (net, opt, backend) in models.items():
            for _ in range(2):  # the compiled model's first step compiles (once per process: dynamic shapes)
                _train_step(net, opt, backend, x, y)
            t0 = time.perf_counter()
            _train_step(net, opt, backend, x, y)
            est[name] = time.perf_counter() - t0
        per_round = {name: [] for name in models}
        for r in range(rounds):
            order = list(models)[r % 3:] + list(models)[:r % 3]  # rotate who goes first
            for name in order:
                net, opt, backend = models[name]
                k = max(1, round(cell_s / est[name]))
                t0 = time.perf_counter()
                for _ in range(k):
                    _train_step(net, opt, backend, x, y)
                per_round[name].append((time.perf_counter() - t0) / k)

        def ratio(a, b, runs=per_round):
            return statistics.median(pa / pb for pa, pb in zip(runs[a], runs[b]))

        row = {
            "points": points,
            "activation_numel_per_call": points * 256 // 2,  # r = 2: one kernel call per 128-channel block
            **{f"{name}_ms": 1000 * statistics.median(v) for name, v in per_round.items()},
            "compiled/eager": ratio("compiled", "eager"),
            "compiled/relu": ratio("compiled", "relu-mlp"),
            "eager/relu": ratio("eager", "relu-mlp"),
            "rounds": rounds,
            "per_round_ms": {name: [round(1000 * t, 2) for t in v] for name, v in per_round.items()},
        }
        rows.append(row)
        print(f"{points:7d} pts  relu {row['relu-mlp_ms']:8.1f}  eager {row['eager_ms']:8.1f}  "
              f"compiled {row['compiled_ms']:8.1f} ms/step   compiled/eager {row['compiled/eager']:.2f}  "
              f"compiled/relu {row['compiled/relu']:.2f}  eager/relu {row['eager/relu']:.2f}", flush=True)
    return rows


def small_main(args) -> None:
    """``--small``: the table of issue 12 (see the module docstring)."""
    import tempfile

    import torch

    from reconstruct.app.runtime import allocator_in_use, tune_allocator

    torch.set_num_threads(1)
    tune_allocator()
    points_list = [int(p) for p in args.small_points.split(",")]
    compile_rows = {}
    with tempfile.TemporaryDirectory(prefix="inductor_cold_") as cache:
        compile_rows["cold"] = _run_compile_child(args.compile_points, cache)
        compile_rows["warm"] = _run_compile_child(args.compile_points, cache)
        for kind, c in compile_rows.items():
            print(f"compile ({kind} Inductor cache) at {c['points']} pts: first step {c['first_step_s']:.2f} s, "
                  f"steady {1000 * c['steady_step_s']:.1f} ms -> compile {c['compile_s']:.2f} s; graphs "
                  f"{c['graphs_after_first_step']} after it, {c['graphs_after_shape_changes']} after steps/renders "
                  f"at {', '.join(str(d['points']) for d in c['shape_changes'])} points", flush=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # this process compiles from the warm cache (not timed)
        rows = _small_timings(points_list, args.rounds, args.cell_s)
    _derive_break_even(rows, compile_rows, args.fit_steps)
    record = {
        "benchmark": "bench_activation --small",
        "command": " ".join(["OMP_NUM_THREADS=1", Path(sys.executable).name, "benchmarks/bench_activation.py",
                             *sys.argv[1:]]),
        "model": "get_network('nestnet', spatial_dims=2, out_channels=1): 2 x 256, height 2, r = 2",
        "relu_baseline": "nn.Sequential(FourierFeatures(2, 32, scale=0.25), Linear, ReLU, Linear(256, 256), ReLU, "
                         "Linear)",
        "step": "forward + backward + Adam, MSE on random targets",
        "threads": torch.get_num_threads(),
        "allocator": allocator_in_use(),
        "load_avg_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "device_name": platform.processor() or "cpu",
        "torch": torch.__version__,
        "rows": rows,
        "compile": compile_rows,
        "fit_steps": args.fit_steps,
        "auto_rule": _auto_rule(),
        "note": "ms are medians under the machine's load at the time; compare ratios (per-round, same process)",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    from benchmarks.common import write_json

    path = Path(args.out) / "activation_small_cpu.json"
    write_json(path, record)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def _derive_break_even(rows: list[dict], compile_rows: dict, fit_steps: int) -> None:
    """Add (and print) the break-even step counts and a ``fit_steps`` fit's total time, from measured values.

    Break-even: the compile time over the time a compiled step saves; a fit's total: steps × step time,
    plus the compile for the compiled model (cold: empty Inductor cache; warm: cache already filled)."""
    cold, warm = compile_rows["cold"]["compile_s"], compile_rows["warm"]["compile_s"]
    print(f"\nbreak-even steps and a {fit_steps}-step fit (compiled includes the compile: cold {cold:.1f} s, "
          f"warm {warm:.1f} s):")
    for row in rows:
        saved = (row["eager_ms"] - row["compiled_ms"]) / 1000
        eager_fit = fit_steps * row["eager_ms"] / 1000
        row[f"fit{fit_steps}_eager_s"] = eager_fit
        line = f"{row['points']:7d} pts  eager {eager_fit:7.1f} s"
        for kind in ("cold", "warm"):
            compile_s = compile_rows[kind]["compile_s"]
            row[f"break_even_steps_{kind}"] = compile_s / saved if saved > 0 else None
            total = compile_s + fit_steps * row["compiled_ms"] / 1000
            row[f"fit{fit_steps}_compiled_{kind}_s"] = total
            be = f"{row[f'break_even_steps_{kind}']:.0f}" if saved > 0 else "never"
            line += f"   {kind}: break-even {be:>5s} steps, fit {total:7.1f} s ({total / eager_fit:.2f}x)"
        print(line, flush=True)


def _auto_rule() -> dict:
    from monai_nets import activations

    return {"auto_compile_min_numel": activations._AUTO_COMPILE_MIN_NUMEL,
            "auto_reuse_min_numel": activations._AUTO_REUSE_MIN_NUMEL,
            "numel_is": "elements of one activation input (a whole layer: points x width), any num_subnets",
            "min_points_width_256": -(-activations._AUTO_COMPILE_MIN_NUMEL // 256),
            "reuse_min_points_width_256": -(-activations._AUTO_REUSE_MIN_NUMEL // 256)}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--points", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--allocators", default=None, help="comma list; default all on CPU, system on CUDA")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--small", action="store_true", help="issue 12: eager vs compiled vs ReLU at CT point counts")
    parser.add_argument("--small-points", default=",".join(map(str, SMALL_POINTS)))
    parser.add_argument("--compile-points", type=int, default=9216, help="--small: point count of the compile runs")
    parser.add_argument("--rounds", type=int, default=11, help="--small: interleaved rounds per point count")
    parser.add_argument("--cell-s", type=float, default=2.0, help="--small: seconds of steps per model per round")
    parser.add_argument("--fit-steps", type=int, default=300, help="--small: fit length for the break-even column")
    parser.add_argument("--small-compile-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--allocator", default="system", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.small_compile_child:
        print(json.dumps(_small_compile_child(args.small_compile_child)))
        return
    if args.small:
        small_main(args)
        return
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
