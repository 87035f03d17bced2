"""Task descriptions: what a task takes, once, for every front door.

A :class:`TaskSpec` names a task (``ct_reconstruct``, short command ``ct``), its data inputs, its typed
parameters (:class:`Param`: default, bounds, choices, units, one-line help), its metrics, default steps
and output grid. The common fit settings (model, model arguments, steps, learning rate, decay, device,
seed, time budget, preview) are one validated object, :class:`FitSettings`, described by
:data:`FIT_PARAMS` in the same terms. The ``nestnet`` command, ``nestnet batch``, the napari panels, the
MONAI dictionary transforms and the benchmarks read their options from these descriptions, so adding a
parameter to a task is one edit in its spec.

This module describes and validates; it imports no task function (the registry in
:mod:`reconstruct.tasks.registry` joins the two).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_nets import available_networks, network_class

from ..device import resolve_device
from ..stopping import STOP_RULES

__all__ = ["Param", "DataInput", "TaskSpec", "FitSettings", "FIT_PARAMS", "DOORS", "normalise_model_name",
           "check_device_name", "stop_params"]

#: The front doors a parameter can be exposed at.
DOORS = frozenset({"cli", "batch", "gui", "monai", "bench"})

_NOTHING = object()


def normalise_model_name(model: Any) -> str:
    """The registry key of ``model`` (``"ReLU-PE"`` -> ``"relu_pe"``); one-line errors for unknown names."""
    if not isinstance(model, str):
        raise TypeError(f"model must be a network name ({', '.join(available_networks())}); got "
                        f"{type(model).__name__}")
    network_class(model)  # unknown names: one-line ValueError listing the registry
    return model.strip().lower().replace("-", "_")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class Param:
    """One typed task parameter.

    Args:
        name: the Python keyword of the task function.
        type: ``int``, ``float``, ``str``, ``bool`` or ``tuple`` (a sequence of floats).
        default: the task function's default.
        help: one line for ``--help``, tooltips and docs.
        choices: the allowed values (strings), if any.
        low, high: bounds for numbers (``low_open``/``high_open``: the bound itself excluded).
        optional: ``None`` is accepted (it means "derived from the data" or "off"; ``help`` says which).
        units: physical units shown beside the value (``"degrees"``, ``"s"``).
        length: the number of values of a ``tuple`` parameter (None: any, at least one).
        flag: the command-line flag when it is not ``--<name with dashes>``.
        doors: the front doors that expose it (:data:`DOORS`).
        gui_high: an upper bound for a GUI field when ``high`` is unbounded.
        positional: the function takes it positionally, right after the data inputs (the PINN's ``beta``).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    optional: bool = False
    units: str = ""
    length: int | None = None
    flag: str | None = None
    doors: frozenset[str] = DOORS
    gui_high: float | None = None
    positional: bool = False
    high_open: bool = False

    @property
    def cli_flag(self) -> str:
        """The command-line flag, e.g. ``--tv-weight``."""
        return self.flag or "--" + self.name.replace("_", "-")

    def bounds_text(self) -> str:
        """The allowed values in words, for error messages and help."""
        if self.choices is not None:
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.type in (int, float) and (self.low is not None or self.high is not None):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            kind = "an integer" if self.type is int else "a finite number"
            text = f"{kind} in {'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
        else:
            text = {int: "an integer", float: "a finite number", str: "text", bool: "true or false",
                    tuple: f"{self.length or 'some'} numbers", dict: "a JSON object"}.get(self.type, "a value")
        return text + (" or None" if self.optional else "")

    def _bad(self, value: Any, kind: type[Exception] = ValueError) -> Exception:
        return kind(f"{self.name} must be {self.bounds_text()}; got {value!r}")

    def check(self, value: Any) -> Any:
        """``value`` validated and converted to the parameter's type.

        Raises:
            TypeError: a value of the wrong kind (text for a number, 2.5 for an integer); one line.
            ValueError: out of bounds, not a choice, not finite, None where not optional; one line.
        """
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{self.name} must be {self.bounds_text()}; got None")
        if self.type is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise self._bad(value, TypeError)
            return bool(value)
        if self.type is str:
            if not isinstance(value, str):
                raise self._bad(value, TypeError)
            if self.choices is not None and value not in self.choices:
                raise self._bad(value)
            return value
        if self.type is tuple:
            try:
                values = tuple(float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1))
            except (TypeError, ValueError):
                raise self._bad(value, TypeError) from None
            if not values or (self.length is not None and len(values) != self.length) or not all(
                    math.isfinite(v) for v in values):
                raise self._bad(value)
            if self.low is not None and not all(v > self.low if self.low_open else v >= self.low for v in values):
                raise self._bad(value)
            return values
        if not _is_number(value):
            raise self._bad(value, TypeError)
        if self.type is int:
            if isinstance(value, (float, np.floating)) and not float(value).is_integer():
                raise self._bad(value, TypeError)
            out: Any = int(value)
        else:
            out = float(value)
            if not math.isfinite(out):
                raise self._bad(value)
        if self.low is not None and (out <= self.low if self.low_open else out < self.low):
            raise self._bad(value)
        if self.high is not None and (out >= self.high if self.high_open else out > self.high):
            raise self._bad(value)
        return out

    def parse(self, text: str) -> Any:
        """The value of a command-line or CSV string (``"none"`` for an optional parameter's None)."""
        raw = text.strip()
        if self.optional and raw.lower() in ("none", "null", ""):
            return None
        try:
            if self.type is bool:
                lowered = raw.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(raw)
                value: Any = lowered in ("true", "1", "yes", "on")
            elif self.type is int:
                value = int(raw)
            elif self.type is float:
                value = float(raw)
            elif self.type is tuple:
                value = [float(v) for v in raw.replace(",", " ").split()]
            else:
                value = raw
        except ValueError:
            raise self._bad(text) from None
        return self.check(value)


