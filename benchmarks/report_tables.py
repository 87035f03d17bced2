"""Loading, aggregation, formatting, tables and plots of the benchmark report (:mod:`benchmarks.report`).

Records of one folder are averaged over their cases, then mean ± std over seeds (:func:`aggregate`);
the helpers here turn those statistics into Markdown table rows, plain comparison lines and plots.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import higher_is_better, is_smoke, read_json
from reconstruct.app.files import atomic_write

__all__ = ["load_records", "aggregate", "METRIC_LABELS"]

METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "iou": "IoU", "rel_l2": "rel. L2"}


# -------------------------------------------------------------------------------------------- loading
def load_records(folder: Path) -> list[dict]:
    """Every ``*_seed<k>.json`` record in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    records = [read_json(p) for p in sorted(folder.glob("*_seed*.json"))]
    # smoke runs (``--steps N``) are not results
    return [r for r in records if not is_smoke(r)]


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(records: list[dict], metrics: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{group: {label: stats}}``: cases averaged within a record, then mean ± std over seeds."""
    per: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        by_group: dict[str, list[dict]] = defaultdict(list)
        for case in rec.get("cases", []):
            by_group[case["group"]].append(case)
        for group, cases in by_group.items():
            ok = [c for c in cases if c["status"] == "ok"]
            entry = {
                "seed": rec["seed"],
                "failed": len(cases) - len(ok),
                "params": rec.get("params"),
                "lr": rec.get("lr"),
                "lr_source": rec.get("lr_source"),
                "model": rec.get("model"),
                "steps": statistics.fmean(c["steps"] for c in ok) if ok else None,
                "seconds": statistics.fmean(c["seconds"] for c in ok) if ok else None,
                "s_per_step": statistics.fmean(c["s_per_step"] for c in ok) if ok else None,
                "best_step": statistics.fmean(c["best_step"] for c in ok if c.get("best_step") is not None)
                if any(c.get("best_step") is not None for c in ok)
                else None,
                "final": {},
                "best": {},
                "cases": cases,
                "command": rec.get("command"),
                "environment": rec.get("environment", {}),
                "date": rec.get("date"),
            }
            for kind in ("final", "best"):
                for m in metrics:
                    vals = [c[kind].get(m) for c in ok if c[kind].get(m) is not None]
                    # a diverged case counts as missing: the failure column reports it
                    entry[kind][m] = statistics.fmean(vals) if vals and len(vals) == len(cases) else None
            per[group][rec["label"]].append(entry)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for group, labels in per.items():
        out[group] = {}
        for label, entries in labels.items():
            stats: dict[str, Any] = {
                "seeds": len(entries),
                "failed": sum(1 for e in entries if e["failed"]),
                "params": next((e["params"] for e in entries if e["params"]), None),
                "model": entries[0]["model"],
                "lr": entries[0]["lr"],
                "lr_source": entries[0]["lr_source"],
                "entries": entries,
            }
            for key in ("steps", "seconds", "s_per_step", "best_step"):
                stats[key] = _mean_std([e[key] for e in entries if e[key] is not None])
            for kind in ("final", "best"):
                stats[kind] = {m: _mean_std([e[kind].get(m) for e in entries]) for m in metrics}
                stats[kind + "_values"] = {m: [e[kind].get(m) for e in entries] for m in metrics}
            out[group][label] = stats
    return out


# ------------------------------------------------------------------------------------------ formatting
def _digits(metric: str) -> int:
    return {"psnr": 2, "ssim": 3, "iou": 4, "rel_l2": 4}.get(metric, 3)


def _fmt(ms: tuple[float, float] | None, metric: str, seeds: int = 1) -> str:
    if ms is None:
        return "—"
    d = _digits(metric)
    mean, std = ms
    return f"{mean:.{d}f} ± {std:.{d}f}" if seeds > 1 else f"{mean:.{d}f}"


def _fmt_params(p: int | None) -> str:
    if not p:
        return "—"
    return f"{p / 1000:.1f} k" if p < 10**6 else f"{p / 10**6:.2f} M"


def _key(stats: dict, metric: str, kind: str = "final") -> float:
    ms = stats[kind].get(metric)
    if ms is None:
        return -math.inf
    return ms[0] if higher_is_better(metric) else -ms[0]


def _rank(stats: dict[str, dict], metric: str, kind: str = "final") -> list[str]:
    return sorted(stats, key=lambda label: _key(stats[label], metric, kind), reverse=True)


def _pretty(label: str) -> str:
    names = {
        "nestnet": "NestNet",
        "siren": "SIREN",
        "wire": "WIRE",
        "gauss": "Gauss",
        "mfn": "MFN",
        "ffn": "FFN",
        "finer": "FINER",
        "relu_pe": "ReLU+PE",
    }
    return names.get(label, label)


def _table(
    stats: dict[str, dict],
    metrics: tuple[str, ...],
    refs: dict[str, dict] | None = None,
    lr_column: bool = True,
) -> list[str]:
    primary = metrics[0]
    arrow = "↑" if higher_is_better(primary) else "↓"
    head = ["Model", "Params"]
    head += [f"{METRIC_LABELS[m]} final" + (f" {arrow}" if m == primary else "") for m in metrics]
    head += [f"{METRIC_LABELS[m]} best" + (" (step)" if m == primary else "") for m in metrics]
    head += ["Time (s)", "ms/step", "Seeds"]
    if lr_column:
        head.append("lr")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = _rank(stats, primary)
    top_final = order[0] if order and stats[order[0]]["final"].get(primary) else None
    order_best = _rank(stats, primary, "best")
    top_best = order_best[0] if order_best and stats[order_best[0]]["best"].get(primary) else None
    for label in order:
        s = stats[label]
        n = s["seeds"]
        name = _pretty(label)
        if s["model"] == "nestnet":
            name = f"**{name}**"
        row = [name, _fmt_params(s["params"])]
        for m in metrics:
            cell = _fmt(s["final"].get(m), m, n)
            row.append(f"**{cell}**" if m == primary and label == top_final else cell)
        for m in metrics:
            cell = _fmt(s["best"].get(m), m, n)
            if m == primary and s["best_step"]:
                cell += f" ({s['best_step'][0]:.0f})"
            row.append(f"**{cell}**" if m == primary and label == top_best and cell != "—" else cell)
        row.append(f"{s['seconds'][0]:.1f}" if s["seconds"] else "—")
        row.append(f"{1000 * s['s_per_step'][0]:.0f}" if s["s_per_step"] else "—")
        row.append(f"{n}" + (f" ({s['failed']} diverged)" if s["failed"] else ""))
        if lr_column:
            row.append(
                f"{s['lr']:.2g}" + (" (swept)" if s["lr_source"] == "sweep" else "") if s["lr"] else "—"
            )
        lines.append("| " + " | ".join(row) + " |")
    for label, ref in (refs or {}).items():
        row = [f"*{label}*", "—"]
        for m in metrics:
            v = ref["metrics"].get(m)
            row.append(f"{v:.{_digits(m)}f}" if v is not None else "—")
        row += ["—"] * len(metrics)
        row += [f"{ref['seconds']:.1f}", "—", "—"]
        if lr_column:
            row.append("—")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _commands(entries: list[dict]) -> list[str]:
    counts = Counter(e.get("command") for e in entries if e.get("command"))
    return [c for c, _ in counts.most_common(3)]


def _produced_by(entries: list[dict]) -> list[str]:
    """The ``Produced by:`` paragraph (the commands that made most of ``entries``), or nothing."""
    cmds = _commands(entries)
    return ["Produced by: " + "; ".join(f"`{c}`" for c in cmds), ""] if cmds else []


def _group_refs(references: dict | None, group: str) -> dict[str, dict]:
    """Classical reference metrics of a group (averaged over its cases)."""
    if not references:
        return {}
    acc: dict[str, list[dict]] = defaultdict(list)
    for case in references.get("cases", {}).values():
        if case["group"] != group:
            continue
        for label, ref in case["methods"].items():
            acc[label].append(ref)
    out = {}
    for label, refs in acc.items():
        metrics = {
            m: statistics.fmean(r["metrics"][m] for r in refs)
            for m in refs[0]["metrics"]
            if all(m in r["metrics"] for r in refs)
        }
        out[label] = {
            "metrics": metrics,
            "seconds": statistics.fmean(r["seconds"] for r in refs),
            "note": refs[0].get("note", ""),
        }
    return out


def _comparison_text(stats: dict[str, dict], metrics: tuple[str, ...], refs: dict[str, dict]) -> list[str]:
    """Plain statements of where NestNet stands, computed from the numbers in the table."""
    primary = metrics[0]
    label_m = METRIC_LABELS[primary]
    nest = [k for k, s in stats.items() if s["model"] == "nestnet"]
    if not nest or stats[nest[0]]["final"].get(primary) is None:
        if nest:
            return [
                f"- NestNet has no finite {label_m} here (diverged in {stats[nest[0]]['failed']} seed(s))."
            ]
        return []
    n = nest[0]
    lines = []
    unit = " dB" if primary == "psnr" else ""
    for kind, word in (("final", "final iterate"), ("best", "best iterate (oracle early stop)")):
        order = [k for k in _rank(stats, primary, kind) if stats[k][kind].get(primary) is not None]
        if n not in order:
            continue
        pos = order.index(n) + 1
        others = [k for k in order if k != n]
        mine = stats[n][kind][primary][0]
        if not others:
            continue
        rival = others[0]
        theirs = stats[rival][kind][primary][0]
        diff = mine - theirs
        d = _digits(primary)
        tied = [k for k in order if round(stats[k][kind][primary][0] - mine, d) == 0]
        if len(tied) > 1:
            names = ", ".join(_pretty(k) for k in tied if k != n)
            text = (
                f"- {word}: NestNet **ties** with {names} at {mine:.{d}f}{unit} (equal to the shown "
                f"precision; {len(tied)} of {len(order)} INRs share the top value)"
                if round(stats[order[0]][kind][primary][0] - mine, d) == 0
                else f"- {word}: NestNet ties with {names} at {mine:.{d}f}{unit}, behind "
                f"{_pretty(order[0])} at {stats[order[0]][kind][primary][0]:.{d}f}{unit}"
            ) + "."
        elif pos == 1:
            text = (
                f"- {word}: NestNet **comes first** of {len(order)} INRs: {mine:.{d}f}{unit} vs "
                f"{_pretty(rival)} {theirs:.{d}f}{unit} (margin {abs(diff):.{d}f})."
            )
        else:
            text = (
                f"- {word}: NestNet **ranks {pos} of {len(order)}** INRs: {mine:.{d}f}{unit}, "
                f"behind {_pretty(rival)} at {theirs:.{d}f}{unit} (gap {abs(diff):.{d}f})."
            )
        lines.append(text)
    if refs:
        best_ref = max(
            refs,
            key=lambda r: (
                refs[r]["metrics"].get(primary, -math.inf)
                if higher_is_better(primary)
                else -refs[r]["metrics"].get(primary, math.inf)
            ),
        )
        if primary in refs[best_ref]["metrics"]:
            v = refs[best_ref]["metrics"][primary]
            mine = stats[n]["final"][primary][0]
            better = mine > v if higher_is_better(primary) else mine < v
            lines.append(
                f"- Classical: the best reference, {best_ref}, reaches {v:.{_digits(primary)}f}{unit}; "
                f"NestNet's final iterate is {'above' if better else '**below**'} it by "
                f"{abs(mine - v):.{_digits(primary)}f}{unit}."
            )
    base = [s["s_per_step"][0] for k, s in stats.items() if s["model"] != "nestnet" and s["s_per_step"]]
    if base and stats[n]["s_per_step"]:
        ratio = stats[n]["s_per_step"][0] / statistics.median(base)
        lines.append(
            f"- Cost: NestNet's step took {ratio:.1f}× the median baseline's; parameters "
            f"{_fmt_params(stats[n]['params'])}."
        )
    return lines


# ---------------------------------------------------------------------------------------------- plots
def _curve(entries: list[dict], metric: str) -> tuple[list[float], list[float], list[float]] | None:
    """Mean over seeds (and cases) of ``metric`` against step, with mean seconds at those steps."""
    import numpy as np

    curves = []
    for e in entries:
        for case in e["cases"]:
            pts = [
                (h["step"], h[metric], h["seconds"])
                for h in case.get("history", [])
                if h.get(metric) is not None
            ]
            if len(pts) >= 2:
                curves.append(np.array(pts, dtype=float))
    if not curves:
        return None
    steps = curves[0][:, 0]
    vals = np.mean([np.interp(steps, c[:, 0], c[:, 1]) for c in curves], axis=0)
    secs = np.mean([np.interp(steps, c[:, 0], c[:, 2]) for c in curves], axis=0)
    return steps.tolist(), vals.tolist(), secs.tolist()


_WRITTEN_PLOTS: set[Path] = set()


def _plot(path: Path, title: str, stats: dict[str, dict], metric: str, refs: dict[str, dict]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    lows = []
    for label in _rank(stats, metric):
        curve = _curve(stats[label]["entries"], metric)
        if curve is None:
            continue
        steps, vals, secs = curve
        lows.append(min(vals[len(vals) // 20 :]))
        style = (
            {"linewidth": 2.4, "color": "black"} if stats[label]["model"] == "nestnet" else {"linewidth": 1.2}
        )
        axes[0].plot(steps, vals, label=_pretty(label), **style)
        axes[1].plot(secs, vals, label=_pretty(label), **style)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    for label, ref in refs.items():
        if metric in ref["metrics"]:
            for ax in axes:
                ax.axhline(ref["metrics"][metric], linestyle="--", linewidth=1, color="grey")
                ax.annotate(
                    label, (ax.get_xlim()[0], ref["metrics"][metric]), fontsize=7, color="grey", va="bottom"
                )
    for ax, xlabel in zip(axes, ("step", "wall-clock seconds")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        if metric == "rel_l2":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if metric == "psnr" and lows:
        # The first few steps sit far below everything else; start the axis where the curves settle.
        for ax in axes:
            ax.set_ylim(bottom=min(lows) - 0.5)
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"), "a PNG plot")
    plt.close(fig)
    _WRITTEN_PLOTS.add(path.resolve())
    return True

