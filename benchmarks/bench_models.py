"""Train-step time of every registry network on 65,536 coordinates (2 × 256, one output channel).

Forward + backward + Adam, median of the timed steps after a warm-up (NestNet's first steps include
``torch.compile`` of the fused activation).  Besides the registry defaults, NestNet also runs with
r = 1 subnetwork and with the naive (unfused) activation.  Runs under tcmalloc when installed, with
denormals flushed, like the quick protocol.  Command that produced the committed results::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_models.py --threads 1

(run beside a one-thread CT fit on the other core; earlier tables used ``--threads 2`` on an idle machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from reconstruct.app.runtime import allocator_in_use, reexec_with_tcmalloc, tune_allocator

    reexec_with_tcmalloc()
    import torch

    import monai_nets

    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as reconstruct.fit does on CPU
    x = torch.rand(args.points, 2) * 2 - 1
    y = torch.rand(args.points, 1)
    variants = [(name, name, {}) for name in monai_nets.available_networks()]
    variants += [("nestnet r=1", "nestnet", {"num_subnets": 1}),
                 ("nestnet naive", "nestnet", {"fused": False})]
    rows = []
    for label, name, kwargs in variants:
        torch.manual_seed(0)
        net = monai_nets.get_network(name, 2, 1, **kwargs)
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        times = []
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        ms = 1000 * statistics.median(times)
        rows.append({"model": label, "median_ms": ms, "params": net.num_real_parameters()})
        print(f"{label:14s} {ms:8.1f} ms/step  {net.num_real_parameters():7d} params", flush=True)
    record = {"benchmark": "bench_models", "command": "python benchmarks/bench_models.py " + " ".join(sys.argv[1:]),
              "points": args.points, "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "allocator": allocator_in_use(), "threads": torch.get_num_threads(), "flush_denormal": True,
              "load_average": os.getloadavg(), "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}
    from benchmarks.common import write_json

    path = ROOT / "benchmarks" / "results" / "models_cpu.json"
    write_json(path, record)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