@dataclasses.dataclass(frozen=True)
class DataInput:
    """A data input of a task (an array the function takes positionally, or by keyword).

    Args:
        name: the Python argument name.
        help: one line.
        keyword: a keyword-only argument (e.g. MISR's ``shifts``) rather than positional.
        per_item: a batch item may bring its own (a manifest column naming a file or spec).
    """

    name: str
    help: str
    keyword: bool = False
    per_item: bool = False


# -------------------------------------------------------------------------------------------- stop rules


def stop_params(*, stop: str, held_out: float, what: str, patience: int, sigma_none: str) -> tuple[Param, ...]:
    """The parameters of the ground-truth-free stop (:mod:`reconstruct.stopping`), the same for every task.

    Args:
        stop: the task's default rule (``"auto"``: held_out when the held-out fraction is > 0, else none).
        held_out: the task's default held-out fraction.
        what: what is held out, in words ("pixels", "projections (spread over the arc)").
        patience: the default patience in steps.
        sigma_none: what ``noise_sigma=None`` does, in words.
    """
    return (
        Param("stop", str, stop, "how the step is chosen without a ground truth: held_out (lowest error on "
              "held-out data, then refit on all of it), discrepancy (first step with residual RMS <= tau x "
              "noise_sigma), none (run all steps); auto = held_out when held_out > 0, else none",
              choices=STOP_RULES),
        Param("held_out", float, held_out, f"fraction of the {what} left out of the fit to choose the step on "
              "(stop auto/held_out; 0 = none held out)", low=0.0, high=0.5),
        Param("patience", int, patience, "held_out: steps without a lower held-out error before stopping", low=1,
              gui_high=100_000),
        Param("refit", bool, True, "held_out: after choosing the step, refit on all the data for that many steps "
              "(off: return the chosen iterate itself)"),
        Param("noise_sigma", float, None, f"discrepancy: noise standard deviation in the data's units (None: "
              f"{sigma_none})", low=0.0, low_open=True, optional=True, gui_high=1e6),
        Param("tau", float, 1.0, "discrepancy: stop once the residual RMS is at most tau x noise_sigma", low=0.0,
              low_open=True, gui_high=10.0),
    )


# -------------------------------------------------------------------------------------------- fit settings

