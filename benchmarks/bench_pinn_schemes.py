"""PINN training schemes on the hard convection cases: vanilla, causal and curriculum, every model at equal steps.

``reconstruct.tasks.solve_convection`` at β = 30, 40, 50 with NestNet, SIREN and FINER (their PINN
defaults: ``reconstruct.pinn.PINN_MODEL_DEFAULTS`` and per-model learning rates), each with
``scheme`` = vanilla / causal / curriculum at the library's scheme hyper-parameters (the same for
every model and β), the same steps for all (the task's default, 1,000), one seed, on the CPU at one
thread.  Reported: relative L2 error of the final iterate against the analytic solution
``sin(x − βt)`` on the task's default 256 × 100 grid, the best iterate's error (an oracle, chosen with
the analytic solution; for information only) and the seconds of each run.  Runs under tcmalloc when
installed, denormals flushed, like the quick protocol.  The results are written after every run, so an
interrupted benchmark keeps what it measured.  The 27 runs took 40 min here (2 shared cores, load
average 4-5; about 30 min on an idle machine); ``--models``/``--betas``/``--steps`` shorten it.
Command that produced the committed results::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pinn_schemes.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "pinn_schemes_cpu.json"

#: The issue's goal for NestNet (relative L2 at β) and the vanilla numbers it started from (1,000 steps).
GOALS = {"nestnet": {30: 0.003, 40: 0.01, 50: 0.05}}
STARTING_POINT = {"nestnet": {30: 0.029, 40: 0.107, 50: 0.24}, "siren": {30: 0.0038}}


def _table(runs: list[dict], schemes: list[str]) -> str:
    lines = [f"{'model':8s} {'beta':>5s} " + " ".join(f"{s + ' L2':>14s} {'s':>6s}" for s in schemes)]
    keys = sorted({(r["model"], r["beta"]) for r in runs}, key=lambda k: (k[0] != "nestnet", k[0], k[1]))
    for model, beta in keys:
        cells = []
        for scheme in schemes:
            got = [r for r in runs if (r["model"], r["beta"], r["scheme"]) == (model, beta, scheme)]
            cells.append(f"{got[0]['rel_l2']:14.4f} {got[0]['seconds']:6.0f}" if got else f"{'-':>14s} {'-':>6s}")
        lines.append(f"{model:8s} {beta:5g} " + " ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", default="30,40,50")
    parser.add_argument("--models", default="nestnet,siren,finer")
    parser.add_argument("--schemes", default="vanilla,causal,curriculum")
    parser.add_argument("--steps", type=int, default=None, help="steps of every run (default: the task's, 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from reconstruct.app.runtime import allocator_in_use, reexec_with_tcmalloc, tune_allocator

    reexec_with_tcmalloc()
    import torch

    tune_allocator()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as reconstruct.fit does on CPU
    from benchmarks.common import write_json
    from reconstruct.tasks import SOLVE_CONVECTION, solve_convection

    betas = [float(b) for b in args.betas.split(",") if b]
    models = [m for m in args.models.split(",") if m]
    schemes = [s for s in args.schemes.split(",") if s]
    steps = args.steps or SOLVE_CONVECTION.default_steps
    scheme_params = {p.name: p.default for p in SOLVE_CONVECTION.params
                     if p.name.startswith(("causal_", "curriculum_"))}
    record = {
        "benchmark": "bench_pinn_schemes",
        "command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " .venv/bin/python "
                   "benchmarks/bench_pinn_schemes.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "allocator": allocator_in_use(), "flush_denormal": True, "device": "cpu", "steps": steps,
        "seed": args.seed, "seeds": 1, "grid": [256, 100], "scheme_params": scheme_params,
        "goals": GOALS, "starting_point": STARTING_POINT, "date": time.strftime("%Y-%m-%d %H:%M"), "runs": [],
    }
    start = time.perf_counter()
    for beta in betas:
        for model in models:
            for scheme in schemes:
                t0 = time.perf_counter()
                result = solve_convection(beta, model=model, steps=steps, seed=args.seed, device="cpu",
                                          scheme=scheme)
                run = {"model": model, "beta": beta, "scheme": scheme, "rel_l2": result.metrics["rel_l2"],
                       "best_rel_l2": result.best.metrics["rel_l2"] if result.best else None,
                       "seconds": time.perf_counter() - t0, "fit_seconds": result.seconds, "steps": result.steps,
                       "lr": result.extras["parameters"]["lr"], "loss_terms": result.extras["loss_terms"],
                       "parameters": result.model.num_real_parameters()}
                record["runs"].append(run)
                record["total_seconds"] = time.perf_counter() - start
                record["load_average"] = os.getloadavg()
                write_json(args.out, record)
                print(f"beta {beta:g} {model:8s} {scheme:10s} rel L2 {run['rel_l2']:.4f} "
                      f"(best {run['best_rel_l2']:.4f})  {run['seconds']:.0f} s", flush=True)
    print()
    print(_table(record["runs"], schemes))
    print(f"total {record['total_seconds'] / 60:.1f} min; wrote {args.out}")


if __name__ == "__main__":
    main()
