"""Train-step time of every registry network on 65,536 coordinates (2 × 256, one output channel).

Forward + backward + Adam, median of the timed steps after a warm-up (NestNet's first steps include
``torch.compile`` of the fused activation). Command that produced the committed results::

    .venv/bin/python benchmarks/bench_models.py
"""

from __future__ import annotations

import argparse
import json
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
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    import monai_nets
    from reconstruct.runtime import allocator_in_use, tune_allocator

    tune_allocator()
    x = torch.rand(args.points, 2) * 2 - 1
    y = torch.rand(args.points, 1)
    rows = []
    for name in monai_nets.available_networks():
        torch.manual_seed(0)
        net = monai_nets.get_network(name, 2, 1)
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
        rows.append({"model": name, "median_ms": ms, "params": net.num_real_parameters()})
        print(f"{name:8s} {ms:8.1f} ms/step  {net.num_real_parameters():7d} params", flush=True)
    record = {"benchmark": "bench_models", "command": "python benchmarks/bench_models.py " + " ".join(sys.argv[1:]),
              "points": args.points, "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "allocator": allocator_in_use(), "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}
    path = ROOT / "benchmarks" / "results" / "models_cpu.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