#: The common fit settings, described like task parameters (the front doors generate them from here).
FIT_PARAMS: tuple[Param, ...] = (
    Param("model", str, "nestnet", "network (a monai_nets registry name)", choices=tuple(available_networks())),
    Param("model_kwargs", dict, None, "network constructor arguments, e.g. {\"hidden_channels\": [128, 128]}",
          optional=True),
    Param("steps", int, None, "optimisation steps (None: the task's default)", low=1, optional=True,
          gui_high=1_000_000),
    Param("lr", float, None, "Adam learning rate (None: the model's default for the task)", low=0.0,
          low_open=True, optional=True, gui_high=1.0),
    Param("lr_decay", float, 0.1, "factor the learning rate reaches at the last step", low=0.0, low_open=True,
          high=1.0),
    Param("device", str, "auto", "auto (CUDA when present), cpu, cuda or cuda:N"),
    Param("seed", int, 0, "seeds the network initialisation and the batch draws", low=0, gui_high=2**31 - 1),
    Param("time_budget_s", float, None, "stop fitting after this many seconds (None: no limit)", low=0.0,
          low_open=True, optional=True, units="s", flag="--time-budget"),
    Param("preview_every", int, None, "steps between previews handed to on_step (None: none)", low=1,
          optional=True, doors=frozenset({"gui"})),
)
_FIT_BY_NAME = {p.name: p for p in FIT_PARAMS}


