"""The CT table's report: summaries over seeds, the markdown tables, headlines and the RESULTS.md section.

Split from :mod:`benchmarks.bench_ct` (which runs the rows); the constants both need live here.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SECTION_TITLE = "### CT on real content (chest, CPU, ground-truth-free)"
IMAGE = "chest.png"
NOISES = ("none", "gauss1", "photon1e4")
FBP_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
TV_ORACLE_GRID = tuple(float(f"{10 ** (-4 + k / 4):.3g}") for k in range(9))  # 1e-4 ... 1e-2, log grid
PHOTON_I0 = 1e4
PHOTON_MAX_LINE_INTEGRAL = 2.0
#: Classical rows, in table order: key -> (label, ground-truth-free?).
CLASSICAL = {
    "fbp_ramp": ("FBP ramp", True),
    "fbp_best": ("FBP best filter (*oracle*)", False),
    "sart": ("SART", True),
    "cgls": ("CGLS", True),
    "tv": ("TV, default weight", True),
    "tv_heldout": ("TV, held-out weight (tv_search)", True),
    "tv_oracle": ("TV, oracle weight (*oracle*)", False),
}
MODEL_LABELS = {"nestnet": "NestNet", "siren": "SIREN", "finer": "FINER", "relu_pe": "ReLU+PE", "wire": "WIRE",
                "gauss": "Gauss", "mfn": "MFN", "ffn": "FFN"}
#: Fields every row record carries (the test checks them).
ROW_FIELDS = ("case", "size", "views", "noise", "method", "seed", "label", "kind", "ground_truth_free", "psnr",
              "ssim", "best_psnr", "best_step", "chosen_step", "steps", "seconds", "wall_seconds", "params", "stop")


# ------------------------------------------------------------------------------------------------ data
def _method_parts(method: str) -> tuple[str, str | None]:
    """``"inr:nestnet"`` -> ("inr", "nestnet"), ``"inr_tvsearch:nestnet"`` likewise; classical -> (key, None)."""
    kind, _, model = method.partition(":")
    return kind, (model or None)


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(record: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """case -> method -> means/stds over seeds of PSNR, SSIM, best PSNR, seconds, chosen step (+ label, kind)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in record.get("runs", []):
        groups.setdefault((row["case"], row["method"]), []).append(row)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (case, method), rows in groups.items():
        cell: dict[str, Any] = {"label": rows[0]["label"], "kind": rows[0]["kind"],
                                "ground_truth_free": rows[0]["ground_truth_free"],
                                "seeds": sorted(int(r["seed"]) for r in rows), "rows": rows}
        for field in ("psnr", "ssim", "best_psnr", "seconds", "chosen_step", "steps"):
            cell[field], cell[field + "_std"] = _mean_std([r.get(field) for r in rows])
        searched = method in ("fbp_best", "tv_oracle", "tv_heldout") or method.startswith("inr_tvsearch")
        picks = sorted({r["params"]["filter_name"] if "filter_name" in r["params"]
                        else f"TV {r['params']['tv_weight']:.3g}" if r["params"].get("tv_weight") is not None
                        else "TV weight not recorded" for r in rows if searched})
        cell["pick"] = ", ".join(picks)
        stops = sorted({(r.get("stop") or {}).get("rule", "none") for r in rows if r["kind"] == "inr"})
        cell["stop_rule"] = ", ".join(stops)
        out.setdefault(case, {})[method] = cell
    return out


def _case_order(record: dict[str, Any]) -> list[str]:
    cases = {(r["size"], r["views"], NOISES.index(r["noise"]) if r["noise"] in NOISES else 9, r["case"])
             for r in record.get("runs", [])}
    return [c[-1] for c in sorted(cases)]


def _method_order(methods: Sequence[str]) -> list[str]:
    def rank(m: str) -> tuple:
        kind, model = _method_parts(m)
        if kind in CLASSICAL:
            return 0, list(CLASSICAL).index(kind), ""
        models = list(MODEL_LABELS)
        return 1, models.index(model) if model in models else len(models), kind
    return sorted(methods, key=rank)


