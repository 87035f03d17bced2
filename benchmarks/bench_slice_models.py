"""K slices of a sinogram stack: K separate 2-D fits, K batched 2-D INRs, or one 3-D INR, in quality and speed.

A 3-D Shepp–Logan (:func:`reconstruct.projectors.phantoms.shepp_logan_3d`, radius 30 mm, rasterised with
4³ samples per voxel) on ``--slices`` slices of ``--size``² voxels of 1 mm (the middle of the phantom:
every slice holds structure), a parallel-beam sinogram per slice (:class:`~reconstruct.projectors.ParallelBeam2D`,
``--views`` views over 180°, one detector bin per voxel) with Gaussian noise of ``--noise`` × the largest
line integral. The same network (NestNet, ``--hidden`` widths, the library's other defaults), the same
recipe (ramp-filtered data term + TV 1e-3, the tasks' defaults) and the same steps for every way:

* **separate** — ``ct_reconstruct`` on each slice's sinogram, one fit after another (K 2-D INRs);
* **batched** — ``ct_reconstruct_3d(slice_model="batched")``: the K 2-D INRs as one batched model
  (:class:`monai_nets.batched.BatchedNetwork`) fitted by the one loop, in-plane TV;
* **joint** — ``ct_reconstruct_3d(slice_model="joint")``: one 3-D INR for the volume, 3-D TV.

Every fit starts from the seed's initialisation (the batched copies from the one a separate fit gets) and
runs all its steps (no stop rule: stop="none"). Reported: PSNR and SSIM of the volume against the phantom
over its peak-to-peak range (final iterate; each task's own circle mask), FBP's for reference, the
seconds of each way (the task calls, FBP and set-up included) and slices per minute, with the ratios to
the separate fits side by side. Before the timed runs each way runs once for ``--warmup`` steps on the
same data, untimed, so the one-off cost of compiling the fused activation (torch.compile on inputs of
2²¹ elements and more: the batched and joint fits, not the 2-D ones) is recorded apart
(``warmup_seconds``) instead of charged to whichever way runs first. One thread, tcmalloc when
installed, denormals flushed, like the other CPU benchmarks. Command that produced the committed
results::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_slice_models.py --threads 1

It writes ``benchmarks/results/slice_models_cpu.json`` and (re)writes the section
:data:`SECTION_TITLE` of ``benchmarks/RESULTS.md`` (``benchmarks/report.py`` renders the same section
from the JSON when it regenerates the report).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "slice_models_cpu.json"
REPORT = ROOT / "benchmarks" / "RESULTS.md"
SECTION_TITLE = "### K slices: separate, batched, one 3-D INR (CPU)"
WAYS = ("separate", "batched", "joint")
WAY_TEXT = {"separate": "K separate 2-D fits (ct_reconstruct, one after another)",
            "batched": "K batched 2-D INRs (ct3d slice_model=batched)",
            "joint": "one 3-D INR (ct3d slice_model=joint)"}


def results_section(rec: dict[str, Any]) -> list[str]:
    """The Markdown section of one record (the benchmark and ``benchmarks/report.py`` both write it)."""
    case = rec["case"]
    lines = [
        SECTION_TITLE, "",
        f"Produced by: `{rec['command']}` on {rec.get('date', '?')}, torch {rec.get('torch', '?')}, "
        f"{rec.get('cpu_count', '?')} cores, {rec.get('threads', '?')} thread(s), allocator "
        f"{rec.get('allocator', '?')}, load average {', '.join(f'{x:.1f}' for x in rec.get('load_average', []))}.",
        "",
        f"3-D Shepp–Logan, {case['slices']} slices of {case['size']}² (1 mm voxels), parallel beam, "
        f"{case['views']} views over 180°, {100 * case['noise']:g} % noise; NestNet "
        f"{' × '.join(str(w) for w in rec['model_kwargs']['hidden_channels'])}, {rec['steps']} steps, "
        f"ramp data term + TV {rec['tv_weight']:g}, no stop rule, seed {rec['seed']}. FBP (ramp): "
        f"{rec['fbp']['psnr']:.2f} dB, SSIM {rec['fbp']['ssim']:.3f}. Ratios are to the separate fits "
        "(speed: separate seconds / these seconds; PSNR: difference in dB).",
        "",
        "| way | PSNR dB | SSIM | seconds | slices / min | speed × separate | PSNR − separate | parameters "
        "| warm-up s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = rec["runs"].get("separate")
    for way in WAYS:
        run = rec["runs"].get(way)
        if run is None:
            continue
        speed = f"{base['seconds'] / run['seconds']:.2f}×" if base else "—"
        gain = f"{run['psnr'] - base['psnr']:+.2f}" if base else "—"
        lines.append(f"| {WAY_TEXT[way]} | {run['psnr']:.2f} | {run['ssim']:.3f} | {run['seconds']:.1f} | "
                     f"{run['slices_per_minute']:.1f} | {speed} | {gain} | {run['parameters']:,} | "
                     f"{run.get('warmup_seconds', 0.0):.1f} |")
    if rec.get("note"):
        lines += ["", rec["note"]]
    return lines + [""]


def write_section(path: Path, section: list[str]) -> None:
    """Replace the section :data:`SECTION_TITLE` in ``path`` (up to the next heading), or append it."""
    from reconstruct.app.files import atomic_write_text

    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = "\n".join(section).rstrip() + "\n"
    pattern = re.compile(r"^" + re.escape(SECTION_TITLE) + r"\n.*?(?=^#{1,3} |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    atomic_write_text(path, text)


def _case(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(sinograms (K, views, size) float32, angles in degrees, phantom (K, size, size) float32)``."""
    import numpy as np
    import torch

    from reconstruct.projectors import ConeBeam3D, ParallelBeam2D
    from reconstruct.projectors.phantoms import rasterize, shepp_logan_3d

    angles = np.linspace(0.0, 180.0, args.views, endpoint=False)
    shape = (args.slices, args.size, args.size)
    # ConeBeam3D only supplies the voxel grid (1 mm, centred) that rasterize samples the phantom on
    grid = ConeBeam3D(shape, np.deg2rad(angles), (args.slices, args.size), 1e4, 2e4, 2.0, 1.0)
    volume = rasterize(shepp_logan_3d(args.radius), grid).numpy().astype(np.float32)
    sino = ParallelBeam2D(shape[1:], np.deg2rad(angles), args.size)(torch.from_numpy(volume).double()).numpy()
    rng = np.random.default_rng(args.seed)
    noisy = sino + args.noise * np.abs(sino).max() * rng.standard_normal(sino.shape)
    return noisy.astype(np.float32), angles, volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--views", type=int, default=45)
    parser.add_argument("--noise", type=float, default=0.01, help="noise std / largest line integral")
    parser.add_argument("--radius", type=float, default=30.0, help="phantom radius in mm")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hidden", default="256,256", help="NestNet hidden widths (default: the library's)")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each way first (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--report", default=str(REPORT), help="RESULTS.md to write the section to ('': none)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from reconstruct.app.runtime import allocator_in_use, reexec_with_tcmalloc, tune_allocator

    reexec_with_tcmalloc()
    import numpy as np
    import torch

    tune_allocator()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as reconstruct.fit does on CPU
    from benchmarks.common import write_json
    from reconstruct.metrics import psnr, ssim
    from reconstruct.tasks import CT_RECONSTRUCT_3D, ct_reconstruct, ct_reconstruct_3d

    ways = [w for w in args.ways.split(",") if w]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown:
        parser.error(f"unknown ways {unknown}; choose from {', '.join(WAYS)}")
    sino, angles, volume = _case(args)
    data_range = float(volume.max() - volume.min())
    model_kwargs = {"hidden_channels": [int(w) for w in args.hidden.split(",") if w]}
    common = {"model": "nestnet", "model_kwargs": model_kwargs, "seed": args.seed, "device": "cpu", "stop": "none"}
    tv_weight = next(p.default for p in CT_RECONSTRUCT_3D.params if p.name == "tv_weight")

    def run(way: str, steps: int) -> tuple[np.ndarray, int, np.ndarray]:
        """``(volume, parameters, FBP volume)`` of one way."""
        if way == "separate":
            fits = [ct_reconstruct(s, angles, layout="torch", steps=steps, **common) for s in sino]
            return (np.stack([f.output for f in fits]), sum(f.model.num_real_parameters() for f in fits),
                    np.stack([f.extras["fbp"] for f in fits]))
        result = ct_reconstruct_3d(sino, angles, slice_model=way, steps=steps, **common)
        return result.output, result.model.num_real_parameters(), result.extras["fbp"]

    record: dict[str, Any] = {
        "benchmark": "bench_slice_models",
        "command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " .venv/bin/python "
                   "benchmarks/bench_slice_models.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "allocator": allocator_in_use(), "flush_denormal": True, "device": "cpu", "steps": args.steps,
        "seed": args.seed, "model": "nestnet", "model_kwargs": model_kwargs, "tv_weight": tv_weight,
        "case": {"phantom": "shepp_logan_3d", "radius_mm": args.radius, "slices": args.slices, "size": args.size,
                 "views": args.views, "noise": args.noise, "geometry": "parallel", "voxel_mm": 1.0},
        "date": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": os.getloadavg(), "runs": {},
    }
    start = time.perf_counter()
    warm: dict[str, float] = {}
    if args.warmup:
        for way in ways:
            t0 = time.perf_counter()
            run(way, args.warmup)
            warm[way] = time.perf_counter() - t0
            print(f"warm-up {way:8s} {args.warmup} steps: {warm[way]:.1f} s", flush=True)
    for way in ways:
        t0 = time.perf_counter()
        output, parameters, fbp = run(way, args.steps)
        seconds = time.perf_counter() - t0
        if "fbp" not in record:
            record["fbp"] = {"psnr": psnr(fbp, volume, data_range), "ssim": ssim(fbp, volume, data_range)}
        record["runs"][way] = {
            "psnr": psnr(output, volume, data_range), "ssim": ssim(output, volume, data_range), "seconds": seconds,
            "slices_per_minute": 60.0 * args.slices / seconds, "parameters": parameters,
            "warmup_seconds": warm.get(way, 0.0),
            "slice_psnr": [psnr(o, v, data_range) for o, v in zip(output, volume)],
        }
        record["total_seconds"] = time.perf_counter() - start
        record["load_average"] = os.getloadavg()
        write_json(args.out, record)
        got = record["runs"][way]
        print(f"{way:8s} PSNR {got['psnr']:.2f} dB  SSIM {got['ssim']:.3f}  {seconds:.1f} s  "
              f"{got['slices_per_minute']:.1f} slices/min", flush=True)
    runs = record["runs"]
    if "separate" in runs:
        record["ratios"] = {way: {"speed_vs_separate": runs["separate"]["seconds"] / r["seconds"],
                                  "psnr_minus_separate": r["psnr"] - runs["separate"]["psnr"]}
                            for way, r in runs.items()}
    write_json(args.out, record)
    section = results_section(record)
    if args.report:
        write_section(Path(args.report), section)
    print()
    print("\n".join(section))
    print(f"total {record['total_seconds'] / 60:.1f} min; wrote {args.out}" + (f" and {args.report}"
                                                                               if args.report else ""))


if __name__ == "__main__":
    main()
