"""The honest CT table: INR CT against the classical methods a user would pick, on real content, ground-truth-free.

Data: ``chest.png`` of ``../shared/data`` (:func:`benchmarks.cases.load_image`, centre square, resized to
``size``², zeroed outside the inscribed circle), ``views`` parallel-beam projections over
``linspace(0, 180, views, endpoint=False)`` degrees, the sinogram ``reconstruct.radon.Radon(size,
angles)(image)`` in float64, then the noise:

* ``none``: the exact sinogram;
* ``gauss1``: white Gaussian noise of σ = 1 % of max |sinogram| (:func:`reconstruct.noise.gaussian_noise`);
* ``photon1e4``: photon counts at I0 = 1e4 photons per bin, ``counts ~ Poisson(I0 exp(−μ p))`` with
  ``μ = 2 / max p`` (the most attenuating ray keeps e⁻² of its photons), then
  ``p = −log(max(counts, 1) / I0) / μ`` (:mod:`reconstruct.projectors.rawdata`).

Every row is one :func:`reconstruct.tasks.ct_reconstruct` call (or a search over such calls), scored
against the image on the inscribed circle (PSNR, SSIM):

* FBP ramp (the default filter); FBP best filter (ramp, shepp-logan, cosine, hamming, hann: the one of
  best PSNR, **oracle**: chosen with the ground truth);
* SART, CGLS at their default iterations; TV (Chambolle–Pock) at the default weight; TV with the weight
  chosen on held-out projections (``tv_search=True``, when the task has it: ground-truth-free); TV at the
  best weight of ``logspace(-4, -2, 9)`` (**oracle**);
* the INRs (``--models``) at the task's defaults (steps, learning rate, ramp data term, TV, the task's
  default stop rule: whatever it chooses is read from ``extras["stop"]``); their best iterate is reported
  too, marked **oracle** (chosen with the ground truth).  ``--tv-search`` adds "NestNet + TV search"
  (``tv_search=True`` on the INR).

Seeds: seed ``s`` draws the noise with ``s`` and initialises the network with ``s``; ``--seeds 3`` runs
0, 1, 2 and the tables show mean ± std.  Each process runs at one thread (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``); ``--jobs 2`` runs two rows at a time in separate processes.  The JSON is
written after every row and rows already in it (same case, method, seed, step override) are skipped, so
an interrupted run continues where it stopped.  Command that produced the committed results::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ct.py --sizes 96 --views 45 --noise gauss1 \
        --models nestnet,siren,finer,relu_pe --seeds 1 --jobs 2

(the section of ``benchmarks/RESULTS.md`` lists every command that added rows to the JSON).  It writes
``benchmarks/results/ct_table_cpu.json`` and (re)writes the section :data:`SECTION_TITLE` of
``benchmarks/RESULTS.md`` (``benchmarks/report.py`` renders the same section from the JSON).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# re-exported: the report's section title and headline are part of this script's API (tests, report.py)
from benchmarks.ct_report import (  # noqa: E402  # noqa: E402,F401
    CLASSICAL,
    FBP_FILTERS,
    IMAGE,
    MODEL_LABELS,
    NOISES,
    PHOTON_I0,
    PHOTON_MAX_LINE_INTEGRAL,
    ROW_FIELDS,
    SECTION_TITLE,  # noqa: F401 - re-exported (tests, report.py)
    TV_ORACLE_GRID,
    _method_parts,
    case_headline,  # noqa: F401 - re-exported
    results_section,
    table,
    write_section,
)

RESULT = ROOT / "benchmarks" / "results" / "ct_table_cpu.json"
REPORT = ROOT / "benchmarks" / "RESULTS.md"
DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()
def case_name(size: int, views: int, noise: str) -> str:
    return f"chest{size}_v{views}_{noise}"


def make_case(size: int, views: int, noise: str, seed: int, data_dir: Path = DATA_DIR) -> dict[str, Any]:
    """The chest image (circle-masked, float32), its angles (degrees), its noisy sinogram (angles × detectors)."""
    import numpy as np
    import torch

    from benchmarks.cases import center_square, load_image, resize
    from reconstruct.noise import gaussian_noise
    from reconstruct.projectors.rawdata import line_integrals, simulate_counts
    from reconstruct.radon import Radon

    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; choose from {', '.join(NOISES)}")
    img = resize(center_square(load_image(Path(data_dir), IMAGE)), (size, size))
    if img.ndim == 3:
        img = img.mean(axis=-1)
    offset = np.arange(size) - size // 2
    img = (img * ((offset[:, None] ** 2 + offset[None, :] ** 2) <= (size // 2) ** 2)).astype(np.float32)
    angles = np.linspace(0.0, 180.0, views, endpoint=False)
    with torch.no_grad():
        sino = Radon(size, np.deg2rad(angles))(torch.from_numpy(img.astype(np.float64))).numpy()
    info: dict[str, Any] = {"max_line_integral": float(np.abs(sino).max())}
    if noise == "gauss1":
        sigma = 0.01 * float(np.abs(sino).max())
        sino = gaussian_noise(sino, sigma, seed=seed)
        info["sigma"] = sigma
    elif noise == "photon1e4":
        mu = PHOTON_MAX_LINE_INTEGRAL / float(sino.max())
        generator = torch.Generator().manual_seed(int(seed))
        counts = simulate_counts(torch.from_numpy(sino * mu), PHOTON_I0, generator=generator)
        clipped = int((counts < 1).sum())
        sino = (line_integrals(counts, flat=PHOTON_I0, floor=1.0) / mu).numpy()
        info.update({"i0": PHOTON_I0, "mu": mu, "min_counts": float(counts.min()), "clipped_counts": clipped})
    return {"image": img, "angles": angles, "sinogram": np.asarray(sino, dtype=np.float32), "info": info}


# --------------------------------------------------------------------------------------------- one row
def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as reconstruct.fit does on CPU


def _summary(result: Any) -> dict[str, Any]:
    """PSNR/SSIM, best iterate (oracle), steps and stop record of one FitResult."""
    best = result.best
    stop = result.extras.get("stop")
    if stop is not None:
        stop = {k: v for k, v in stop.items() if k != "curve"} | {"curve_points": len(stop.get("curve") or [])}
    chosen = stop.get("step") if stop and stop.get("step") is not None else result.steps
    return {"psnr": float(result.metrics["psnr"]), "ssim": float(result.metrics["ssim"]),
            "best_psnr": float(best.metrics["psnr"]) if best is not None and best.metrics else None,
            "best_ssim": float(best.metrics["ssim"]) if best is not None and best.metrics else None,
            "best_step": int(best.step) if best is not None else None, "chosen_step": chosen,
            "steps": int(result.steps), "seconds": float(result.seconds), "stop": stop,
            "fbp_psnr": float(result.extras.get("fbp_metrics", {}).get("psnr", math.nan))}


def run_row(size: int, views: int, noise: str, method: str, seed: int, steps: int | None = None,
            inr_params: dict[str, Any] | None = None, data_dir: str = str(DATA_DIR), threads: int = 1
            ) -> dict[str, Any]:
    """One row of the table (one method on one case and seed) in this process; returns its record."""
    _init_worker(threads)
    from reconstruct.tasks import ct_reconstruct

    t0 = time.perf_counter()
    case = make_case(size, views, noise, seed, Path(data_dir))
    common = {"layout": "torch", "reference": case["image"], "device": "cpu"}
    sino, angles = case["sinogram"], case["angles"]
    kind, model = _method_parts(method)
    row: dict[str, Any] = {"case": case_name(size, views, noise), "size": size, "views": views, "noise": noise,
                           "method": method, "seed": seed, "steps_override": steps, "data": case["info"]}
    search: list[dict[str, Any]] = []
    if kind in ("fbp_ramp", "fbp_best"):
        filters = ("ramp",) if kind == "fbp_ramp" else FBP_FILTERS
        for name in filters:
            res = ct_reconstruct(sino, angles, method="fbp", filter_name=name, **common)
            search.append({"filter_name": name, **_summary(res)})
        pick = max(search, key=lambda r: r["psnr"])
        row.update(pick, params={"method": "fbp", "filter_name": pick["filter_name"]})
    elif kind in ("sart", "cgls", "tv"):
        fixed = _fixed_tv() if kind == "tv" else {}
        res = ct_reconstruct(sino, angles, method=kind, **fixed, **common)
        row.update(_summary(res), params={"method": kind, **fixed, "solver": res.extras["parameters"]["solver"]})
        row["chosen_step"] = row["steps"]
    elif kind == "tv_heldout":
        res = ct_reconstruct(sino, angles, method="tv", tv_search=True, **common)
        row.update(_summary(res), params={"method": "tv", "tv_search": True,
                                          "solver": res.extras["parameters"].get("solver")})
        row["tv_search"] = res.extras.get("tv_search")
        row["params"]["tv_weight"] = (row["tv_search"] or {}).get("chosen")
    elif kind == "tv_oracle":
        for weight in TV_ORACLE_GRID:
            res = ct_reconstruct(sino, angles, method="tv", tv_weight=weight, **_fixed_tv(), **common)
            search.append({"tv_weight": weight, **_summary(res)})
        pick = max(search, key=lambda r: r["psnr"])
        row.update(pick, params={"method": "tv", "tv_weight": pick["tv_weight"], **_fixed_tv()})
    elif kind in ("inr", "inr_tvsearch"):
        extra = {**_fixed_tv(), **(inr_params or {})}
        if kind == "inr_tvsearch":
            extra["tv_search"] = True
        if steps is not None:
            extra["steps"] = steps
        res = ct_reconstruct(sino, angles, method="inr", model=model, seed=seed, **extra, **common)
        params = res.extras["parameters"]
        row.update(_summary(res), params={"method": "inr", "model": model, **extra,
                                          **{k: params.get(k) for k in ("lr", "tv_weight", "data_filter",
                                                                         "data_filter_power", "held_out", "stop",
                                                                         "patience", "refit", "tv_search")
                                             if k in params}},
                   parameters=res.model.num_real_parameters() if hasattr(res.model, "num_real_parameters")
                   else sum(p.numel() for p in res.model.parameters()))
        if kind == "inr_tvsearch":
            row["tv_search"] = res.extras.get("tv_search")
            row["params"]["tv_weight"] = (row["tv_search"] or {}).get("chosen")
    else:
        raise ValueError(f"unknown method {method!r}")
    if search:
        row["search"] = [{k: v for k, v in r.items() if k != "stop"} for r in search]
        row["search_seconds"] = sum(r["seconds"] for r in search)
    row["label"], row["kind"], row["ground_truth_free"] = _label(method)
    row["wall_seconds"] = time.perf_counter() - t0
    for field in ROW_FIELDS:
        row.setdefault(field, None)
    return row


def _fixed_tv() -> dict[str, Any]:
    """``tv_search=False`` where the task has it (its default became True): the fixed-weight rows stay fixed."""
    return {"tv_search": False} if has_tv_search() else {}


def _label(method: str) -> tuple[str, str, bool]:
    kind, model = _method_parts(method)
    if kind in CLASSICAL:
        label, free = CLASSICAL[kind]
        return label, "classical", free
    name = MODEL_LABELS.get(model or "", model or "?")
    return (name + (" + TV search" if kind == "inr_tvsearch" else "")), "inr", True


# -------------------------------------------------------------------------------------------- the run
def _key(size: int, views: int, noise: str, method: str, seed: int, steps: int | None) -> tuple:
    return case_name(size, views, noise), method, int(seed), steps


def _row_key(row: dict[str, Any]) -> tuple:
    return row["case"], row["method"], int(row["seed"]), row.get("steps_override")


def has_tv_search() -> bool:
    """Whether ``ct_reconstruct`` has the ``tv_search`` parameter (held-out choice of the TV weight)."""
    from reconstruct.tasks.ct import CT_RECONSTRUCT

    return "tv_search" in [p.name for p in CT_RECONSTRUCT.params]


def plan_methods(models: Sequence[str], *, classical: Sequence[str] = tuple(CLASSICAL), tv_search: bool = False,
                 inr_tv_search: bool = True) -> list[str]:
    """The rows of one case: the classical keys (``tv_heldout`` only with ``tv_search``), then the INRs.

    ``inr_tv_search`` (with ``tv_search``) adds "NestNet + TV search" when NestNet is among ``models``.
    """
    rows = [c for c in classical if c != "tv_heldout" or tv_search]
    rows += [f"inr:{m}" for m in models]
    if tv_search and inr_tv_search and "nestnet" in models:
        rows.append("inr_tvsearch:nestnet")
    return rows


def _cost(task: tuple) -> float:
    """Rough relative cost (INR fits first, so the cheap rows fill the second process)."""
    size, _, _, method, _ = task
    kind, _ = _method_parts(method)
    return size * size * {"inr": 100.0, "inr_tvsearch": 300.0, "tv_oracle": 9.0, "tv_heldout": 3.0}.get(kind, 1.0)


def run_benchmark(
    *,
    sizes: Sequence[int] = (96,),
    views: Sequence[int] = (45,),
    noises: Sequence[str] = ("gauss1",),
    models: Sequence[str] = ("nestnet", "siren", "finer", "relu_pe"),
    seeds: Sequence[int] = (0,),
    steps: int | None = None,
    classical: Sequence[str] = tuple(CLASSICAL),
    tv_search: bool | None = None,
    inr_tv_search: bool = True,
    inr_params: dict[str, Any] | None = None,
    jobs: int = 1,
    threads: int = 1,
    out: Path = RESULT,
    data_dir: Path = DATA_DIR,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every (case, method, seed) row not yet in ``out``; write the record after every row; return it.

    ``tv_search=None`` adds the TV held-out rows when the task has ``tv_search``; ``jobs`` > 1 runs rows in
    that many worker processes (at most 2 on this machine).
    """
    import torch

    from benchmarks.common import read_json, write_json
    from reconstruct.app.runtime import allocator_in_use
    from reconstruct.tasks.ct import CT_RECONSTRUCT

    out = Path(out)
    available = has_tv_search()
    use_search = available if tv_search is None else bool(tv_search)
    if use_search and not available:
        raise ValueError("ct_reconstruct has no tv_search parameter yet; run without the TV-search rows")
    record: dict[str, Any] = read_json(out) if out.exists() else {}
    command = command or "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " .venv/bin/python " \
        "benchmarks/bench_ct.py " + " ".join(sys.argv[1:])
    commands = list(record.get("commands", []))
    if command not in commands:
        commands.append(command)
    defaults = {p.name: p.default for p in CT_RECONSTRUCT.params}
    record.update({
        "benchmark": "bench_ct", "command": commands[0], "commands": commands, "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "threads": threads, "jobs": jobs, "allocator": allocator_in_use(),
        "flush_denormal": True, "device": "cpu", "image": IMAGE, "task_default_steps": CT_RECONSTRUCT.default_steps,
        "task_defaults": {k: defaults.get(k) for k in ("tv_weight", "data_filter", "data_filter_power", "stop",
                                                        "held_out", "patience", "refit", "tv_search", "filter_name")
                          if k in defaults},
        "tv_oracle_grid": list(TV_ORACLE_GRID), "fbp_filters": list(FBP_FILTERS),
        "photon": {"i0": PHOTON_I0, "max_line_integral": PHOTON_MAX_LINE_INTEGRAL,
                   "mu": "max line integral / max sinogram"},
        "tv_search_available": available, "inr_params": dict(inr_params or {}),
        "date": record.get("date", time.strftime("%Y-%m-%d %H:%M")),
    })
    runs: list[dict[str, Any]] = record.setdefault("runs", [])
    done = {_row_key(r) for r in runs}
    methods = plan_methods(models, classical=classical, tv_search=use_search, inr_tv_search=inr_tv_search)
    tasks = [(size, v, noise, method, seed) for size in sizes for v in views for noise in noises
             for method in methods for seed in seeds
             if _key(size, v, noise, method, seed, steps) not in done]
    skipped = len(methods) * len(sizes) * len(views) * len(noises) * len(seeds) - len(tasks)
    if skipped:
        log(f"{skipped} row(s) already in {out}: skipped")
    seconds_before = float(record.get("total_seconds", 0.0))
    start = time.perf_counter()

    def save(row: dict[str, Any]) -> None:
        runs.append(row)
        done.add(_row_key(row))
        record["total_seconds"] = seconds_before + time.perf_counter() - start
        record["load_average"] = list(os.getloadavg())
        write_json(out, record)
        best = f" (best {row['best_psnr']:.2f} @ {row['best_step']}, oracle)" if row.get("best_psnr") else ""
        log(f"  {row['case']:22s} {row['label']:34s} seed {row['seed']}: PSNR {row['psnr']:.2f} SSIM "
            f"{row['ssim']:.3f}{best} step {row['chosen_step']}  {row['seconds']:.1f} s")

    kwargs = {"steps": steps, "inr_params": dict(inr_params or {}), "data_dir": str(data_dir), "threads": threads}
    tasks.sort(key=_cost, reverse=True)
    if jobs <= 1:
        for task in tasks:
            save(run_row(*task, **kwargs))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the workers before they import torch
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(run_row, *task, **kwargs) for task in tasks]
            for future in as_completed(futures):
                save(future.result())
    return record


