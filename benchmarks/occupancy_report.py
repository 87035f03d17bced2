"""The occupancy benchmark's report: its table, headline and ``benchmarks/RESULTS.md`` section.

Renders a record of :mod:`benchmarks.bench_occupancy` (its ``runs``: one fit of a model on a mesh at a
seed and step budget) as the section :data:`SECTION_TITLE`; ``benchmarks/report.py`` renders the same
section from the committed JSON when it regenerates the report.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

SECTION_TITLE = "### Occupancy at 256³ (five meshes, CPU)"
#: The issue's goal: NestNet IoU at 0.5 on the whole 256³ grid of every mesh.
GOALS = {"nestnet": 0.995}


def _key(run: dict[str, Any]) -> tuple[str, str, int, int]:
    return run["mesh"], run["model"], int(run["seed"]), int(run["steps"])


def _summary(record: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(mesh, steps, model) -> IoU mean/min/max over seeds, mean ms/step, max peak memory, seeds."""
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for run in record.get("runs", []):
        groups.setdefault((run["mesh"], int(run["steps"]), run["model"]), []).append(run)
    summary = {}
    for key, group in groups.items():
        ious = [r["iou"] for r in group]
        summary[key] = {"iou": statistics.fmean(ious), "iou_min": min(ious), "iou_max": max(ious),
                        "ms_per_step": statistics.fmean(r["ms_per_step"] for r in group),
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in group),
                        "seconds": statistics.fmean(r["seconds"] for r in group),
                        "seeds": sorted(int(r["seed"]) for r in group)}
    return summary


def _ordered_models(record: dict[str, Any]) -> list[str]:
    models = list(dict.fromkeys(r["model"] for r in record.get("runs", [])))
    return sorted(models, key=lambda m: (m != "nestnet", models.index(m)))


def _rows(record: dict[str, Any]) -> list[tuple[str, int]]:
    return sorted({(r["mesh"], int(r["steps"])) for r in record.get("runs", [])})


def _ratio_cell(cell: dict | None, ref: dict | None, field: str, missing: str = "–") -> str:
    """``cell[field]``, and its ratio to ``ref``'s when that is another model's."""
    if not cell:
        return missing
    return f"{cell[field]:.0f}" + (f" ({cell[field] / ref[field]:.2f}×)" if ref and cell is not ref else "")


def _iou_cell(cell: dict | None) -> str:
    """Mean IoU over the seeds (and their range, with several)."""
    if not cell:
        return "–"
    spread = f" ({cell['iou_min']:.4f}–{cell['iou_max']:.4f})" if len(cell["seeds"]) > 1 else ""
    return f"{cell['iou']:.4f}{spread}"


def table(record: dict[str, Any]) -> str:
    """Plain-text table: per mesh the IoU of every model, its ms/step and peak memory as ratios to NestNet's."""
    summary, models = _summary(record), _ordered_models(record)
    base = models[0] if models else None
    head = f"{'mesh':10s} {'steps':>5s} " + " ".join(f"{m + ' IoU':>12s}" for m in models)
    head += "  " + " ".join(f"{m + ' ms':>12s}" for m in models) + "  " + " ".join(f"{m + ' MiB':>12s}"
                                                                                    for m in models)
    lines = [head]
    for mesh, steps in _rows(record):
        cells = [summary.get((mesh, steps, m)) for m in models]
        ref = summary.get((mesh, steps, base))
        iou = " ".join(f"{c['iou']:12.4f}" if c else f"{'-':>12s}" for c in cells)
        ms = " ".join(f"{_ratio_cell(c, ref, 'ms_per_step', '-'):>12s}" for c in cells)
        mem = " ".join(f"{_ratio_cell(c, ref, 'peak_rss_mib', '-'):>12s}" for c in cells)
        lines.append(f"{mesh:10s} {steps:5d} {iou}  {ms}  {mem}")
    return "\n".join(lines)


