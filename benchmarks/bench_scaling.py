"""How NestNet's train-step time grows with the number of coordinates, and render memory vs grid size.

* Step time (forward + backward + Adam, fused activation, 2 × 256, r = 2) for 2¹⁴ … 2²⁰ coordinates:
  it should grow linearly (the per-point cost is constant).
* Peak RSS of ``reconstruct.grid.render`` on D³ grids, each in a fresh process: the bound is the
  output (D³ × C × 4 bytes) plus one chunk's activations, independent of D.

Command that produced the committed results::

    .venv/bin/python benchmarks/bench_scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _render_child(size: int, chunk: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from monai_nets import NestNet
    from reconstruct.grid import render

    torch.manual_seed(0)
    net = NestNet(3, 1)
    base = _status_mb("VmRSS")
    # Reset the peak-RSS mark (Linux): the import's own peak must not hide the render's.
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    out = render(net, (size, size, size), chunk_size=chunk)
    seconds = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    return {"size": size, "chunk_size": chunk, "seconds": seconds, "peak_rss_growth_mb": peak - base,
            "output_mb": out.numel() * 4 / 2**20}


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exponents", default="14,15,16,17,18,19,20")
    parser.add_argument("--render-sizes", default="64,128,192")
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--child-render", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_render:
        print(json.dumps(_render_child(args.child_render, args.chunk)))
        return

    sys.path.insert(0, str(ROOT))
    import torch

    from monai_nets import NestNet
    from reconstruct.runtime import allocator_in_use, tune_allocator

    tune_allocator()
    path = ROOT / "benchmarks" / "results" / "scaling_cpu.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    rows = [] if args.exponents else previous.get("steps", [])  # --exponents "" re-measures renders only
    for e in (int(x) for x in args.exponents.split(",") if x):
        n = 2**e
        torch.manual_seed(0)
        net = NestNet(2, 1)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x, y = torch.rand(n, 2) * 2 - 1, torch.rand(n, 1)
        times = []
        for i in range(4):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
            if i >= 1:
                times.append(time.perf_counter() - t0)
        ms = 1000 * statistics.median(times)
        rows.append({"points": n, "median_ms": ms, "us_per_point": 1000 * ms / n})
        print(f"2^{e:2d} = {n:8d} points: {ms:9.1f} ms/step  {1000 * ms / n:6.2f} us/point", flush=True)
    renders = []
    for size in (int(s) for s in args.render_sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child-render", str(size), "--chunk", str(args.chunk)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        renders.append(r)
        print(f"render {size}^3: {r['seconds']:.1f} s, peak RSS growth {r['peak_rss_growth_mb']:.0f} MB "
              f"(output {r['output_mb']:.0f} MB)", flush=True)
    record = {"benchmark": "bench_scaling", "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:]),
              "torch": torch.__version__, "cpu_count": os.cpu_count(), "allocator": allocator_in_use(),
              "steps": rows, "render": renders, "date": time.strftime("%Y-%m-%d %H:%M")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