def _fmt(mean: float, std: float, digits: int, n: int) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def case_headline(cells: dict[str, dict[str, Any]], default_search: bool = False) -> str:
    """One line: the best ground-truth-free classical row, NestNet's margin over it, where NestNet loses, time ratio.

    NestNet's row is the one the task's defaults give: "+ TV search" when ``default_search`` (the task's
    ``tv_search`` default) and that row exists, else the fixed-weight row; the other is quoted after it.
    """
    classical = {m: c for m, c in cells.items() if c["kind"] == "classical" and c["ground_truth_free"]}
    if not classical:
        return "No ground-truth-free classical row."
    best_m = max(classical, key=lambda m: classical[m]["psnr"])
    best = classical[best_m]
    text = f"best ground-truth-free classical: {best['label']} {best['psnr']:.2f} dB"
    order = ("inr_tvsearch:nestnet", "inr:nestnet") if default_search else ("inr:nestnet", "inr_tvsearch:nestnet")
    key = next((k for k in order if k in cells), order[0])
    nest = cells.get(key)
    if nest is None:
        return text + "; no NestNet row."
    text += f"; {nest['label']} {nest['psnr']:.2f} dB, {nest['psnr'] - best['psnr']:+.2f} dB"
    beats = sorted((c for m, c in cells.items() if m != key and c["psnr"] > nest["psnr"]),
                   key=lambda c: -c["psnr"])
    free = [f"{c['label']} {c['psnr']:.2f}" for c in beats if c["ground_truth_free"]]
    oracle = [f"{c['label'].replace(' (*oracle*)', '')} {c['psnr']:.2f}" for c in beats if not c["ground_truth_free"]]
    if free or oracle:
        text += f"; {nest['label']} loses to " + (", ".join(free) if free else "no ground-truth-free row")
        if oracle:
            text += " (and to the oracle " + ", ".join(oracle) + ")"
    else:
        text += f"; {nest['label']} beats every row, the oracles included"
    other = next((k for k in order if k in cells and k != key), None)
    if other is not None:
        alt = cells[other]
        text += f"; {alt['label']} {alt['psnr']:.2f} dB ({alt['psnr'] - best['psnr']:+.2f} dB)"
    ssim_best = best["ssim"]
    text += f"; SSIM {nest['ssim']:.3f} vs {ssim_best:.3f}"
    tv = cells.get("tv")
    if tv and tv["seconds"] > 0:
        text += f"; wall time {nest['label']}/TV {nest['seconds'] / tv['seconds']:.0f}× ({nest['seconds']:.1f} s " \
                f"vs {tv['seconds']:.1f} s)"
        if best_m != "tv" and best["seconds"] > 0:
            text += f", /{best['label']} {nest['seconds'] / best['seconds']:.0f}×"
    return text + "."


def _default_search(record: dict[str, Any]) -> bool:
    """Whether the task's default searches the INR's TV weight (then "+ TV search" is the default row)."""
    return bool((record.get("task_defaults") or {}).get("tv_search"))


def table(record: dict[str, Any]) -> str:
    """Plain-text tables, one per case."""
    summary = summarise(record)
    lines = []
    for case in _case_order(record):
        cells = summary[case]
        lines.append(f"{case}")
        lines.append(f"  {'method':36s} {'PSNR':>14s} {'SSIM':>14s} {'best (oracle)':>14s} {'step':>6s} {'s':>8s}")
        for m in _method_order(list(cells)):
            c = cells[m]
            n = len(c["seeds"])
            name = c["label"] + (f" [{c['pick']}]" if c["pick"] else "")
            lines.append(f"  {name:36s} {_fmt(c['psnr'], c['psnr_std'], 2, n):>14s} "
                         f"{_fmt(c['ssim'], c['ssim_std'], 3, n):>14s} {_fmt(c['best_psnr'], 0, 2, 1):>14s} "
                         f"{_fmt(c['chosen_step'], 0, 0, 1):>6s} {_fmt(c['seconds'], 0, 1, 1):>8s}")
        lines.append("  " + case_headline(cells, _default_search(record)))
    return "\n".join(lines)


def _case_title(case: str, record: dict[str, Any]) -> str:
    row = next(r for r in record["runs"] if r["case"] == case)
    noise = {"none": "no noise", "gauss1": "Gaussian noise σ = 1 % of max |sinogram|",
             "photon1e4": "photon noise I0 = 1e4 (μ: max line integral 2)"}.get(row["noise"], row["noise"])
    return f"chest {row['size']}², {row['views']} views over 180°, {noise}"