def check_device_name(device: Any) -> str | torch.device:
    """``device`` checked for its form (``auto``, ``cpu``, ``cuda``, ``cuda:N``) without asking for CUDA here."""
    if isinstance(device, torch.device):
        return device
    if device is None:
        return "auto"
    text = str(device).strip().lower()
    head, _, index = text.partition(":")
    if head not in ("auto", "cpu", "cuda") or (index and (head != "cuda" or not index.isdigit())):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    return text


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """The validated common settings of a fit, the same for every task.

    Build it with :meth:`create`, which checks every field once (one-line errors) and fills the
    task's defaults: ``steps`` from the task's default steps, ``lr`` from :meth:`TaskSpec.default_lr`.

    Args:
        model: registry name (normalised, e.g. ``"relu_pe"``).
        model_kwargs: constructor arguments given by the caller (the task adds its own defaults
            under them when it builds the network, see :meth:`TaskSpec.network_kwargs`).
        steps, lr, lr_decay, device, seed, time_budget_s, preview_every: see :data:`FIT_PARAMS`.
    """

    model: str
    model_kwargs: Mapping[str, Any]
    steps: int
    lr: float
    lr_decay: float
    device: str | torch.device
    seed: int
    time_budget_s: float | None
    preview_every: int | None

    @classmethod
    def create(cls, spec: TaskSpec, **values: Any) -> FitSettings:
        """Validate ``values`` (names of :data:`FIT_PARAMS`) for ``spec``'s task and fill its defaults."""
        unknown = sorted(set(values) - set(_FIT_BY_NAME))
        if unknown:
            raise TypeError(f"unknown fit settings {', '.join(unknown)}; use {', '.join(_FIT_BY_NAME)}")
        given = {p.name: values.get(p.name, p.default) for p in FIT_PARAMS}
        model = normalise_model_name(given["model"])
        model_kwargs = given["model_kwargs"] or {}
        if not isinstance(model_kwargs, Mapping):
            raise TypeError(f"model_kwargs must be a dict of network arguments; got {type(model_kwargs).__name__}")
        for reserved in ("spatial_dims", "out_channels"):
            if reserved in model_kwargs:
                raise ValueError(f"model_kwargs must not set {reserved!r}: the task decides it from the data")
        accepted = [p for p in inspect.signature(network_class(model).__init__).parameters
                    if p not in ("self", "spatial_dims", "out_channels")]
        unknown = sorted(set(model_kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"{model} has no argument {', '.join(map(repr, unknown))}; it takes {', '.join(accepted)}")
        steps = _FIT_BY_NAME["steps"].check(given["steps"])
        lr = _FIT_BY_NAME["lr"].check(given["lr"])
        return cls(
            model=model,
            model_kwargs=dict(model_kwargs),
            steps=spec.default_steps if steps is None else steps,
            lr=spec.default_lr(model) if lr is None else lr,
            lr_decay=_FIT_BY_NAME["lr_decay"].check(given["lr_decay"]),
            device=resolve_device(check_device_name(given["device"])),
            seed=_FIT_BY_NAME["seed"].check(given["seed"]),
            time_budget_s=_FIT_BY_NAME["time_budget_s"].check(given["time_budget_s"]),
            preview_every=_FIT_BY_NAME["preview_every"].check(given["preview_every"]),
        )

    def parameters(self, model_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The settings as JSON-able values (``model_kwargs``: the arguments the network was built with)."""
        kwargs = dict(self.model_kwargs if model_kwargs is None else model_kwargs)
        return {
            "model": self.model,
            "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
            "steps": self.steps,
            "lr": self.lr,
            "lr_decay": self.lr_decay,
            "device": str(self.device),
            "seed": self.seed,
            "time_budget_s": self.time_budget_s,
        }


# -------------------------------------------------------------------------------------------- task spec


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The one description of a task.

    Args:
        name: the task function's name (``"ct_reconstruct"``), the key every front door uses.
        command: the short command name (``"ct"``: ``nestnet ct``, ``nestnet batch ct``).
        title: a title for panels and tables.
        summary: one line for ``--help``.
        inputs: the data inputs, in the function's order.
        params: the task's own parameters (the common fit settings are :data:`FIT_PARAMS`).
        metrics: the metrics it reports with a reference (the first one chooses the best iterate).
        default_steps: steps when ``steps=None``.
        output_grid: how the output grid follows from the input grid: ``"same"``, ``"upsampled"`` (by the
            ``scale`` parameter, same area covered), ``"detector"`` (CT: square pixels as wide as the
            detector bins), ``"own"`` (the task makes its grid, e.g. the PINN's (x, t)).
        lr_overrides: model name -> learning rate where it differs from the network's ``recommended_lr``.
        model_defaults: ``(model, shape) -> dict`` of network arguments the task uses unless the caller
            sets them (e.g. a smoother Fourier prior for denoising).
        reference: the task accepts a ground truth ``reference`` for metrics.
    """

    name: str
    command: str
    title: str
    summary: str
    inputs: tuple[DataInput, ...]
    params: tuple[Param, ...]
    metrics: tuple[str, ...]
    default_steps: int
    output_grid: str = "same"
    lr_overrides: Mapping[str, float] = dataclasses.field(default_factory=dict)
    model_defaults: Callable[[str, Sequence[int]], dict[str, Any]] | None = None
    reference: bool = True

    def param(self, name: str) -> Param:
        """The parameter called ``name`` (task or common fit setting)."""
        for p in (*self.params, *FIT_PARAMS):
            if p.name == name:
                return p
        raise KeyError(f"task {self.name} has no parameter {name!r}")

    def params_for(self, door: str) -> tuple[Param, ...]:
        """The task parameters a front door exposes."""
        return tuple(p for p in self.params if door in p.doors)

    def defaults(self) -> dict[str, Any]:
        """Task parameter name -> default."""
        return {p.name: p.default for p in self.params}

    def check_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` validated (unknown names are an error) with the defaults filled in."""
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"{self.name} has no parameter {', '.join(map(repr, unknown))}; it takes "
                            f"{', '.join(sorted(known))}")
        return {p.name: p.check(values.get(p.name, p.default)) for p in self.params}

    def default_lr(self, model: str) -> float:
        """The default Adam learning rate of ``model`` for this task."""
        key = normalise_model_name(model)
        return float(self.lr_overrides.get(key, network_class(key).recommended_lr))

    def network_kwargs(self, settings: FitSettings, shape: Sequence[int]) -> dict[str, Any]:
        """The network arguments of a run: the task's defaults for ``shape`` under the caller's."""
        base = self.model_defaults(settings.model, shape) if self.model_defaults is not None else {}
        return {**base, **settings.model_kwargs}