def headline(record: dict[str, Any]) -> str:
    """One line: per step budget, where NestNet reaches the goal and where it comes first."""
    summary, models = _summary(record), _ordered_models(record)
    if "nestnet" not in models:
        return "No NestNet fits in this record."
    goal = GOALS["nestnet"]
    rows = _rows(record)
    parts = []
    for budget in sorted({s for _, s in rows}):
        reached, missed, first, not_first = [], [], [], []
        for mesh, steps in rows:
            mine = summary.get((mesh, steps, "nestnet"))
            if steps != budget or not mine:
                continue
            (reached if mine["iou"] >= goal else missed).append(f"{mesh} {mine['iou']:.4f}")
            others = {m: summary[(mesh, steps, m)]["iou"] for m in models
                      if m != "nestnet" and (mesh, steps, m) in summary}
            if others:
                best_other = max(others, key=others.get)
                if mine["iou"] >= others[best_other]:
                    first.append(f"{mesh} ({best_other} {others[best_other]:.4f})")
                else:
                    not_first.append(f"{mesh} ({best_other} {others[best_other]:.4f})")
        if not reached and not missed:
            continue
        part = f"at {budget} steps NestNet reaches IoU ≥ {goal} on " + (", ".join(reached) if reached else "no mesh")
        if missed:
            part += ", misses it on " + ", ".join(missed)
        if first:
            part += "; it comes first on " + ", ".join(first)
        if not_first:
            part += ("; it is not first" if not first else ", not") + " on " + ", ".join(not_first)
        parts.append(part)
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def _allocators(record: dict[str, Any]) -> str:
    """The allocator(s) the fits ran under (each run's, else the record's)."""
    names = sorted({r.get("allocator") or record.get("allocator") or "?" for r in record.get("runs", [])})
    return " / ".join(names) if names else str(record.get("allocator", "?"))


def _allocator_line(record: dict[str, Any]) -> str | None:
    """When the fits ran under several allocators: how many under each and NestNet's memory and speed there."""
    runs = record.get("runs", [])
    by_allocator: dict[str, list[dict]] = {}
    for run in runs:
        by_allocator.setdefault(run.get("allocator") or record.get("allocator") or "?", []).append(run)
    if len(by_allocator) < 2:
        return None
    parts = []
    for name, group in sorted(by_allocator.items()):
        seeds = sorted({int(r["seed"]) for r in group})
        mine = [r for r in group if r["model"] == "nestnet"]
        text = f"{name} {len(group)} fits (seeds {','.join(map(str, seeds))})"
        if mine:
            text += (f", NestNet's peak {statistics.fmean(r['peak_rss_mib'] for r in mine):.0f} MiB and "
                     f"{statistics.fmean(r['ms_per_step'] for r in mine):.0f} ms/step on average")
        parts.append(text)
    return ("- The fits ran under different allocators: "
            + "; ".join(parts) + ". The peak memory columns hold the allocator's share too; compare like with like.")