# ------------------------------------------------------------------------------------------- reporting

def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="96", help="comma-separated image sides")
    parser.add_argument("--views", default="45", help="comma-separated numbers of projections over 180°")
    parser.add_argument("--noise", default="gauss1", help=f"comma-separated, from {', '.join(NOISES)}")
    parser.add_argument("--models", default="nestnet,siren,finer,relu_pe", help="comma-separated INRs ('' none)")
    parser.add_argument("--classical", default=",".join(CLASSICAL), help="comma-separated classical rows ('' none)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0 .. n-1)")
    parser.add_argument("--steps", type=int, default=None, help="INR steps (default: the task's)")
    parser.add_argument("--tv-search", choices=("auto", "on", "off"), default="auto",
                        help="TV held-out-weight rows (tv and NestNet + TV search); auto: when the task has it")
    parser.add_argument("--no-inr-tv-search", action="store_true",
                        help="leave out the NestNet + TV search row (3 held-out fits and a refit: ~4x a fit)")
    parser.add_argument("--inr-param", action="append", default=[], metavar="NAME=VALUE",
                        help="extra ct_reconstruct parameter of every INR row (a Python literal), repeatable")
    parser.add_argument("--jobs", type=int, default=1, help="rows run at a time in separate processes (<= 2 here)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each process")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--report", default=str(REPORT), help="RESULTS.md to write the section to ('': none)")
    args = parser.parse_args()
    from reconstruct.app.runtime import reexec_with_tcmalloc, tune_allocator

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    reexec_with_tcmalloc()
    tune_allocator()
    import ast

    _init_worker(args.threads)
    noises = [n for n in args.noise.split(",") if n]
    unknown = sorted(set(noises) - set(NOISES))
    if unknown:
        parser.error(f"unknown noise {', '.join(unknown)}; choose from {', '.join(NOISES)}")
    classical = [c for c in args.classical.split(",") if c]
    if set(classical) - set(CLASSICAL):
        parser.error(f"unknown classical rows {sorted(set(classical) - set(CLASSICAL))}; choose from "
                     f"{', '.join(CLASSICAL)}")
    inr_params = {}
    for item in args.inr_param:
        name, _, value = item.partition("=")
        try:
            inr_params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            inr_params[name] = value
    tv_search = {"auto": None, "on": True, "off": False}[args.tv_search]
    record = run_benchmark(sizes=_ints(args.sizes), views=_ints(args.views), noises=noises,
                           models=[m for m in args.models.split(",") if m], seeds=list(range(args.seeds)),
                           steps=args.steps, classical=classical, tv_search=tv_search,
                           inr_tv_search=not args.no_inr_tv_search, inr_params=inr_params,
                           jobs=args.jobs, threads=args.threads, out=args.out, data_dir=args.data_dir)
    print()
    print(table(record))
    if args.report:
        write_section(Path(args.report), results_section(record))
    print(f"total {record.get('total_seconds', 0) / 60:.1f} min; wrote {args.out}"
          + (f" and {args.report}" if args.report else ""))


if __name__ == "__main__":
    main()
