"""PINN training schemes on the hard convection cases: vanilla, causal and curriculum, every model at equal steps.

``reconstruct.tasks.solve_convection`` at β = 30, 40, 50 with NestNet, SIREN and FINER, and the other
registry models (MFN, Gauss, WIRE, FFN, ReLU+PE) added by later runs into the same record (their PINN
defaults: ``reconstruct.pinn.PINN_MODEL_DEFAULTS`` and
``reconstruct.tasks.learning_rates.PINN_LEARNING_RATES``), each with
``scheme`` = vanilla / causal / curriculum at the library's scheme hyper-parameters (the same for
every model and β), the same steps for all (the task's default, 1,000), one seed, on the CPU at one
thread.  Reported: relative L2 error of the final iterate against the analytic solution
``sin(x − βt)`` on the task's default 256 × 100 grid, the best iterate's error (an oracle, chosen with
the analytic solution; for information only) and the seconds of each run.  Runs under tcmalloc when
installed, denormals flushed, like the quick protocol.  The results are written after every run, so an
interrupted benchmark keeps what it measured; run again with the same ``--out`` it skips the runs
the record holds (same steps, seed and scheme settings) and adds the others, so more models or β
extend the table; a run at a rate that is no longer the model's default (the PINN learning-rate sweep of
``benchmarks/sweep_defaults.py``) is re-run and replaced, the report names the models still at an older
rate.  The first 27 runs took 40 min here (2 shared cores, load
average 4-5; about 30 min on an idle machine); ``--models``/``--betas``/``--steps`` shorten it.
Commands that produced the committed results (the record lists every one it ran)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pinn_schemes.py --threads 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pinn_schemes.py --threads 1 \
        --models mfn,gauss,wire,ffn,relu_pe --betas 30,40
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


SECTION_TITLE = "### PINN training schemes at β = 30 / 40 / 50 (CPU, 1,000 steps)"


def results_section(record: dict) -> list[str]:
    """The Markdown section of one record (``benchmarks/report.py`` renders it into RESULTS.md)."""
    runs = record.get("runs", [])
    schemes = list(dict.fromkeys(r["scheme"] for r in runs))
    models = sorted({r["model"] for r in runs}, key=lambda m: (m != "nestnet", m))
    betas = sorted({r["beta"] for r in runs})
    cell = {(r["model"], r["beta"], r["scheme"]): r for r in runs}
    params = record.get("scheme_params", {})
    lines = [
        SECTION_TITLE, "",
        "Produced by: " + " then ".join(f"`{c}`" for c in record.get("commands") or [record.get("command", "?")])
        + f" on {record.get('date', '?')}, torch {record.get('torch', '?')}, "
        f"{record.get('cpu_count', '?')} cores, {record.get('threads', '?')} thread(s), allocator "
        f"{record.get('allocator', '?')}, load average "
        f"{', '.join(f'{x:.1f}' for x in record.get('load_average', []))}; "
        f"{record.get('total_seconds', 0) / 60:.0f} min in all; seed {record.get('seed', 0)}, one seed.",
        "",
        "What was done: `reconstruct.tasks.solve_convection(beta, model=…, scheme=…)` at the task's defaults "
        f"({record.get('steps')} steps, each model's PINN learning rate and network, 1,024 fresh collocation "
        "points per step) on the 256 × 100 grid; relative L2 error of the final iterate against the analytic "
        "sin(x − βt). Schemes: *vanilla* (uniform residual points), *causal* (Wang, Sankaran & Perdikaris 2022: "
        f"{params.get('causal_slabs', '?')} time slabs, weights exp(−ε Σ earlier slab losses), "
        f"ε = {params.get('causal_eps', '?')}), *curriculum* (time marching: the window [0, t_max] grows from "
        f"t_max = {params.get('curriculum_start', '?')} to 1 over the first "
        f"{params.get('curriculum_fraction', '?')} of the steps). The same scheme settings for every model and β. "
        "In parentheses: the best iterate's error, an *oracle* (chosen with the analytic solution).",
        "",
        "| model | β | " + " | ".join(f"{s} rel. L2 (oracle best)" for s in schemes) + " | "
        + " | ".join(f"{s} s" for s in schemes) + " |",
        "|" + "---|" * (2 + 2 * len(schemes)),
    ]
    for model in models:
        for beta in betas:
            got = [cell.get((model, beta, s)) for s in schemes]
            if not any(got):
                continue
            lowest = min(r["rel_l2"] for r in got if r)  # bold: this model's best scheme at this β
            lines.append(
                f"| {model} | {beta:g} | "
                + " | ".join("—" if r is None else (("**{:.4f}**" if r["rel_l2"] == lowest else "{:.4f}").format(
                    r["rel_l2"]) + (f" ({r['best_rel_l2']:.4f})" if r.get("best_rel_l2") is not None else ""))
                    for r in got)
                + " | " + " | ".join("—" if r is None else f"{r['seconds']:.0f}" for r in got) + " |")
    lines.append("")
    goals = record.get("goals", {})
    for model, by_beta in goals.items():
        for beta_key, goal in by_beta.items():
            beta = float(beta_key)
            got = [cell[(model, beta, s)] for s in schemes if (model, beta, s) in cell]
            if not got:
                continue
            best = min(got, key=lambda r: r["rel_l2"])
            rivals = [r for r in runs if r["beta"] == beta and r["model"] != model]
            leader = min(rivals, key=lambda r: r["rel_l2"]) if rivals else None
            verdict = "met" if best["rel_l2"] <= goal else f"missed by {best['rel_l2'] / goal:.0f}×"
            lines.append(
                f"- {model} at β = {beta:g}: best {best['rel_l2']:.4f} ({best['scheme']}), goal ≤ {goal:g}: "
                f"**{verdict}**" + (f"; best of all models {leader['model']} {leader['scheme']} "
                                    f"{leader['rel_l2']:.4f}." if leader else "."))

    from benchmarks.common import at_default_rate, runs_off_the_default_rate

    stale = runs_off_the_default_rate(runs, "solve_convection")
    if stale:
        lines.append(
            "- Run at a learning rate that is no longer the default (the PINN sweep, "
            "`benchmarks/results/lr_defaults_pinn_cpu.json` on convection at β = 20, chose new ones) and not yet "
            "re-run, so these rows measure the model at its older rate: " + "; ".join(
                f"{m} {old:.3g} (default now {new:.3g})" for m, (old, new) in stale.items()) + ".")

    superseded = {(r["model"], r["beta"], r["scheme"]): r for r in record.get("superseded_runs", [])}
    if superseded:
        # what the change of defaults did: the same runs at the rate each model had before the sweep
        pairs = []
        for m in dict.fromkeys(k[0] for k in superseded):
            for b in betas:
                # the schemes re-run at today's rate only, then and now
                now_at = {k[2]: cell[k] for k in superseded if k[:2] == (m, b) and k in cell
                          and at_default_rate(cell[k], "solve_convection")}
                old = [superseded[(m, b, scheme)] for scheme in now_at]
                new = list(now_at.values())
                if old:
                    was, now = min(old, key=lambda r: r["rel_l2"]), min(new, key=lambda r: r["rel_l2"])
                    pairs.append(f"{m} β = {b:g} {was['rel_l2']:.4f} ({was['scheme']}, lr {was['lr']:.3g}) → "
                                 f"{now['rel_l2']:.4f} ({now['scheme']})")
        if pairs:
            lines.append("- The same runs at each model's rate before the PINN sweep set today's defaults "
                         "(`superseded_runs`), best scheme then → now: " + "; ".join(pairs) + ". The sweep's "
                         "development case is β = 20; where a model got worse here, its best rate moves with β.")

    def beats_vanilla(m: str, b: float, s: str) -> bool:
        ours, plain = cell.get((m, b, s)), cell.get((m, b, "vanilla"))
        return ours is not None and plain is not None and ours["rel_l2"] < plain["rel_l2"]

    # Only the β a model was run at count: a model measured at β = 30, 40 is judged on those two.
    measured = {m: [b for b in betas if (m, b, "vanilla") in cell] for m in models}
    better = {m: [s for s in schemes if s != "vanilla" and measured[m]
                  and all(beats_vanilla(m, b, s) for b in measured[m])] for m in models}
    lines.append("- Schemes better than vanilla at every β it ran at: " + "; ".join(
        f"{m}: {', '.join(v) if v else 'none'}" for m, v in better.items()) + ". "
        + ("A scheme helps every model, yet the default stays `vanilla` until this holds on more seeds."
           if all(better.values()) else "No scheme helps every model, so `scheme` stays `vanilla` by default.")
        + " The PINN panel and `nestnet pinn --scheme` offer all three.")
    lines.append("")
    return lines


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
    from benchmarks.common import add_replacing, at_default_rate, read_json, write_json
    from reconstruct.tasks import SOLVE_CONVECTION, solve_convection

    betas = [float(b) for b in args.betas.split(",") if b]
    models = [m for m in args.models.split(",") if m]
    schemes = [s for s in args.schemes.split(",") if s]
    steps = args.steps or SOLVE_CONVECTION.default_steps
    scheme_params = {p.name: p.default for p in SOLVE_CONVECTION.params
                     if p.name.startswith(("causal_", "curriculum_"))}
    command = "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " .venv/bin/python " \
        "benchmarks/bench_pinn_schemes.py " + " ".join(sys.argv[1:])
    record = {
        "benchmark": "bench_pinn_schemes",
        "command": command,
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "allocator": allocator_in_use(), "flush_denormal": True, "device": "cpu", "steps": steps,
        "seed": args.seed, "seeds": 1, "grid": [256, 100], "scheme_params": scheme_params,
        "goals": GOALS, "starting_point": STARTING_POINT, "date": time.strftime("%Y-%m-%d %H:%M"), "runs": [],
    }
    previous = read_json(args.out) if args.out.exists() else None
    if previous is not None:
        # Extend the record (more models or β): only runs at the same steps, seed and scheme settings count
        # as done, so the table never mixes protocols.
        same = all(previous.get(k) == record[k] for k in ("steps", "seed", "scheme_params"))
        if not same:
            parser.error(f"{args.out} holds runs at other steps/seed/scheme settings; pass another --out")
        commands = previous.get("commands") or [previous["command"]]
        for run in previous["runs"]:  # runs from before they named their allocator: the record's, kept
            run.setdefault("allocator", previous.get("allocator"))
        record.update(runs=previous["runs"], date=previous.get("date", record["date"]),
                      command=commands[0], commands=commands + ([command] if command not in commands else []))
    # a run at a rate that is no longer the model's default is not done: re-running replaces it (kept aside
    # under "superseded_runs")
    done = {(r["model"], r["beta"], r["scheme"]) for r in record["runs"] if at_default_rate(r, "solve_convection")}
    if previous is not None:
        record["superseded_runs"] = previous.get("superseded_runs", [])
    seconds_before = float(previous.get("total_seconds", 0.0)) if previous else 0.0
    record["total_seconds"] = seconds_before
    if previous and previous.get("load_average"):
        record["load_average"] = previous["load_average"]
    start = time.perf_counter()
    for beta in betas:
        for model in models:
            for scheme in schemes:
                if (model, beta, scheme) in done:
                    continue
                t0 = time.perf_counter()
                result = solve_convection(beta, model=model, steps=steps, seed=args.seed, device="cpu",
                                          scheme=scheme)
                run = {"model": model, "beta": beta, "scheme": scheme, "rel_l2": result.metrics["rel_l2"],
                       "best_rel_l2": result.best.metrics["rel_l2"] if result.best else None,
                       "seconds": time.perf_counter() - t0, "fit_seconds": result.seconds, "steps": result.steps,
                       "lr": result.extras["parameters"]["lr"], "loss_terms": result.extras["loss_terms"],
                       "parameters": result.model.num_real_parameters(), "allocator": allocator_in_use()}
                add_replacing(record, run, lambda r: (r["model"], r["beta"], r["scheme"]))
                record["total_seconds"] = seconds_before + time.perf_counter() - start
                record["load_average"] = os.getloadavg()
                write_json(args.out, record)
                print(f"beta {beta:g} {model:8s} {scheme:10s} rel L2 {run['rel_l2']:.4f} "
                      f"(best {run['best_rel_l2']:.4f})  {run['seconds']:.0f} s", flush=True)
    print()
    print(_table(record["runs"], schemes))
    print(f"total {record['total_seconds'] / 60:.1f} min; wrote {args.out}")


if __name__ == "__main__":
    main()
