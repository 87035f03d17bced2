"""The one runner: every task function is generated from its spec and fits through :func:`run_fit`.

:func:`task_function` turns a task's implementation into its public function: the signature comes from
the :class:`~reconstruct.tasks.spec.TaskSpec` (data inputs, the task's parameters with their defaults,
the common fit settings, ``on_step`` and ``reference``), and every call validates the parameters and
the fit settings once before the implementation sees them. :func:`run_fit` builds the seeded network,
runs :func:`reconstruct.fit.fit` and maps outputs, previews and the best iterate back to the caller's
layout; :func:`run_parameters` is the JSON record of what ran.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_nets import get_network

from ..device import resolve_device
from ..fit import FitResult, StepInfo, fit
from .common import StopPlan
from .spec import FIT_PARAMS, FitSettings, TaskSpec

__all__ = ["task_function", "build_network", "run_fit", "run_parameters", "OnStep"]

OnStep = Callable[[StepInfo], "bool | None"]

_KW = inspect.Parameter.KEYWORD_ONLY
_POS = inspect.Parameter.POSITIONAL_OR_KEYWORD


def task_signature(spec: TaskSpec) -> inspect.Signature:
    """The public signature of ``spec``'s task function."""
    params = [inspect.Parameter(i.name, _KW if i.keyword else _POS) for i in spec.inputs if not i.keyword]
    params += [inspect.Parameter(p.name, _POS, default=p.default) for p in spec.params if p.positional]
    params += [inspect.Parameter(i.name, _KW) for i in spec.inputs if i.keyword]
    params += [inspect.Parameter(p.name, _KW, default=p.default) for p in spec.params if not p.positional]
    params += [inspect.Parameter(p.name, _KW, default=p.default) for p in FIT_PARAMS]
    params.append(inspect.Parameter("on_step", _KW, default=None))
    if spec.reference:
        params.append(inspect.Parameter("reference", _KW, default=None))
    return inspect.Signature(params, return_annotation=FitResult)


def task_function(spec: TaskSpec) -> Callable[[Callable[..., FitResult]], Callable[..., FitResult]]:
    """Decorate ``impl(*inputs, params, fit, on_step[, reference])`` into the public task function.

    The wrapper has :func:`task_signature`, checks the task parameters (:meth:`TaskSpec.check_params`)
    and the common fit settings (:meth:`FitSettings.create`) and passes them as ``params`` (a dict) and
    ``fit`` (a :class:`FitSettings`). ``wrapper.spec`` is the spec.
    """
    signature = task_signature(spec)

    def decorate(impl: Callable[..., FitResult]) -> Callable[..., FitResult]:
        @functools.wraps(impl)
        def wrapper(*args: Any, **kwargs: Any) -> FitResult:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{spec.name}(): {exc}") from None
            bound.apply_defaults()
            values = bound.arguments
            params = spec.check_params({p.name: values[p.name] for p in spec.params})
            settings = FitSettings.create(spec, **{p.name: values[p.name] for p in FIT_PARAMS})
            on_step = values["on_step"]
            if on_step is not None and not callable(on_step):
                raise TypeError(f"on_step must be callable or None; got {type(on_step).__name__}")
            extra = {"reference": values["reference"]} if spec.reference else {}
            inputs = [values[i.name] for i in spec.inputs]
            return impl(*inputs, params=params, fit=settings, on_step=on_step, **extra)

        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.spec = spec  # type: ignore[attr-defined]
        return wrapper

    return decorate


def build_network(spec: TaskSpec, settings: FitSettings, spatial_dims: int, out_channels: int,
                  shape: Sequence[int]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The seeded network of a run and the arguments it was built with.

    Initialised from ``settings.seed`` without touching the caller's global RNG state.
    """
    kwargs = spec.network_kwargs(settings, shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        return get_network(settings.model, spatial_dims=spatial_dims, out_channels=out_channels, **kwargs), kwargs


def _previews(on_step: OnStep | None, to_output: Callable[[np.ndarray], np.ndarray]) -> OnStep | None:
    """``on_step`` that hands the caller previews in the output layout and value range."""
    if on_step is None:
        return None

    def relay(info: StepInfo) -> bool | None:
        if info.output is not None:
            info = dataclasses.replace(info, output=to_output(info.output))
        return on_step(info)

    return relay


def run_fit(
    settings: FitSettings,
    network: torch.nn.Module,
    operator: Any,
    measurement: np.ndarray | torch.Tensor,
    *,
    on_step: OnStep | None,
    to_output: Callable[[np.ndarray], np.ndarray] | None = None,
    reference: np.ndarray | None = None,
    data_range: float = 1.0,
    batch_size: int | None = None,
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eval_every: int | None = None,
    stop: StopPlan | None = None,
) -> FitResult:
    """Fit ``network`` with the run's settings; outputs, previews and the best iterate through ``to_output``.

    ``stop`` is the run's stop rule (:func:`reconstruct.tasks.common.stop_plan`); what it chose is
    ``result.extras["stop"]`` (:meth:`StopPlan.report`).
    """
    def identity(values: np.ndarray) -> np.ndarray:
        return values

    convert = to_output or identity
    result = fit(
        network, operator, measurement, steps=settings.steps, lr=settings.lr, lr_decay=settings.lr_decay,
        batch_size=batch_size, seed=settings.seed, device=resolve_device(settings.device),
        on_step=_previews(on_step, convert), time_budget_s=settings.time_budget_s, reference=reference,
        data_range=data_range, preview_every=settings.preview_every, regularizer=regularizer,
        eval_every=eval_every, held_out=None if stop is None else stop.held_out,
        discrepancy=None if stop is None else stop.discrepancy,
    )
    if stop is not None:
        result.extras["stop"] = stop.report(result)
    result.output = convert(result.output)
    if result.best is not None and result.best.output is not None:
        result.best.output = convert(result.best.output)
    return result


def run_parameters(spec: TaskSpec, settings: FitSettings, network_kwargs: Mapping[str, Any],
                   params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The exact parameters of a run, JSON-able: task, fit settings, the task's parameters, and ``extra``."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, np.ndarray):
            return value.tolist()
        return value

    return {"task": spec.name, **settings.parameters(network_kwargs),
            **{k: plain(v) for k, v in params.items()}, **{k: plain(v) for k, v in extra.items()}}
