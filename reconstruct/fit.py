"""THE fitting loop: every task minimises ``loss(A(f_θ), y)`` over a coordinate network with it."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics as _metrics
from .device import resolve_device
from .grid import DEFAULT_CHUNK_SIZE, make_grid, render
from .operators import HIGHER_IS_BETTER, Operator
from .stopping import Discrepancy, DiscrepancyChoice, HeldOut, HeldOutChoice

__all__ = ["fit", "FitResult", "StepInfo", "BestIterate", "HeldOut", "HeldOutChoice", "Discrepancy",
           "DiscrepancyChoice", "compute_metrics"]


@dataclass
class StepInfo:
    """What ``on_step`` receives after every step; return ``False`` from the callback to cancel."""

    step: int
    steps: int
    loss: float
    metrics: dict[str, float]
    seconds: float
    #: The current reconstruction (NumPy, task layout) on preview steps, else ``None``.
    output: np.ndarray | None = None


@dataclass
class BestIterate:
    """The iterate with the best reference metric (the WIRE protocol's oracle early stopping).

    ``step`` counts the optimizer updates the snapshot had received: a per-step PSNR measured on the
    field a step computed describes the parameters before that step's update.
    """

    step: int
    metrics: dict[str, float]
    state_dict: dict[str, torch.Tensor]
    output: np.ndarray | None = None


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the model, its rendering, the per-step history, final and best metrics."""

    model: nn.Module
    output: np.ndarray
    history: list[dict[str, float]]
    metrics: dict[str, float]
    best: BestIterate | None
    seconds: float
    steps: int
    stopped_by: str = "steps"
    device: str = "cpu"
    extras: dict[str, Any] = field(default_factory=dict)
    #: The ground-truth-free choice when the fit held measurements out (see :class:`HeldOut`).
    held_out: HeldOutChoice | None = None
    #: Where the discrepancy principle stopped the fit (see :class:`Discrepancy`).
    discrepancy: DiscrepancyChoice | None = None

    @property
    def cancelled(self) -> bool:
        return self.stopped_by == "cancelled"


def _to_layout(field_: torch.Tensor, channels: int) -> np.ndarray:
    """(*spatial, C) tensor → NumPy in the task layout: channel axis dropped for one channel."""
    arr = field_.detach().to("cpu", torch.float32).numpy()
    return arr[..., 0] if channels == 1 else arr


def compute_metrics(
    names: tuple[str, ...], output: np.ndarray, reference: np.ndarray, data_range: float, with_ssim: bool = True
) -> dict[str, float]:
    """Metrics ``names`` of ``output`` against ``reference`` (SSIM skipped when ``with_ssim`` is False)."""
    out: dict[str, float] = {}
    for name in names:
        if name == "psnr":
            out["psnr"] = _metrics.psnr(output, reference, data_range)
        elif name == "ssim" and with_ssim:
            out["ssim"] = _metrics.ssim(output, reference, data_range)
        elif name == "iou":
            out["iou"] = _metrics.iou(output, reference)
        elif name == "rel_l2":
            out["rel_l2"] = _metrics.rel_l2(output, reference)
    return out


def _check_finite(name: str, t: torch.Tensor) -> None:
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; pass a non-empty array")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values; replace them (e.g. numpy.nan_to_num) before fitting")


def _beats(metrics: dict[str, float], incumbent: dict[str, float], primary: str) -> bool:
    """Whether ``metrics`` are strictly better than ``incumbent`` on the ``primary`` metric."""
    value, other = metrics[primary], incumbent[primary]
    return value > other if HIGHER_IS_BETTER.get(primary, True) else value < other


def _update_best(best: BestIterate | None, metrics: dict[str, float], primary: str | None, keep_best: bool,
                 model: nn.Module, updates_applied: int) -> BestIterate | None:
    """Return a new snapshot when ``metrics`` beat ``best`` on the primary metric, else ``best``."""
    if not keep_best or primary not in metrics:
        return best
    if best is not None and not _beats(metrics, best.metrics, primary):
        return best
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return BestIterate(updates_applied, dict(metrics), state)


