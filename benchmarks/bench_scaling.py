"""How NestNet's train-step time grows with the number of coordinates, and what big volumes cost in memory.

* Step time (forward + backward + Adam, fused activation, 2 × 256, r = 2) for 2¹⁴ … 2²⁰ coordinates:
  it should grow linearly (the per-point cost is constant).
* Peak RSS of ``reconstruct.grid.render`` on D³ grids up to 512³, each in a fresh process: the bound
  is the output (D³ × C × 4 bytes) plus one chunk's activations, independent of D.
* Peak RSS of a whole ``reconstruct.occupancy.fit_occupancy`` run on a 256³ volume (default batch,
  one IoU evaluation, final and best-iterate renderings), in a fresh process.  The volume is a
  generated solid (a sphere with a torus through it): memory does not depend on the shape's content.

Peak RSS is the growth of the process's high-water mark (``VmHWM``, reset before the measured part)
over its resident size before it.  Runs under tcmalloc when installed, denormals flushed, like the
quick protocol.  Command that produced the committed results::

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


def _solid(size: int):
    """A sphere with a torus through it, on a size³ grid (bool)."""
    import numpy as np

    ax = np.linspace(-1, 1, size, dtype=np.float32)
    z, y, x = ax[:, None, None], ax[None, :, None], ax[None, None, :]
    sphere = x**2 + y**2 + z**2 < 0.45**2
    ring = (np.sqrt(x**2 + z**2) - 0.6) ** 2 + y**2 < 0.15**2
    return sphere | ring


def _occupancy_child(size: int, steps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from reconstruct.occupancy import DEFAULT_BATCH_SIZE, fit_occupancy

    volume = _solid(size)
    base = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    result = fit_occupancy(volume, steps=steps, eval_every=steps, device="cpu", seed=0)
    seconds = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    return {"size": size, "steps": steps, "batch_size": DEFAULT_BATCH_SIZE, "seconds": seconds,
            "peak_rss_growth_mb": peak - base, "volume_mb": volume.nbytes / 2**20,
            "output_mb": result.output.nbytes / 2**20, "iou": result.metrics["iou"],
            "threads": torch.get_num_threads()}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exponents", default="14,15,16,17,18,19,20")
    parser.add_argument("--render-sizes", default="64,128,256,512")
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--occupancy-size", type=int, default=256, help="0 skips the occupancy fit")
    parser.add_argument("--occupancy-steps", type=int, default=50)
    parser.add_argument("--child-render", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-occupancy", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from reconstruct.app.runtime import allocator_in_use, reexec_with_tcmalloc, tune_allocator

    reexec_with_tcmalloc()  # children inherit LD_PRELOAD
    import torch

    tune_allocator()
    torch.set_flush_denormal(True)
    if args.child_render:
        print(json.dumps(_render_child(args.child_render, args.chunk)))
        return
    if args.child_occupancy:
        print(json.dumps(_occupancy_child(args.child_occupancy, args.occupancy_steps)))
        return

    from monai_nets import NestNet

    path = ROOT / "benchmarks" / "results" / "scaling_cpu.json"
    rows = []
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
    for size in (int(s) for s in args.render_sizes.split(",") if s):
        r = _child(["--child-render", str(size), "--chunk", str(args.chunk)])
        renders.append(r)
        print(f"render {size}^3: {r['seconds']:.1f} s, peak RSS growth {r['peak_rss_growth_mb']:.0f} MB "
              f"(output {r['output_mb']:.0f} MB)", flush=True)
    occupancy = []
    if args.occupancy_size:
        r = _child(["--child-occupancy", str(args.occupancy_size), "--occupancy-steps", str(args.occupancy_steps)])
        occupancy.append(r)
        print(f"occupancy fit {args.occupancy_size}^3, {r['steps']} steps: {r['seconds']:.1f} s, peak RSS growth "
              f"{r['peak_rss_growth_mb']:.0f} MB, IoU {r['iou']:.4f}", flush=True)
    record = {"benchmark": "bench_scaling", "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:]),
              "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
              "allocator": allocator_in_use(), "flush_denormal": True, "load_average": os.getloadavg(),
              "steps": rows, "render": renders, "occupancy_fit": occupancy, "date": time.strftime("%Y-%m-%d %H:%M")}
    from benchmarks.common import write_json

    write_json(path, record)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
