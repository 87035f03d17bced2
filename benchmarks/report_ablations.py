"""The ablation sections of the benchmark report: NestNet variants on the image task, equal parameters,
equal wall-clock, and the task-specific prior on denoising and super-resolution.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks.common import TASK_METRICS, TASK_TITLES, nestnet_defaults
from benchmarks.report_tables import (
    METRIC_LABELS,
    _digits,
    _fmt,
    _fmt_params,
    _pretty,
    _produced_by,
    _rank,
    aggregate,
    load_records,
)

__all__ = ["ABLATION_TITLES"]

ABLATION_TITLES = {
    "height": "Height 2 vs 3 vs 4",
    "init": "Prescribed vs random subnetwork initialisation",
    "subnets": "r = 1 vs r = 2 subnetworks",
    "share": "Subnetworks shared across layers vs per layer",
    "equal_params": "Equal parameter count",
    "equal_time": "Equal wall-clock",
    "height_time": "Height 2 vs 3 vs 4 at equal wall-clock (and equal parameters)",
    "frequencies": "Number of Fourier frequencies m",
    "prior": "Task-specific prior: NestNet at its image-fitting settings on denoising and SR",
}


def _ablation_table(stats: dict[str, dict], metrics: tuple[str, ...], extra_cols: bool = True) -> list[str]:
    primary = metrics[0]
    head = [
        "Variant",
        "Params",
        f"{METRIC_LABELS[primary]} final",
        "per seed",
        f"{METRIC_LABELS[primary]} best",
        "ms/step",
        "Steps",
        "Time (s)",
        "Diverged",
    ]
    if "ssim" in metrics:
        head.insert(4, "SSIM final")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in _rank(stats, primary):
        s = stats[label]
        vals = ", ".join(
            f"{v:.{_digits(primary)}f}" if v is not None else "NaN" for v in s["final_values"][primary]
        )
        row = [
            _pretty(label),
            _fmt_params(s["params"]),
            _fmt(s["final"][primary], primary, s["seeds"]),
            vals,
            _fmt(s["best"][primary], primary, s["seeds"]),
            f"{1000 * s['s_per_step'][0]:.0f}" if s["s_per_step"] else "—",
            f"{s['steps'][0]:.0f}" if s["steps"] else "—",
            f"{s['seconds'][0]:.1f}" if s["seconds"] else "—",
            f"{s['failed']}/{s['seeds']}",
        ]
        if "ssim" in metrics:
            row.insert(4, _fmt(s["final"].get("ssim"), "ssim", s["seeds"]))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _ablation_conclusion(
    name: str, stats: dict[str, dict], metric: str, default_label: str | None
) -> list[str]:
    order = [k for k in _rank(stats, metric) if stats[k]["final"].get(metric) is not None]
    if not order:
        return ["- No variant finished without diverging."]
    best = order[0]
    d = _digits(metric)
    lines = [
        f"- Best by mean final {METRIC_LABELS[metric]}: **{_pretty(best)}** "
        f"({stats[best]['final'][metric][0]:.{d}f} ± {stats[best]['final'][metric][1]:.{d}f})."
    ]
    if (
        default_label
        and default_label in stats
        and default_label != best
        and stats[default_label]["final"][metric]
    ):
        gap = stats[best]["final"][metric][0] - stats[default_label]["final"][metric][0]
        spread = max(stats[best]["final"][metric][1], stats[default_label]["final"][metric][1])
        verdict = "larger than" if abs(gap) > 2 * spread else "within about twice"
        lines.append(
            f"- Against the main table's configuration ({default_label}): {gap:+.{d}f}, {verdict} the "
            f"seed spread (std up to {spread:.{d}f})."
        )
    steps = {k: s["s_per_step"][0] for k, s in stats.items() if s["s_per_step"]}
    if default_label in steps and len(steps) > 1:
        lines.append(
            "- Time per step relative to the default: "
            + ", ".join(f"{_pretty(k)} {v / steps[default_label]:.2f}×" for k, v in steps.items())
            + "."
        )
    failed = {k: s["failed"] for k, s in stats.items() if s["failed"]}
    if failed:
        lines.append(
            "- Diverged (NaN/Inf loss): " + ", ".join(f"{k} in {v} seed(s)" for k, v in failed.items()) + "."
        )
    return lines


_DEFAULT_VARIANT = ("height", "init", "subnets", "share", "frequencies")

# The NestNet constructor argument each ablation varies, for the decision line.
_ABLATION_ARGUMENT = {"height": "height", "init": "subnet_init", "subnets": "num_subnets",
                      "share": "share_subnets", "frequencies": "num_frequencies"}
# A variant that is clearly better but costs more than this factor in step time does not become the
# default: the default has to stay cheap enough for the napari panels and CPU batch runs.
_DEFAULT_COST_LIMIT = 1.5


def _default_decision(name: str, stats: dict[str, dict], metric: str, default_label: str | None) -> list[str]:
    """One line: does the measurement support the library default, or argue for changing it?"""
    if not default_label or default_label not in stats or not stats[default_label]["final"].get(metric):
        return []
    order = [k for k in _rank(stats, metric) if stats[k]["final"].get(metric) is not None]
    argument = f"`NestNet({_ABLATION_ARGUMENT[name]}=…)`"
    best = order[0]
    if best == default_label:
        return [f"- **Library default kept: {_pretty(default_label)}** — the best variant in this measurement "
                f"({argument})."]
    gap = stats[best]["final"][metric][0] - stats[default_label]["final"][metric][0]
    spread = max(stats[best]["final"][metric][1], stats[default_label]["final"][metric][1])
    steps = {k: v["s_per_step"][0] for k, v in stats.items() if v["s_per_step"]}
    cost = steps[best] / steps[default_label] if best in steps and default_label in steps else None
    if min(stats[best]["seeds"], stats[default_label]["seeds"]) < 2:
        return [f"- **Library default kept: {_pretty(default_label)}** — one seed only, no spread to judge a "
                f"change by ({argument})."]
    if abs(gap) <= 2 * spread:
        return [f"- **Library default kept: {_pretty(default_label)}** — {_pretty(best)} is ahead by less than "
                f"twice the seed spread, which does not justify a change ({argument})."]
    if cost is not None and cost > _DEFAULT_COST_LIMIT:
        return [f"- **Library default kept: {_pretty(default_label)}** — {_pretty(best)} is clearly better "
                f"({gap:+.{_digits(metric)}f}) but takes {cost:.1f}× the time per step (limit for a default: "
                f"{_DEFAULT_COST_LIMIT}×); choose it with {argument} when quality matters more than time."]
    return [f"- **The measurement argues for changing the library default** from {_pretty(default_label)} to "
            f"{_pretty(best)} ({gap:+.{_digits(metric)}f}, beyond twice the seed spread, at "
            f"{'?' if cost is None else f'{cost:.2f}'}× the step time; {argument})."]


def _height_time_notes(records: list[dict], stats: dict[str, dict], primary: str) -> list[str]:
    """How the equal-wall-clock height runs were sized, and what they say."""
    budgets = [r.get("time_budget_s") for r in records if r.get("time_budget_s")]
    probes = {r["label"]: c["calibration"]["s_per_step"] for r in records for c in r["cases"]
              if c.get("calibration")}
    lines = []
    if budgets:
        lines.append(
            f"- Budget: {statistics.fmean(budgets):.1f} s, the wall-clock of the main table's NestNet run "
            "(height 2). Each other height first times "
            + ", ".join(f"{_pretty(k)} {1000 * v:.0f} ms" for k, v in sorted(probes.items()))
            + " per step on a short probe fit of its own network, runs budget / that many steps (the "
            "learning-rate schedule over those steps) and stops hard at the budget. The parameter counts "
            "differ by the few weights of the deeper subnetworks only, so this is also equal parameters."
        )
    order = [k for k in _rank(stats, primary) if stats[k]["final"].get(primary) is not None]
    if order:
        lines.append(f"- At equal wall-clock {_pretty(order[0])} is best by final {METRIC_LABELS[primary]}"
                     + (f"; then {', '.join(_pretty(k) for k in order[1:])}." if len(order) > 1 else "."))
    return lines


def _default_label(name: str, kwargs: dict[str, Any]) -> str | None:
    """The ablation variant label the main table's NestNet configuration corresponds to."""
    if name not in _DEFAULT_VARIANT:
        return None
    cfg = nestnet_defaults()
    cfg.update(kwargs)
    return {
        "height": f"height={cfg['height']}",
        "init": f"init={cfg['subnet_init']}",
        "subnets": f"r={cfg['num_subnets']}",
        "share": "shared" if cfg["share_subnets"] else "per-layer",
        "frequencies": f"m={cfg['num_frequencies']}",
    }[name]


