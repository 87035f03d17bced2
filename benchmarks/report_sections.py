"""Sections of the benchmark report beside the task tables and ablations: the environment line, the
learning-rate sweep, and the speed and memory records of the ``bench_*.py`` scripts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import MODEL_NAMES, read_json
from benchmarks.report_tables import _commands, _pretty

__all__: list[str] = []

# ---------------------------------------------------------------------------------------------- sections
def _env_lines(records: list[dict]) -> list[str]:
    envs = [r.get("environment", {}) for r in records]
    if not envs:
        return []

    def values(key: str) -> str:
        vals = sorted({str(e.get(key)) for e in envs if e.get(key) is not None})
        return ", ".join(vals) or "—"

    dates = sorted(r.get("date", "") for r in records if r.get("date"))
    if not dates:
        return []
    import datetime

    fmt = "%Y-%m-%d %H:%M:%S"
    try:
        span = datetime.datetime.strptime(dates[-1], fmt) - datetime.datetime.strptime(dates[0], fmt)
        span_text = f" ({span.total_seconds() / 60:.0f} min from the first record written to the last)"
    except ValueError:
        span_text = ""
    return [
        f"Environment of these records: device {values('device')}, CPU {values('cpu')} "
        f"({values('cpu_count')} cores), torch {values('torch')}, {values('threads')} thread(s) per run, "
        f"{values('jobs')} run(s) in parallel, allocator {values('allocator')}, denormals flushed "
        f"{values('flush_denormal')}, code {values('git_commit')}; recorded {dates[0]} … {dates[-1]}"
        f"{span_text}."
    ]


def _sweep_section(results: Path, protocol: str) -> list[str]:
    folder = results / protocol / "lr_sweep"
    recs = [read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    if not recs:
        return []
    table: dict[str, dict[float, Any]] = defaultdict(dict)
    base: dict[str, float] = {}
    desc = ""
    for r in recs:
        case = r["cases"][0]
        desc = case["description"]
        mult = float(r["lr_multiplier"])
        table[r["model"]][mult] = case["final"].get("psnr") if case["status"] == "ok" else None
        base[r["model"]] = r["lr"] / mult
    mults = sorted({m for row in table.values() for m in row})
    lines = [
        "### Learning-rate sweep",
        "",
        f"Development image: {desc} (not a test image), seed 0, the image task's step budget. "
        "Each model's default learning rate (`reconstruct.tasks.default_lr`) times the multiplier; "
        "the best final PSNR (bold) sets the multiplier every task then uses for that model.",
        "",
        "| Model | default lr | " + " | ".join(f"×{m:g}" for m in mults) + " |",
        "|" + "---|" * (len(mults) + 2),
    ]
    for model in [m for m in MODEL_NAMES if m in table] + sorted(set(table) - set(MODEL_NAMES)):
        row = table[model]
        finite = {m: v for m, v in row.items() if v is not None}
        best = max(finite, key=finite.get) if finite else None
        cells = []
        for m in mults:
            v = row.get(m, "n/a")
            if v == "n/a":
                cells.append("")
            elif v is None:
                cells.append("diverged")
            else:
                cells.append(f"**{v:.2f}**" if m == best else f"{v:.2f}")
        lines.append(f"| {_pretty(model)} | {base[model]:.1g} | " + " | ".join(cells) + " |")
    edge = [
        m
        for m, row in table.items()
        if row
        and {k for k, v in row.items() if v is not None}
        and max((k for k, v in row.items() if v is not None), key=lambda k: row[k]) in (mults[0], mults[-1])
    ]
    if edge:
        lines += [
            "",
            "The best multiplier lies at the edge of the sweep for "
            + ", ".join(_pretty(m) for m in edge)
            + ": a wider sweep might find more for them.",
        ]
    lines += ["", f"Produced by: `{_commands(recs)[0]}`" if _commands(recs) else "", ""]
    return lines

def _speed_section(results: Path) -> list[str]:
    lines: list[str] = []
    for device in ("cpu", "cuda"):
        path = results / f"activation_{device}.json"
        text_path = results / f"activation_{device}.txt"
        if not path.exists() and text_path.exists():
            # only the printed output survived that run: show it as recorded
            if not lines:
                lines += ["## Speed and memory", ""]
            lines += [f"### Nested activation, one train step ({device}, as printed)", "", "```"]
            lines += text_path.read_text().rstrip().splitlines() + ["```", ""]
            continue
        if not path.exists():
            continue
        rec = read_json(path)
        if not lines:
            lines += ["## Speed and memory", ""]
        lines += [
            f"### Nested activation, one train step ({device}: {rec.get('device_name', '?')}, "
            f"{rec.get('points', '?')} coordinates)",
            "",
            f"Produced by: `{rec.get('command', '?')}` on {rec.get('date', '?')}, "
            f"torch {rec.get('torch', '?')}, {rec.get('cpu_count', '?')} cores.",
            "",
            "| Allocator | Model | median ms/step | min ms/step | peak MB | peak measured as |",
            "|---|---|---|---|---|---|",
        ]
        for row in rec.get("rows", []):
            if "skipped" in row:
                lines.append(
                    f"| {row.get('allocator_requested', row.get('allocator'))} | {row['model']} | "
                    f"skipped: {row['skipped']} | | | |"
                )
                continue
            lines.append(
                f"| {row.get('allocator_requested', row.get('allocator'))} | {row['model']} | "
                f"{row['median_ms']:.1f} | {row['min_ms']:.1f} | {row['peak_mb']:.0f} | "
                f"{row.get('peak_kind', '')} |"
            )
        ratios = rec.get("ratios", {})
        if ratios:
            lines += ["", "Ratios (same allocator, same run):", ""]
            for alloc, r in ratios.items():
                if isinstance(r, dict) and r:
                    parts = []
                    for k, v in r.items():
                        if isinstance(v, dict):
                            parts.append(f"{k}: " + ", ".join(f"{m} {x:.2f}×" for m, x in v.items()))
                        else:
                            parts.append(f"{k} = {v:.2f}")
                    lines.append(f"- {alloc}: " + "; ".join(parts))
        lines.append("")
    for path in sorted(results.glob("models_*.json")):
        lines += (["## Speed and memory", ""] if not lines else []) + _models_section(read_json(path))
    for path in sorted(results.glob("scaling_*.json")):
        lines += (["## Speed and memory", ""] if not lines else []) + _scaling_section(read_json(path))
    for path in sorted({*results.glob("batch_*.json"), *results.glob("bench_batch*.json")}):
        rec = read_json(path)
        if not lines:
            lines += ["## Speed and memory", ""]
        lines += _generic_benchmark(rec, path.stem)
    for path in sorted(results.glob("slice_models_*.json")):
        from benchmarks.bench_slice_models import results_section

        lines += (["## Speed and memory", ""] if not lines else []) + results_section(read_json(path))
    return lines


def _machine(rec: dict) -> str:
    parts = [f"torch {rec.get('torch', '?')}", f"{rec.get('cpu_count', '?')} cores"]
    if rec.get("threads"):
        parts.append(f"{rec['threads']} thread(s)")
    if rec.get("allocator"):
        parts.append(f"allocator {rec['allocator']}")
    if rec.get("load_average"):
        parts.append("load average " + ", ".join(f"{x:.1f}" for x in rec["load_average"]))
    return ", ".join(parts)


def _models_section(rec: dict) -> list[str]:
    rows = sorted(rec.get("rows", []), key=lambda r: r["median_ms"])
    if not rows:
        return []
    lines = [
        f"### Train step of every network ({rec.get('points', '?')} coordinates, 2 × 256, CPU)", "",
        f"Produced by: `{rec.get('command', '?')}` on {rec.get('date', '?')}; {_machine(rec)}.", "",
        "| Model | Params | median ms/step | relative to SIREN |", "|---|---|---|---|",
    ]
    siren = next((r["median_ms"] for r in rows if r["model"] == "siren"), None)
    for r in rows:
        rel = f"{r['median_ms'] / siren:.2f}×" if siren else "—"
        lines.append(f"| {r['model']} | {r['params'] / 1000:.1f} k | {r['median_ms']:.0f} | {rel} |")
    by = {r["model"]: r["median_ms"] for r in rows}
    notes = []
    if "nestnet" in by and "nestnet naive" in by:
        notes.append(f"naive/fused NestNet = {by['nestnet naive'] / by['nestnet']:.2f}")
    if "nestnet" in by and "nestnet r=1" in by:
        notes.append(f"NestNet r=2/r=1 = {by['nestnet'] / by['nestnet r=1']:.2f}")
    if notes:
        lines += ["", "- " + "; ".join(notes) + "."]
    return lines + [""]


def _scaling_section(rec: dict) -> list[str]:
    lines = ["### Scaling and memory of big volumes (NestNet 2 × 256, r = 2, CPU)", "",
             f"Produced by: `{rec.get('command', '?')}` on {rec.get('date', '?')}; {_machine(rec)}.", ""]
    steps = rec.get("steps", [])
    if steps:
        lines += ["| Coordinates | ms/step | µs/point |", "|---|---|---|"]
        for r in steps:
            exp = math.log2(r["points"])
            name = f"2^{exp:.0f}" if exp.is_integer() else str(r["points"])
            lines.append(f"| {name} = {r['points']:,} | {r['median_ms']:.0f} | {r['us_per_point']:.1f} |")
        per_point = [r["us_per_point"] for r in steps]
        spread = max(per_point) / min(per_point)
        verdict = ("the step time grows linearly" if spread < 1.5
                   else "the per-point cost is not constant, so the growth is not linear")
        lines += ["", f"- Train-step time per coordinate stays within {min(per_point):.1f}–{max(per_point):.1f} µs "
                  f"over a {steps[-1]['points'] // steps[0]['points']}× range of coordinate counts "
                  f"(max/min {spread:.2f}): {verdict}.", ""]
    renders = rec.get("render", [])
    if renders:
        lines += ["Rendering a D³ volume with `reconstruct.grid.render` (65,536-point chunks, fresh process each):",
                  "", "| Grid | seconds | peak RSS growth (MB) | of which output (MB) |", "|---|---|---|---|"]
        for r in renders:
            lines.append(f"| {r['size']}³ | {r['seconds']:.1f} | {r['peak_rss_growth_mb']:.0f} | "
                         f"{r['output_mb']:.0f} |")
        over = [r["peak_rss_growth_mb"] - r["output_mb"] for r in renders]
        lines += ["", f"- Beyond the output itself, rendering needs {min(over):.0f}–{max(over):.0f} MB whatever the "
                  "grid size (one chunk's activations and the first call's torch.compile): memory is bounded by the "
                  "output.", ""]
    occ = rec.get("occupancy_fit", [])
    if occ:
        lines += ["Whole occupancy fit (`reconstruct.occupancy.fit_occupancy`, default batch, one IoU evaluation, "
                  "final and best-iterate renderings; a generated sphere-and-torus volume):", "",
                  "| Volume | steps | batch | seconds | peak RSS growth (MB) | volume (MB) | IoU |",
                  "|---|---|---|---|---|---|---|"]
        for r in occ:
            lines.append(f"| {r['size']}³ | {r['steps']} | {r['batch_size']:,} | {r['seconds']:.0f} | "
                         f"{r['peak_rss_growth_mb']:.0f} | {r['volume_mb']:.0f} | {r['iou']:.4f} |")
        lines.append("")
    return lines


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, type(None))) or (
        isinstance(v, list) and all(isinstance(x, (int, float, str)) for x in v)
    )


def _rows_table(rows: list[dict], first: str | None = None, names: list[str] | None = None) -> list[str]:
    keys = [k for k in rows[0] if all(_scalar(r.get(k)) for r in rows)]
    head = ([first] if first else []) + keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows):
        cells = ([names[i]] if names else []) + [_cell(r.get(k)) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _generic_benchmark(rec: dict, name: str) -> list[str]:
    """Another benchmark's JSON (e.g. ``bench_batch``): its command, scalars and tables, as recorded."""
    lines = [f"### {rec.get('benchmark', name)}", ""]
    if rec.get("command"):
        lines += [f"Produced by: `{rec['command']}`" + (f" on {rec['date']}" if rec.get("date") else ""), ""]
    skip = ("command", "date", "benchmark", "note")
    scalars = {k: v for k, v in rec.items() if _scalar(v) and k not in skip}
    if scalars:
        lines += ["- " + ", ".join(f"{k}: {_cell(v)}" for k, v in scalars.items()), ""]
    for key, value in rec.items():
        if key == "rows" and isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            lines += _rows_table(value)
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            lines += [f"{key}:", ""] + _rows_table(list(value.values()), key, list(value))
        elif isinstance(value, dict) and value:
            lines += [f"- {key}: " + ", ".join(f"{k} = {_cell(v)}" for k, v in value.items()), ""]
    if rec.get("note"):
        lines += [f"Note: {rec['note']}", ""]
    return lines


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)