def fit(
    model: nn.Module,
    operator: Operator,
    measurement: torch.Tensor | np.ndarray,
    *,
    steps: int = 500,
    lr: float | None = None,
    lr_decay: float = 0.1,
    batch_size: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    on_step: Callable[[StepInfo], bool | None] | None = None,
    time_budget_s: float | None = None,
    reference: torch.Tensor | np.ndarray | None = None,
    data_range: float = 1.0,
    eval_every: int | None = None,
    preview_every: int | None = None,
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    keep_best: bool = True,
    held_out: HeldOut | None = None,
    discrepancy: Discrepancy | None = None,
) -> FitResult:
    """Fit ``model`` so that ``operator(model on the grid) ≈ measurement``.

    Adam with the learning rate decayed as ``lr · lr_decay ** (step / steps)``; full-batch steps,
    or random batches of ``batch_size`` grid points for pointwise operators.  Deterministic for a
    given ``seed`` and device.

    Full-batch fits record PSNR at every step from the field that step computed, i.e. for the
    parameters before its update.  On CPU the calling thread flushes subnormal floats to zero
    (``torch.set_flush_denormal``) for the rest of the process: the Gaussian windows of Gauss and
    WIRE underflow into subnormals, which made their steps 5-10x slower here (Gauss, 16,384
    points: 1,772 -> 186 ms/step), while values below 1e-38 change no result.

    Args:
        model: a coordinate network (see :mod:`monai_nets`); moved to ``device``.
        operator: the forward model (see :mod:`reconstruct.operators`).
        measurement: ``y`` in the operator's measurement layout, channel last.
        steps: optimisation steps.
        lr: Adam learning rate (default: the model's ``recommended_lr``).
        lr_decay: factor the learning rate reaches at the last step.
        batch_size: random grid points per step (pointwise operators), ``None`` for full batch.
        seed: seed of the batch sampling.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``.
        on_step: called with a :class:`StepInfo` after each step; returning ``False`` cancels, and the
            result so far is returned.
        time_budget_s: stop after this many seconds of fitting.
        reference: ground truth in the output layout of the operator's grid (``(*signal_shape, C)``
            or without the channel axis for one channel); enables per-step metrics and ``best``.
        data_range: data range for PSNR/SSIM (1 for images normalised to [0, 1]).
        eval_every: steps between full metric evaluations (SSIM, and PSNR for batched fits);
            default ``max(10, steps // 20)`` (and the last step).
        preview_every: steps between renderings handed to ``on_step`` (``StepInfo.output``).
        regularizer: extra loss term computed on the field of full-batch steps (e.g. total variation).
        chunk_size: points per forward pass when rendering.
        keep_best: track the best iterate by the operator's first metric (needs ``reference``); this
            "best" is an oracle (chosen with the ground truth) and reported apart from the final iterate.
        held_out: leave part of the measurement out of the loss and stop, without a ground truth, at
            the lowest error on it (:class:`HeldOut`); with the operator's own loss only (random batches:
            pointwise operators, the error measured every few steps). The result's model and output are
            that iterate, or with ``held_out.refit`` a refit on all the data for as many steps;
            ``result.held_out`` says which. The oracle ``best`` is the best iterate of both runs (refit
            steps counted after the held-out run's, as in ``history``).
        discrepancy: stop at the first step whose data residual RMS is at most ``tau · sigma``
            (:class:`Discrepancy`; random batches: checked every ``eval_every`` steps);
            ``result.discrepancy`` says where. Not together with ``held_out``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if lr is None:
        lr = float(getattr(model, "recommended_lr", 1e-3))
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (0 < lr_decay <= 1):
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay!r}")
    if time_budget_s is not None and not (isinstance(time_budget_s, (int, float, np.integer, np.floating))
                                          and not isinstance(time_budget_s, bool)
                                          and math.isfinite(time_budget_s) and time_budget_s > 0):
        raise ValueError(f"time_budget_s must be a finite number of seconds > 0 or None, got {time_budget_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if batch_size is not None:
        if not operator.pointwise:
            raise ValueError(f"{type(operator).__name__} couples grid points; use batch_size=None (full batch)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if held_out is not None and discrepancy is not None:
        raise ValueError("choose one stop rule: held_out or discrepancy, not both")
    dev = resolve_device(device)
    if dev.type == "cpu":
        torch.set_flush_denormal(True)
    model.to(dev)
    operator.to(dev)
    y = torch.as_tensor(np.asarray(measurement) if not isinstance(measurement, torch.Tensor) else measurement)
    y = y.to(dev, torch.float32)
    _check_finite("measurement", y)
    train_weight = val_weight = train_index = val_index = None
    if held_out is not None:
        if batch_size is None:
            train_weight, val_weight = _held_out_weights(held_out, operator, y)
        else:
            train_index, val_index = _held_out_indices(held_out, operator, y)
    disc_weight = None if discrepancy is None else _discrepancy_weight(discrepancy, y)
    init_state = None
    if held_out is not None and held_out.refit:
        init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ref = None
    if reference is not None:
        ref = np.asarray(reference.detach().cpu() if isinstance(reference, torch.Tensor) else reference)
        ref = ref.astype(np.float32)
        if not np.isfinite(ref).all():
            raise ValueError("reference contains NaN or Inf values")
        ref_device = torch.from_numpy(ref).to(dev)
    # Full evaluations (render + SSIM) cost more than a small step: at most ~20 per fit, >= 10 steps apart.
    given_eval_every = eval_every
    eval_every = eval_every or max(10, steps // 20)
    # Random-batch fits measure the held-out error every few steps (after the update), often enough for patience.
    check_every = max(1, min(eval_every, (held_out.patience or eval_every) // 4)) if held_out is not None else 1

    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_decay ** min(s / steps, 1.0))
    coords = None
    if batch_size is None:
        coords = make_grid(operator.signal_shape, operator.spacing, device=dev).reshape(-1, len(operator.signal_shape))
    names = operator.metric_names
    primary = names[0] if names else None

    def render_output() -> np.ndarray:
        pointwise = operator.pointwise_output
        field_ = render(model, operator.signal_shape, spacing=operator.spacing, chunk_size=chunk_size,
                        transform=operator.output_transform if pointwise else None,
                        subsamples=operator.render_subsamples)
        return _to_layout(field_ if pointwise else operator.output_transform(field_), operator.channels)

    def residual_now() -> float:
        field_ = render(model, operator.signal_shape, spacing=operator.spacing, chunk_size=chunk_size, out_device=dev,
                        subsamples=operator.render_subsamples)
        return _residual_rms(operator, field_, y, disc_weight)

    # The newest whole-signal rendering and the number of updates the model had received when it was
    # made: the last step's evaluation is then reused for the best iterate and the output, not redone
    # (at 256³ each rendering costs more than a minute on one thread).
    last_render: tuple[int, np.ndarray] | None = None

    def render_now(updates: int) -> np.ndarray:
        nonlocal last_render
        last_render = (updates, render_output())
        return last_render[1]

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    history: list[dict[str, float]] = []
    curve: list[tuple[int, float]] = []
    disc_curve: list[tuple[int, float]] = []
    disc_reached = False
    val_best: tuple[int, float, dict[str, torch.Tensor]] | None = None
    best: BestIterate | None = None
    stopped_by = "steps"
    start = time.perf_counter()
    step = 0
    model.train()

    def held_out_point(updates: int, error: float) -> None:
        nonlocal val_best
        curve.append((updates, error))
        if val_best is None or error < val_best[1] * (1.0 - held_out.min_relative_improvement):
            val_best = (updates, error, snapshot())

    for step in range(1, steps + 1):
        idx = None
        if batch_size is not None:
            draw = torch.randint(operator.num_points if train_index is None else len(train_index), (batch_size,),
                                 generator=gen).to(dev)
            idx = draw if train_index is None else train_index[draw]
        optimizer.zero_grad(set_to_none=True)
        if train_weight is not None:
            loss, f, val_error = _held_out_losses(model, operator, y, coords, train_weight, val_weight)
            held_out_point(step - 1, val_error)  # the field of this step: the parameters before its update
        else:
            loss, f = operator.training_loss(model, y, coords, idx)
        if discrepancy is not None and f is not None:
            disc_curve.append((step - 1, _residual_rms(operator, f.detach(), y, disc_weight)))
            if disc_curve[-1][1] <= discrepancy.tau * discrepancy.sigma:
                disc_reached, stopped_by = True, "discrepancy"
                step -= 1  # this step's field already fits as closely as the noise allows: no update
                break
        if regularizer is not None and f is not None:
            loss = loss + regularizer(f)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at step {step}; lower the learning rate (lr={lr:g})"
            )
        loss.backward()

        record: dict[str, float] = {"step": step, "loss": float(loss.detach())}
        if train_weight is not None:
            record["held_out_error"] = curve[-1][1]
        if disc_curve and disc_curve[-1][0] == step - 1:
            record["residual_rms"] = disc_curve[-1][1]
        metrics: dict[str, float] = {}
        is_eval = step % eval_every == 0 or step == steps
        output_now: np.ndarray | None = None
        if ref is not None and names and f is not None and not is_eval and "psnr" in names:
            # Cheap per-step PSNR from the field this step already computed. That field belongs to the
            # parameters *before* this step's update, so it is measured (and a best snapshot taken)
            # before optimizer.step(): the snapshot must be the state the metric describes.
            current = operator.output_transform(f.detach())
            if operator.channels == 1:
                current = current[..., 0]
            metrics = {"psnr": _metrics.psnr(current, ref_device, data_range)}
            best = _update_best(best, metrics, primary, keep_best, model, updates_applied=step - 1)
        optimizer.step()
        scheduler.step()
        if val_index is not None and (step % check_every == 0 or step == steps):
            held_out_point(step, _points_error(model, operator, y, val_index, chunk_size))
            record["held_out_error"] = curve[-1][1]
        if discrepancy is not None and f is None and is_eval:
            disc_curve.append((step, residual_now()))
            record["residual_rms"] = disc_curve[-1][1]
            disc_reached = disc_curve[-1][1] <= discrepancy.tau * discrepancy.sigma
        if ref is not None and names and is_eval:
            output_now = render_now(step)
            metrics = compute_metrics(names, output_now, ref, data_range)
            best = _update_best(best, metrics, primary, keep_best, model, updates_applied=step)
        elapsed = time.perf_counter() - start
        record.update(metrics)
        record["seconds"] = elapsed
        history.append(record)
        if on_step is not None:
            if preview_every and (step % preview_every == 0 or step == steps) and output_now is None:
                output_now = render_now(step)
            info = StepInfo(step, steps, record["loss"], metrics, elapsed,
                            output_now if preview_every else None)
            if on_step(info) is False:
                stopped_by = "cancelled"
                break
        if disc_reached:
            stopped_by = "discrepancy"
            break
        if time_budget_s is not None and elapsed >= time_budget_s:
            stopped_by = "time_budget"
            break
        if held_out is not None and held_out.patience is not None and val_best is not None \
                and curve[-1][0] - val_best[0] >= held_out.patience:
            stopped_by = "held_out"
            break

    seconds = time.perf_counter() - start
    choice = disc_choice = None
    if val_best is not None:
        model.load_state_dict(val_best[2])  # the iterate the held-out error chose, not the last one
        fraction = float(val_weight.mean()) if val_weight is not None else len(val_index) / operator.num_points
        choice = HeldOutChoice(val_best[0], val_best[1], curve, fraction, stopped_by == "held_out")
    if discrepancy is not None:
        if not disc_reached:  # the residual of the model returned: the last one
            disc_curve.append((step, residual_now()))
        disc_choice = DiscrepancyChoice(disc_curve[-1][0], disc_curve[-1][1], float(discrepancy.sigma),
                                        float(discrepancy.tau), disc_reached, disc_curve)
    if ref is not None and names and best is not None:
        if last_render is not None and last_render[0] == best.step:
            best.output = last_render[1].copy()  # the best iterate is the state that rendering was made of
        else:
            current_state = copy.deepcopy(model.state_dict())
            model.load_state_dict(best.state_dict)
            best.output = render_output()
            model.load_state_dict(current_state)
        best.metrics = compute_metrics(names, best.output, ref, data_range)
    if choice is not None and init_state is not None and choice.step > 0 and stopped_by in ("held_out", "steps") \
            and (time_budget_s is None or seconds < time_budget_s):
        # Finish on all the data: the same initial state and learning-rate schedule, for the chosen steps.
        model.load_state_dict(init_state)
        offset, k = step, choice.step

        def relay(info: StepInfo) -> bool | None:
            return on_step(replace(info, step=offset + info.step, steps=offset + k))

        again = fit(model, operator, y, steps=k, lr=lr, lr_decay=lr_decay ** (k / steps), batch_size=batch_size,
                    seed=seed, device=dev, on_step=None if on_step is None else relay,
                    time_budget_s=None if time_budget_s is None else time_budget_s - seconds, reference=reference,
                    data_range=data_range, eval_every=given_eval_every, preview_every=preview_every,
                    regularizer=regularizer, chunk_size=chunk_size, keep_best=keep_best)
        if again.best is not None and (best is None or _beats(again.best.metrics, best.metrics, primary)):
            best = replace(again.best, step=offset + again.best.step)  # the oracle over both runs
        history += [{**record, "step": offset + record["step"], "seconds": seconds + record["seconds"]}
                    for record in again.history]
        seconds += again.seconds
        if again.stopped_by == "steps":
            choice.refit_steps = again.steps
            return FitResult(model=model, output=again.output, history=history, metrics=again.metrics, best=best,
                             seconds=seconds, steps=offset + again.steps, stopped_by=stopped_by, device=str(dev),
                             held_out=choice)
        # a refit cut short (cancel, time budget) is worse than the chosen iterate: return that one
        stopped_by, step = again.stopped_by, offset + again.steps
        model.load_state_dict(val_best[2])
    if val_best is None and last_render is not None and last_render[0] == step:
        output = last_render[1].copy()  # no update since that rendering and no other state loaded
    else:
        output = render_output()
    final: dict[str, float] = {}
    if ref is not None and names:
        final = compute_metrics(names, output, ref, data_range)
    model.eval()
    return FitResult(model=model, output=output, history=history, metrics=final, best=best, seconds=seconds,
                     steps=step, stopped_by=stopped_by, device=str(dev), held_out=choice, discrepancy=disc_choice)


def _held_out_weights(held_out: HeldOut, operator: Operator, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 weights of the trained and the held-out measurement elements, shaped like ``y``."""
    if type(operator).training_loss is not Operator.training_loss:
        raise ValueError(f"held-out stopping needs {type(operator).__name__}'s own loss")
    mask = _broadcast_mask(held_out.mask, y, "held-out")
    held = int(mask.sum())
    if held == 0 or held == mask.numel():
        raise ValueError(f"the held-out mask must leave some measurements in and some out; it holds out {held} "
                         f"of {mask.numel()}")
    if held_out.patience is not None and held_out.patience < 1:
        raise ValueError(f"held-out patience must be a positive number of steps or None; got {held_out.patience}")
    return (~mask).float(), mask.float()