def _prior_section(results: Path, protocol: str, records: list[dict]) -> tuple[list[str], list[str]]:
    """NestNet at its image-fitting settings next to the main table of each task it was run on.

    Returns the section and its headline lines."""
    head: list[str] = []
    lines = [f"#### {ABLATION_TITLES['prior']}", "",
             "`reconstruct.tasks` gives NestNet (only) fewer Fourier frequencies for denoising and "
             "super-resolution; the baselines run at their image-fitting settings. Here NestNet runs at its "
             "image-fitting settings too (m = 32 frequencies), so the comparison is like for like; the other "
             "rows are the main table's runs with the same seeds.", ""]
    for task in sorted({r["task"] for r in records}):
        task_recs = [r for r in records if r["task"] == task]
        seeds = {r["seed"] for r in task_recs}
        metrics = TASK_METRICS[task]
        primary = metrics[0]
        main = [r for r in load_records(results / protocol / task) if r["seed"] in seeds]
        renamed = {"nestnet": "nestnet task default"}
        recs = task_recs + [{**r, "label": renamed.get(r["label"], r["label"])} for r in main]
        for group, stats in aggregate(recs, metrics).items():
            lines += [f"{TASK_TITLES[task]} — {group}:", ""] + _ablation_table(stats, metrics) + [""]
            order = [k for k in _rank(stats, primary) if stats[k]["final"].get(primary) is not None]
            fair, default = "nestnet image settings", "nestnet task default"
            if fair not in order:
                continue
            d, unit = _digits(primary), " dB" if primary == "psnr" else ""
            others = [k for k in order if k not in (fair, default)]
            rank = [k for k in order if k != default].index(fair) + 1
            mine = stats[fair]["final"][primary][0]
            text = f"- Like for like, NestNet ranks {rank} of {len(others) + 1} INRs ({mine:.{d}f}{unit}"
            if default in order:
                theirs = stats[default]["final"][primary][0]
                text += f"; the task default gives {theirs:.{d}f}{unit}, {theirs - mine:+.{d}f} from the prior"
            lines += [text + ")."]
            if others:
                rival = others[0]
                verdict = "**comes first**" if rank == 1 else f"**ranks {rank} of {len(others) + 1}**"
                head.append(
                    f"- **{TASK_TITLES[task]} ({group})**, like for like (NestNet at its image-fitting settings, "
                    f"as the baselines; ablation *prior*): NestNet {verdict} with {mine:.{d}f}{unit}; best other "
                    f"INR {_pretty(rival)} {stats[rival]['final'][primary][0]:.{d}f}{unit} "
                    f"(seeds {', '.join(map(str, sorted(seeds)))})."
                )
            lines.append("")
    lines += _produced_by(records)
    return lines, head


