"""The learning-rate sweep behind the library's default learning rates (``reconstruct.tasks``).

Every registry model fits a development photo (``skimage.data.chelsea``, centre square, resized; not
an image of any results table) at each multiple of its network's ``recommended_lr`` (one more step
outwards when the best is at an edge of the grid); the multiple with the best final PSNR becomes the
model's default rate for fitting and super-resolution (``reconstruct.tasks.learning_rates``;
``tests/benchmarks/test_lr_defaults.py`` checks the two agree). A second photo
(``skimage.data.astronaut``, same size) is fitted at the recommended and at the chosen rate to
show whether the choice carries over; it takes no part in the choice.

Command that produced ``benchmarks/results/lr_defaults_cpu.json`` (2 processes × 1 thread)::

    .venv/bin/python benchmarks/sweep_defaults.py --size 96 --steps 300 --jobs 2 \\
        --out benchmarks/results/lr_defaults_cpu.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MULTIPLIERS = (1 / 3, 1.0, 3.0, 9.0)


def _photo(name: str, size: int):
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    img = getattr(data, name)().astype(np.float64) / 255.0
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize(img[top:top + side, left:left + side], (size, size), anti_aliasing=True).astype(np.float32)


def run_one(job: dict) -> dict:
    """One fit in this worker: ``{"psnr": final PSNR, "seconds": ...}``."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from reconstruct.tasks import fit_image

    img = _photo(job["image"], job["size"])
    start = time.perf_counter()
    result = fit_image(img, model=job["model"], steps=job["steps"], lr=job["lr"], seed=0, reference=img)
    return {**job, "psnr": float(result.metrics["psnr"]), "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from monai_nets.registry import available_networks, network_class

    models = args.models or available_networks()
    base = {m: float(network_class(m).recommended_lr) for m in models}
    jobs = [{"image": "chelsea", "size": args.size, "steps": args.steps, "model": m, "multiplier": k,
             "lr": base[m] * k} for m in models for k in MULTIPLIERS]
    with ProcessPoolExecutor(args.jobs) as pool:
        sweep = list(pool.map(run_one, jobs))
        # a best multiple at an edge of the grid has not bracketed the optimum: one more step outwards
        step = MULTIPLIERS[-1] / MULTIPLIERS[-2]
        extra = []
        for m in models:
            best = max((r for r in sweep if r["model"] == m), key=lambda r: r["psnr"])["multiplier"]
            if best in (MULTIPLIERS[0], MULTIPLIERS[-1]):
                k = best * step if best == MULTIPLIERS[-1] else best / step
                extra.append({**jobs[0], "model": m, "multiplier": k, "lr": base[m] * k})
        sweep += list(pool.map(run_one, extra))
        chosen = {}
        for m in models:
            rows = [r for r in sweep if r["model"] == m]
            best = max(rows, key=lambda r: r["psnr"])
            tried = sorted(r["multiplier"] for r in rows)
            chosen[m] = {"multiplier": best["multiplier"], "lr": best["lr"], "dev_psnr": best["psnr"],
                         "at_edge": best["multiplier"] in (tried[0], tried[-1])}
        checks = [{"image": "astronaut", "size": args.size, "steps": args.steps, "model": m, "multiplier": k,
                   "lr": base[m] * k} for m in models for k in sorted({1.0, chosen[m]["multiplier"]})]
        validation = list(pool.map(run_one, checks))
    print(f"{'model':8s} {'recommended':>11s}  dev PSNR per multiple of it  -> chosen lr   "
          "astronaut: recommended -> chosen")
    for m in models:
        cells = " ".join(f"x{r['multiplier']:.3g}: {r['psnr']:.2f}" for r in sorted(
            (r for r in sweep if r["model"] == m), key=lambda r: r["multiplier"]))
        val = {r["multiplier"]: r["psnr"] for r in validation if r["model"] == m}
        print(f"{m:8s} {base[m]:11.2g} {cells}  {chosen[m]['lr']:9.3g}   {val[1.0]:6.2f} -> "
              f"{val[chosen[m]['multiplier']]:6.2f}")
    record = {"command": " ".join(["benchmarks/sweep_defaults.py", *(argv or sys.argv[1:])]),
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "dev_image": f"skimage.data.chelsea, centre square resized to {args.size}² RGB",
              "validation_image": f"skimage.data.astronaut, centre square resized to {args.size}² RGB",
              "steps": args.steps, "multipliers": list(MULTIPLIERS), "recommended_lr": base,
              "sweep": sweep, "chosen": chosen, "validation": validation}
    if args.out is not None:
        sys.path.insert(0, str(ROOT))
        from benchmarks.common import write_json  # strict JSON, written atomically

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