def _held_out_indices(held_out: HeldOut, operator: Operator, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat grid indices of the kept and the held-out points of a random-batch fit (pointwise operators)."""
    if type(operator).training_loss is not Operator.training_loss:
        raise ValueError(f"held-out stopping needs {type(operator).__name__}'s own loss")
    mask = _broadcast_mask(held_out.mask, y, "held-out")
    per_point = mask.reshape(-1, mask.shape[-1])
    if bool((per_point.any(-1) != per_point.all(-1)).any()):
        raise ValueError("a random-batch fit holds out whole points: the held-out mask must not vary across channels")
    held = per_point[:, 0]
    if int(held.sum()) in (0, held.numel()):
        raise ValueError(f"the held-out mask must leave some measurements in and some out; it holds out "
                         f"{int(held.sum())} of {held.numel()} points")
    if held_out.patience is not None and held_out.patience < 1:
        raise ValueError(f"held-out patience must be a positive number of steps or None; got {held_out.patience}")
    return torch.nonzero(~held).reshape(-1), torch.nonzero(held).reshape(-1)


def _broadcast_mask(mask: np.ndarray | torch.Tensor, y: torch.Tensor, what: str) -> torch.Tensor:
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    try:
        return torch.broadcast_to(mask.to(device=y.device, dtype=torch.bool), y.shape)
    except RuntimeError:
        raise ValueError(f"{what} mask of shape {tuple(mask.shape)} does not fit the measurement "
                         f"{tuple(y.shape)}") from None


def _discrepancy_weight(discrepancy: Discrepancy, y: torch.Tensor) -> torch.Tensor | None:
    sigma, tau = discrepancy.sigma, discrepancy.tau
    for name, value in (("sigma", sigma), ("tau", tau)):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                and math.isfinite(value) and value > 0):
            raise ValueError(f"the discrepancy {name} must be a finite number > 0; got {value!r}")
    if discrepancy.mask is None:
        return None
    weight = _broadcast_mask(discrepancy.mask, y, "discrepancy").float()
    if not bool(weight.any()):
        raise ValueError("the discrepancy mask selects no measurement")
    return weight


def _residual_rms(operator: Operator, f: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> float:
    """RMS of ``Operator.raw(f) - y`` over the measurement (the elements where ``weight`` is 1)."""
    with torch.no_grad():
        squared = (operator.raw(f) - y) ** 2
        mean = squared.mean() if weight is None else (squared * weight).sum() / weight.sum()
    return float(mean.sqrt())


def _points_error(model: nn.Module, operator: Operator, y: torch.Tensor, index: torch.Tensor, chunk_size: int) -> float:
    """Mean squared error of ``Operator.raw`` at the grid points ``index`` (pointwise operators)."""
    target = y.reshape(-1, y.shape[-1])
    total = 0.0
    with torch.no_grad():
        for chunk in torch.split(index, chunk_size):
            total += float(((operator.raw(model(operator.coordinates(chunk))) - target[chunk]) ** 2).sum())
    return total / (len(index) * y.shape[-1])


def _held_out_losses(model: nn.Module, operator: Operator, y: torch.Tensor, coords: torch.Tensor,
                     train_weight: torch.Tensor, val_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(loss on the kept measurements, field, error on the held-out ones)`` from one forward pass.

    The operator's loss is a mean over elements; weighting both sides by 0/1 and rescaling by the
    share of elements kept turns it into the mean over the kept elements alone. The held-out error is
    the mean squared error of :meth:`Operator.raw` (the data as measured) on the held-out elements.
    """
    f = model(coords).reshape(*operator.signal_shape, -1)
    pred = operator(f)
    n = float(train_weight.numel())
    loss = operator.loss(pred * train_weight, y * train_weight) * (n / float(train_weight.sum()))
    with torch.no_grad():
        raw = operator.raw(f.detach())
        error = float((((raw - y) * val_weight) ** 2).sum() / val_weight.sum())
    return loss, f, error
