"""Ground-truth-free stopping rules of the fit loop: held-out measurements and the discrepancy principle.

An INR fits the signal before the noise, so the number of steps is a regulariser; a user without a
ground truth needs a rule that picks it. Two are offered to :func:`reconstruct.fit.fit`:

* :class:`HeldOut`: leave a random or structured part of the measurement out of the loss and take the
  iterate with the lowest error on it (then optionally refit on all the data for that many steps);
* :class:`Discrepancy` (Morozov's discrepancy principle): stop at the first step whose data residual
  RMS is at most ``tau · sigma``, with ``sigma`` the noise level, given or estimated
  (:func:`estimate_noise_sigma`).

What a rule chose is a :class:`HeldOutChoice` or a :class:`DiscrepancyChoice` on the
:class:`~reconstruct.fit.FitResult`; :func:`stop_summary` makes it a JSON-able record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["HeldOut", "HeldOutChoice", "Discrepancy", "DiscrepancyChoice", "STOP_RULES", "random_mask",
           "estimate_noise_sigma", "stop_summary"]

#: The stop rules a task accepts: ``auto`` is ``held_out`` when a held-out fraction is set, else ``none``.
STOP_RULES = ("auto", "held_out", "discrepancy", "none")


@dataclasses.dataclass
class HeldOut:
    """Ground-truth-free early stopping on held-out measurements.

    The measurement elements where ``mask`` is True are left out of the loss; after every step their
    error (mean squared error of the data as measured, :meth:`~reconstruct.operators.Operator.raw`) is
    measured on the field that step computed (random-batch fits: every few steps, after the update),
    and the fit stops once it has not improved for ``patience`` steps. The returned model and output
    are the iterate with the lowest held-out error: what a user without a ground truth can choose. With
    ``refit`` the network is then trained again from its initial state on *all* the measurements for
    the chosen number of steps, on the same learning-rate schedule, and that is the result.

    The mask must be constant along every axis the operator's loss couples: hold out whole projections
    for CT (the ramp-filtered data term filters along the detector axis), pixels for denoising.

    Args:
        mask: boolean, broadcastable to the measurement's shape; True = held out.
        patience: steps without a better held-out error before the fit stops (None: never early).
        min_relative_improvement: an error counts as better only when it is this fraction below the best.
        refit: after choosing the step, refit on all the measurements for that many steps.
    """

    mask: np.ndarray | torch.Tensor
    patience: int | None = 50
    min_relative_improvement: float = 0.0
    refit: bool = False


@dataclasses.dataclass
class HeldOutChoice:
    """What the held-out error chose: ``step`` (updates applied), its ``error``, the whole ``curve``.

    ``refit_steps`` is the number of steps the result was refitted on all the data (0: the chosen
    iterate itself is the result).
    """

    step: int
    error: float
    curve: list[tuple[int, float]]
    fraction: float
    stopped_early: bool
    refit_steps: int = 0


@dataclasses.dataclass
class Discrepancy:
    """Stop at the first step whose data residual RMS is at most ``tau · sigma`` (the discrepancy principle).

    The residual is ``Operator.raw(f) - y`` (the data as measured, not a preconditioned data term), its
    RMS taken over the measurement elements (those where ``mask`` is True when given: e.g. the pixels a
    multi-frame warp sees). At the true signal the residual RMS is about ``sigma``, so fitting below it
    fits noise; ``tau`` a little above 1 stops slightly earlier, on the safe side.

    Args:
        sigma: noise standard deviation of the measurement, in the units the fit sees (> 0).
        tau: the safety factor (> 0; 1.0–1.1 is usual).
        mask: boolean, broadcastable to the measurement; True = counts in the residual (None: all).
    """

    sigma: float
    tau: float = 1.05
    mask: np.ndarray | torch.Tensor | None = None


@dataclasses.dataclass
class DiscrepancyChoice:
    """Where the discrepancy principle stopped: ``step`` (updates applied), its ``residual`` RMS.

    ``reached`` is False when the residual never came down to ``tau · sigma`` (the fit ran all its steps,
    ``step`` is then the last one); ``curve`` is ``(step, residual RMS)`` as measured.
    """

    step: int
    residual: float
    sigma: float
    tau: float
    reached: bool
    curve: list[tuple[int, float]]

    @property
    def threshold(self) -> float:
        return self.tau * self.sigma


def random_mask(shape: Sequence[int], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of ``shape`` holding out about ``fraction`` of the elements at random (at least one).

    Drawn from its own generator (``seed``), so the caller's random state is untouched; at least one
    element is held out and at least one kept.
    """
    shape = tuple(int(s) for s in shape)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1); got {fraction!r}")
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    if size < 2:
        raise ValueError(f"holding measurements out needs at least 2 of them; got shape {shape}")
    count = min(max(1, int(round(fraction * size))), size - 1)
    flat = np.zeros(size, bool)
    flat[rng.choice(size, count, replace=False)] = True
    return flat.reshape(shape)


def estimate_noise_sigma(values: np.ndarray, channel_axis: int | None = None) -> float:
    """Gaussian noise standard deviation of ``values`` (any spatial dimension), in their units.

    The robust wavelet estimator of Donoho and Johnstone (median absolute finest-scale diagonal
    coefficient / 0.6745), :func:`skimage.restoration.estimate_sigma`, averaged over channels. Texture
    at the finest scale reads as noise, so on clean detailed data it over-estimates a little.
    """
    from skimage.restoration import estimate_sigma

    arr = np.asarray(values, dtype=np.float64)
    squeezed = arr if channel_axis is not None else np.squeeze(arr)
    if squeezed.ndim == 0 or min(squeezed.shape) < 2:
        raise ValueError(f"estimating the noise level needs at least 2 samples per axis; got shape {arr.shape}")
    return float(estimate_sigma(squeezed, channel_axis=channel_axis, average_sigmas=True))


def stop_summary(result: Any) -> dict[str, Any]:
    """The stop a fit made, JSON-able: ``{"rule", "step", ...}``.

    ``rule`` is ``"held_out"`` (with ``error``, ``fraction``, ``stopped_early``, ``refit_steps``,
    ``curve``), ``"discrepancy"`` (with ``residual_rms``, ``sigma``, ``tau``, ``threshold``,
    ``reached``, ``curve``; ``sigma`` in the fit's units) or ``"none"`` (the steps ran out, the time
    budget or a cancel stopped it: ``stopped_by`` says which). ``step`` counts the updates of the
    returned model's choosing iterate.
    """
    held, disc = getattr(result, "held_out", None), getattr(result, "discrepancy", None)
    if held is not None:
        return {"rule": "held_out", "step": int(held.step), "error": float(held.error),
                "fraction": float(held.fraction), "stopped_early": bool(held.stopped_early),
                "refit_steps": int(held.refit_steps), "curve": [[int(s), float(e)] for s, e in held.curve]}
    if disc is not None:
        return {"rule": "discrepancy", "step": int(disc.step), "residual_rms": float(disc.residual),
                "sigma": float(disc.sigma), "tau": float(disc.tau), "threshold": float(disc.threshold),
                "reached": bool(disc.reached), "curve": [[int(s), float(r)] for s, r in disc.curve]}
    return {"rule": "none", "step": int(result.steps), "stopped_by": str(result.stopped_by)}