def results_section(record: dict[str, Any]) -> list[str]:
    """The Markdown section of one record (the benchmark and ``benchmarks/report.py`` both write it)."""
    summary, models = _summary(record), _ordered_models(record)
    base = models[0] if models else None
    commands = record.get("commands") or [record.get("command", "?")]
    lines = [
        SECTION_TITLE, "",
        "Produced by: " + " then ".join(f"`{c}`" for c in commands) + f" on {record.get('date', '?')}, torch "
        f"{record.get('torch', '?')}, {record.get('cpu_count', '?')} cores, {record.get('threads', '?')} thread(s), "
        f"allocator {_allocators(record)}, load average "
        f"{', '.join(f'{x:.1f}' for x in record.get('load_average') or [])} (a shared machine); "
        f"{record.get('total_seconds', 0) / 60:.0f} min in all.",
        "",
        f"What was done: each mesh voxelised at {record.get('resolution')}³ over its tight bounding box (cubic "
        "cells, as `benchmarks.cases`; shapes below), every model fitted by `reconstruct.tasks.fit_occupancy` at "
        "the task's defaults (network, learning rate, 65,536 random voxels per step, lr decay) for the steps "
        f"shown (the task's default is {record.get('task_default_steps')}), one fit per subprocess, on the CPU at "
        "one thread; the IoU is evaluated once, on the final iterate (`eval_every = steps`), at threshold 0.5 on "
        "the whole grid. ms/step: median training step (first and last steps excluded: compile, renderings). "
        "Peak: the fit process's maximum RSS. Ratios are to NestNet's.",
        "",
        "**" + headline(record) + "**",
        "",
        "| mesh | grid (voxels) | steps | seeds | " + " | ".join(f"{m} IoU" for m in models) + " | "
        + " | ".join(f"{m} ms/step" for m in models) + " | " + " | ".join(f"{m} peak MiB" for m in models) + " |",
        "|" + "---|" * (4 + 3 * len(models)),
    ]
    lines[4:4] = [f"- {note}" for note in record.get("notes", [])] + ([""] if record.get("notes") else [])
    for mesh, steps in _rows(record):
        info = record.get("meshes", {}).get(mesh, {})
        grid = "×".join(str(s) for s in info.get("shape", [])) + (f" ({info['voxels'] / 1e6:.1f} M)"
                                                                  if info.get("voxels") else "")
        cells = [summary.get((mesh, steps, m)) for m in models]
        ref = summary.get((mesh, steps, base))
        seeds = sorted({s for c in cells if c for s in c["seeds"]})
        lines.append(f"| {mesh} | {grid} | {steps} | {','.join(map(str, seeds))} | "
                     + " | ".join(_iou_cell(c) for c in cells) + " | "
                     + " | ".join(_ratio_cell(c, ref, "ms_per_step") for c in cells) + " | "
                     + " | ".join(_ratio_cell(c, ref, "peak_rss_mib") for c in cells) + " |")
    runs = record.get("runs", [])
    if runs:
        lines.append("")
        for budget in sorted({int(r["steps"]) for r in runs}):
            per_model = {m: [r for r in runs if r["model"] == m and int(r["steps"]) == budget] for m in models}
            parts = [f"{m} {statistics.fmean(r['seconds'] for r in rs):.0f} s (training "
                     f"{statistics.fmean(r['train_seconds'] for r in rs):.0f} s, whole-grid renderings and IoU "
                     f"{statistics.fmean(r['eval_seconds'] for r in rs):.0f} s)" for m, rs in per_model.items() if rs]
            lines.append(f"- Time per fit at {budget} steps (mean over its meshes): " + "; ".join(parts) + ".")
        per_voxel = {m: [1e6 * r["eval_seconds"] / (r.get("renderings", 3) * r["voxels"]) for r in runs
                         if r["model"] == m] for m in models}
        renderings = sorted({int(r.get("renderings", 3)) for r in runs})
        steps_range = {m: [r["ms_per_step"] for r in runs if r["model"] == m] for m in models}
        lines.append(f"- Each fit renders the whole grid {' or '.join(map(str, renderings))} time(s) at its end "
                     "(three: the last step's evaluation, the best-iterate snapshot and the final output, as the fit "
                     "did before it reused the evaluation's rendering; once since): " + ", ".join(
                         f"{m} {min(v):.1f}–{max(v):.1f} µs a voxel a rendering" for m, v in per_voxel.items() if v)
                     + ". At the task's default `eval_every` (steps // 20) a fit would render it 22 times.")
        lines.append("- ms/step over the fits (the same batch of 65,536 voxels each): " + ", ".join(
            f"{m} {min(v):.0f}–{max(v):.0f}" for m, v in steps_range.items() if v)
                     + " — the spread is the shared machine's load, not the mesh.")
        from benchmarks.common import at_default_rate, runs_off_the_default_rate

        stale = runs_off_the_default_rate(runs, "fit_occupancy")
        if stale:
            def which(m: str) -> str:
                mine = [r for r in runs if r["model"] == m]
                old = [r for r in mine if not at_default_rate(r, "fit_occupancy")]
                if len(old) == len(mine):
                    return "every fit"
                return ", ".join(f"{mesh} at {steps} steps" for mesh, steps in
                                 dict.fromkeys((r["mesh"], int(r["steps"])) for r in old))

            lines.append("- Fitted at a learning rate that is no longer the task's default (the occupancy sweep, "
                         "`benchmarks/results/lr_defaults_occupancy_cpu.json` on generated 96³ blobs, chose new "
                         "ones after these fits), so these cells measure the model at its older rate: " + "; ".join(
                             f"{m} {old:.3g}, default now {new:.3g} ({which(m)})" for m, (old, new) in stale.items())
                         + ".")
        allocator_line = _allocator_line(record)
        if allocator_line:
            lines.append(allocator_line)
        vox = [info.get("voxelise_seconds", 0.0) for info in record.get("meshes", {}).values()]
        if vox:
            lines.append(f"- Voxelising at {record.get('resolution')}³ (embree ray parity, three axes) took "
                         f"{min(vox):.1f}–{max(vox):.1f} s a mesh.")
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
