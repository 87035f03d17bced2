"""What the status line says during and after a run: step, rate, ETA, the live metric, the verdict.

:class:`RunMeter` turns the stream of :class:`reconstruct.fit.StepInfo` into one line (``step
120/300 · 4.1 steps/s · ETA 0:44 · PSNR 27.31 dB · loss 3.2e-3``), keeping the last metric seen
(most steps measure none: SSIM, IoU and rel. L2 are evaluated every few steps) and leaving the first
step out of the rate, because on large grids it compiles NestNet's kernels (once per session).

:func:`summary` is the line after a run: the network's metric beside the classical baseline's (FBP,
bicubic) and the input's (a noisy image's PSNR against the reference), and a warning
(:func:`verdict`) when the fit diverged or ended worse than the input or the baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["RunMeter", "metric_text", "baseline_text", "summary", "verdict", "duration", "METRIC_FORMATS",
           "HIGHER_IS_BETTER"]

METRIC_FORMATS = {"psnr": "PSNR {:.2f} dB", "ssim": "SSIM {:.3f}", "iou": "IoU {:.4f}", "rel_l2": "rel. L2 {:.3g}"}
#: Whether a larger value of the metric is better.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "iou": True, "rel_l2": False}
# The short forms used beside a baseline's name ("FBP 29.3 dB").
_SHORT = {"psnr": "{:.2f} dB", "ssim": "SSIM {:.3f}", "iou": "IoU {:.3f}", "rel_l2": "rel. L2 {:.3g}"}
#: A fit this many dB below its own best iterate has diverged.
DIVERGED_DB = 3.0


def _finite(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    out = {}
    for name, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(name)] = number
    return out


def metric_text(metrics: Mapping[str, Any] | None) -> str:
    """``"PSNR 31.20 dB · SSIM 0.912"`` for the metrics present."""
    values = _finite(metrics)
    return " · ".join(fmt.format(values[name]) for name, fmt in METRIC_FORMATS.items() if name in values)


def primary(metrics: Mapping[str, Any] | None) -> tuple[str, float] | None:
    """The first metric present, in :data:`METRIC_FORMATS` order (PSNR before SSIM)."""
    values = _finite(metrics)
    for name in METRIC_FORMATS:
        if name in values:
            return name, values[name]
    return None


def baseline_text(baselines: Mapping[str, Mapping[str, Any]] | None) -> str:
    """``"FBP 29.33 dB · noisy input 18.21 dB"``: each baseline's first metric."""
    parts = []
    for name, metrics in (baselines or {}).items():
        first = primary(metrics)
        if first is not None:
            parts.append(f"{name} {_SHORT[first[0]].format(first[1])}")
    return " · ".join(parts)