def results_section(record: dict[str, Any]) -> list[str]:
    """The Markdown section of the record (the benchmark and ``benchmarks/report.py`` both write it)."""
    summary = summarise(record)
    commands = record.get("commands") or [record.get("command", "?")]
    defaults = record.get("task_defaults", {})
    seeds = sorted({int(r["seed"]) for r in record.get("runs", [])})
    lines = [
        SECTION_TITLE, "",
        "Produced by: " + " then ".join(f"`{c}`" for c in commands) + f" (from {record.get('date', '?')}), torch "
        f"{record.get('torch', '?')}, {record.get('cpu_count', '?')} cores, {record.get('threads', '?')} thread per "
        f"process, {record.get('jobs', '?')} processes at a time, allocator {record.get('allocator', '?')}, load "
        f"average {', '.join(f'{x:.1f}' for x in record.get('load_average', []))} (a shared machine: the seconds are "
        f"noisy); {record.get('total_seconds', 0) / 60:.0f} min of runs in all. Results: "
        "`benchmarks/results/ct_table_cpu.json`.",
        "",
        f"What was done: `{record.get('image', IMAGE)}` (centre square, resized, zeroed outside the inscribed "
        "circle), parallel beam, angles `linspace(0, 180, views, endpoint=False)`, sinogram "
        "`reconstruct.radon.Radon` in float64; noise `gauss1` = Gaussian σ = 1 % of max |sinogram|, `photon1e4` = "
        "Poisson counts at I0 = 1e4 with μ = 2 / max line integral (the darkest ray keeps e⁻² ≈ 13.5 % of its "
        "photons), `−log(max(counts, 1)/I0)/μ`. Every row is `reconstruct.tasks.ct_reconstruct` (classical "
        "solvers on the same projector, INRs at the task's defaults: "
        f"{record.get('task_default_steps')} steps, data filter {defaults.get('data_filter')} at power "
        f"{defaults.get('data_filter_power')}, stop {defaults.get('stop')} with held_out {defaults.get('held_out')} "
        "(the ground-truth-free held-out stop, then a refit on all projections); the plain model rows fit with the "
        f"TV weight fixed at {defaults.get('tv_weight')} (`tv_search=False`), the '+ TV search' rows choose it on the "
        "held-out projections among it × (1/3, 1, 3) (`tv_search=True`, which became the task's default during "
        "these runs; see the note); the TV solver's held-out weight is chosen among "
        f"{defaults.get('tv_weight')} × 10^(k/4), k = −4…4 (the oracle's grid, by held-out error instead of the "
        "ground truth)"
        + (f"; INR overrides {record['inr_params']}" if record.get("inr_params") else "")
        + f"). PSNR/SSIM of the returned image on the inscribed circle. Seeds {','.join(map(str, seeds))} "
        "(noise and network seed alike; mean ± std over seeds where more than one). *oracle* marks what was "
        "chosen WITH the ground truth: the FBP filter of best PSNR, the TV weight of best PSNR on "
        f"{record.get('tv_oracle_grid', [])[0] if record.get('tv_oracle_grid') else '?'}–"
        f"{record.get('tv_oracle_grid', [0])[-1]} (9 weights, log grid), and the INR's best iterate (column "
        "'best iterate'); every other number is ground-truth-free. Step: the INR's returned step (the stop "
        "rule's choice, or the step count; in brackets the steps run in all: the held-out run, then the refit on all "
        "projections for the chosen steps; TV search: its three held-out runs are not counted, their time is) / "
        "the solver's iterations. The best iterate's step (after the @) counts from the start of the held-out run "
        "through the refit (TV search: in the refit). Seconds: of the whole call for the INRs (all its fits); for "
        "the classical searches, of the one picked (the FBP search took about 5×, the TV-oracle search 9×; "
        "the held-out TV weight is 9 solves and the final one, all counted). The seconds were measured with two "
        "rows running at once on a machine shared with other jobs, so their ratios are rough (±2×).",
        "",
    ]
    for note in record.get("notes", []):
        lines += ["Note: " + note, ""]
    if not record.get("tv_search_available", False):
        lines += ["Not run: the TV held-out-weight rows (`tv_search`), which `ct_reconstruct` did not have when "
                  "these rows were run.", ""]
    for case in _case_order(record):
        cells = summary[case]
        lines += [f"**{_case_title(case, record)}** — {case_headline(cells, _default_search(record))}", "",
                  "| method | ground-truth-free | PSNR dB | SSIM | best iterate PSNR (*oracle*) | step (of steps run) "
                  "| seconds |",
                  "|---|---|---|---|---|---|---|"]
        for m in _method_order(list(cells)):
            c = cells[m]
            n = len(c["seeds"])
            name = c["label"] + (f": {c['pick']}" if c["pick"] else "")
            if c["kind"] == "inr":
                name = f"**{name}**" if m.endswith(":nestnet") else name
            lines.append(f"| {name} | {'yes' if c['ground_truth_free'] else 'no'} | "
                         f"{_fmt(c['psnr'], c['psnr_std'], 2, n)} | {_fmt(c['ssim'], c['ssim_std'], 3, n)} | "
                         f"{_fmt(c['best_psnr'], c['best_psnr_std'], 2, n)}"
                         + (f" @ {c['rows'][0]['best_step']}" if c["best_psnr"] == c["best_psnr"] and n == 1 else "")
                         + f" | {_fmt(c['chosen_step'], 0, 0, 1)}"
                         + (f" ({_fmt(c['steps'], 0, 0, 1)})" if c["kind"] == "inr" else "")
                         + f" | {_fmt(c['seconds'], c['seconds_std'], 1, n)} |")
        lines.append("")
    return lines


def write_section(path: Path, section: list[str]) -> None:
    """Replace the section :data:`SECTION_TITLE` in ``path`` (up to the next heading), or append it."""
    from reconstruct.app.files import atomic_write_text

    path = Path(path)
    text = path.read_text() if path.exists() else ""
    block = "\n".join(section).rstrip() + "\n\n"
    pattern = re.compile(r"^" + re.escape(SECTION_TITLE) + r"\n.*?(?=^#{1,3} |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block
    atomic_write_text(path, text.rstrip() + "\n")