def _ablation_sections(results: Path, protocol: str) -> tuple[list[str], list[str]]:
    """The ablation tables, and the headline lines they add."""
    base = results / protocol / "ablation"
    head: list[str] = []
    if not base.is_dir():
        return [], head
    image_records = load_records(results / protocol / "image")
    main_nest = [r for r in image_records if r["label"] == "nestnet"]
    lines = ["### Ablations (NestNet; image task unless stated)", ""]
    metrics = TASK_METRICS["image"]
    primary = metrics[0]
    for name in ("height", "init", "subnets", "share", "frequencies", "equal_params", "equal_time", "height_time",
                 "prior"):
        records = load_records(base / name)
        if not records:
            continue
        if name == "prior":
            section, prior_head = _prior_section(results, protocol, records)
            lines += section
            head += prior_head
            continue
        seeds = sorted({r["seed"] for r in records})
        lines += [f"#### {ABLATION_TITLES[name]}", ""]
        default_label = (
            _default_label(name, main_nest[0].get("model_kwargs") or {}) if main_nest else None
        )
        recs = list(records)
        if name in _DEFAULT_VARIANT and default_label:
            # The default configuration: its re-run among the ablations (same machine load), else
            # the main table's NestNet records.
            defaults = load_records(base / "default") or main_nest
            for r in defaults:
                if r["seed"] in seeds:
                    recs.append({**r, "label": default_label})
        if name == "equal_params":
            recs += [r for r in image_records if r["seed"] in seeds]
        if name == "equal_time":
            recs += [r for r in main_nest if r["seed"] in seeds]
        if name == "height_time" and main_nest:  # the main table's NestNet run is the default height's row
            label = _default_label("height", main_nest[0].get("model_kwargs") or {})
            recs += [{**r, "label": label} for r in main_nest if r["seed"] in seeds]
        agg = aggregate(recs, metrics)
        for group, stats in agg.items():
            if len(agg) > 1:
                lines += [f"Group {group}:", ""]
            lines += _ablation_table(stats, metrics)
            lines.append("")
            if name == "equal_params":
                small = [k for k in stats if k.startswith("nestnet width")]
                lines.append(
                    f"- A NestNet narrowed to {small[0].split('=')[1] if small else '?'} hidden units "
                    "has about SIREN's parameter count; the baselines are the main table's runs "
                    "(same seeds, same data, same steps)."
                )
                order = [k for k in _rank(stats, primary) if stats[k]["final"].get(primary) is not None]
                if small and small[0] in order:
                    lines.append(
                        f"- At equal parameters the narrowed NestNet ranks {order.index(small[0]) + 1} of "
                        f"{len(order)} by final PSNR."
                    )
            elif name == "equal_time":
                budgets = [r.get("time_budget_s") for r in records if r.get("time_budget_s")]
                if budgets:
                    lines.append(
                        f"- Budget: {statistics.fmean(budgets):.1f} s, the wall-clock NestNet 2 × 256 took "
                        "for the main table's steps. Each model's step count is that budget divided by "
                        "its own time per step, both measured in the main table's runs (so the counts "
                        "compare models under the same machine load), with a hard stop at the budget; the "
                        "learning-rate schedule then completes. The *Time* column is what these runs took; "
                        "on a shared CPU the load changed between phases, so it need not equal the budget."
                    )
                order = [k for k in _rank(stats, primary) if stats[k]["final"].get(primary) is not None]
                if "nestnet" in order:
                    lines.append(
                        f"- At equal wall-clock NestNet ranks {order.index('nestnet') + 1} of {len(order)}"
                        + (f", behind {_pretty(order[0])}." if order[0] != "nestnet" else ".")
                    )
            elif name == "height_time":
                lines += _height_time_notes(records, stats, primary)
            else:
                lines += _ablation_conclusion(name, stats, primary, default_label)
                lines += _default_decision(name, stats, primary, default_label)
            lines.append("")
        lines += _produced_by(records)
    return lines, head