def duration(seconds: float) -> str:
    """``"0:44"``, ``"12:05"`` or ``"1:02:03"``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunMeter:
    """Progress of one run, as the status line shows it.

    Args:
        steps: the steps asked for.
        time_budget_s: the time budget (None: none), which may end the run before ``steps``.
    """

    def __init__(self, steps: int, time_budget_s: float | None = None) -> None:
        self.steps = max(int(steps), 1)
        self.time_budget_s = time_budget_s
        self.started = time.monotonic()
        #: ``StepInfo.seconds`` of the first step (it includes any kernel compilation), or None.
        self.first_step_s: float | None = None
        self.step = 0
        self.seconds = 0.0
        self.loss = math.nan
        #: The last value of every metric seen during the run.
        self.metrics: dict[str, float] = {}

    def update(self, info: Any) -> None:
        """Take one :class:`reconstruct.fit.StepInfo`."""
        self.step, self.steps = int(info.step), max(int(info.steps), 1)
        self.seconds, self.loss = float(info.seconds), float(info.loss)
        if self.first_step_s is None:
            self.first_step_s = self.seconds
        self.metrics.update(_finite(info.metrics))

    @property
    def rate(self) -> float | None:
        """Steps per second after the first step (None until there are two)."""
        if self.first_step_s is None or self.step < 2 or self.seconds <= self.first_step_s:
            return None
        return (self.step - 1) / (self.seconds - self.first_step_s)

    @property
    def eta_s(self) -> float | None:
        """Seconds left: the remaining steps at the current rate, capped by the time budget."""
        rate = self.rate
        if rate is None:
            return None
        left = (self.steps - self.step) / rate
        if self.time_budget_s is not None:
            left = min(left, max(self.time_budget_s - self.seconds, 0.0))
        return left

    def waiting_text(self, compile_hint: bool) -> str:
        """The status line before the first step has finished."""
        waited = time.monotonic() - self.started
        text = f"starting · {waited:.0f} s"
        if compile_hint:
            text += " · the first run of a session compiles NestNet's kernels on large grids (~10–30 s, once)"
        return text

    def text(self) -> str:
        """``step 120/300 · 4.1 steps/s · ETA 0:44 · PSNR 27.31 dB · loss 3.2e-3``."""
        parts = [f"step {self.step}/{self.steps}"]
        rate = self.rate
        if rate is not None:
            parts.append(f"{rate:.3g} steps/s" if rate >= 1 else f"{1.0 / rate:.2g} s/step")
            parts.append(f"ETA {duration(self.eta_s or 0.0)}")
        elif self.first_step_s is not None and self.first_step_s > 5:
            parts.append(f"first step {self.first_step_s:.0f} s (kernel compile)")
        live = metric_text(self.metrics)
        if live:
            parts.append(live)
        if math.isfinite(self.loss):
            parts.append(f"loss {self.loss:.3g}")
        return " · ".join(parts)


def verdict(result: Any, baselines: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """A warning when the fit diverged or ended worse than the input or a baseline; else ``""``."""
    metrics = _finite(getattr(result, "metrics", None))
    losses = [float(h["loss"]) for h in getattr(result, "history", None) or [] if "loss" in h]
    finite = [v for v in losses if math.isfinite(v)]
    blown_up = bool(finite) and finite[-1] > 10.0 * min(finite) and finite[-1] > finite[0]
    if losses and (len(finite) < len(losses) or blown_up):
        return "the loss diverged: lower the learning rate"
    best = getattr(result, "best", None)
    best_metrics = _finite(getattr(best, "metrics", None))
    if "psnr" in metrics and "psnr" in best_metrics and best_metrics["psnr"] - metrics["psnr"] > DIVERGED_DB:
        return (f"diverged: PSNR fell to {metrics['psnr']:.2f} dB from {best_metrics['psnr']:.2f} dB at step "
                f"{best.step}; lower the learning rate or the steps")
    worse = []
    for name, values in (baselines or {}).items():
        base = _finite(values)
        first = primary(metrics)
        if first is None or first[0] not in base:
            continue
        metric, value = first
        if (value < base[metric]) if HIGHER_IS_BETTER[metric] else (value > base[metric]):
            worse.append(f"{name} ({_SHORT[metric].format(base[metric])})")
    if worse:
        return "worse than " + " and ".join(worse)
    if "rel_l2" in metrics and metrics["rel_l2"] > 0.5:
        return "not converged (rel. L2 above 0.5): more steps, or a smaller β"
    if "iou" in metrics and metrics["iou"] < 0.5:
        return "poor fit (IoU below 0.5): more steps"
    return ""


def summary(result: Any, baselines: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``"300 steps in 41.2 s · PSNR 31.20 dB · SSIM 0.912 · FBP 29.33 dB"``."""
    stopped = {"time_budget": " (time budget)", "cancelled": " (cancelled)"}.get(str(result.stopped_by), "")
    parts = [f"{result.steps} steps in {result.seconds:.1f} s{stopped}"]
    for text in (metric_text(result.metrics), baseline_text(baselines)):
        if text:
            parts.append(text)
    return " · ".join(parts)
