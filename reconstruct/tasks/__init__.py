"""The reconstruction tasks: each is an operator + defaults + metrics, described once and fitted by one loop.

Every task has one :class:`~reconstruct.tasks.spec.TaskSpec` (:data:`SPECS`): its data inputs, its
typed parameters, its metrics, default steps and output grid. The public functions are generated from
the specs (:func:`~reconstruct.tasks.runner.task_function`), and so are the front doors: the
``nestnet`` command, ``nestnet batch``, the napari panels, the MONAI transforms and the benchmarks.

Every task takes NumPy arrays or torch tensors, never modifies them, and returns a
:class:`~reconstruct.fit.FitResult` whose ``output`` is NumPy (float32) in the input's layout and value
range. The common fit settings (:data:`~reconstruct.tasks.spec.FIT_PARAMS`, validated once into a
:class:`~reconstruct.tasks.spec.FitSettings`): ``model`` (any :func:`monai_nets.available_networks`
name), ``model_kwargs`` (dict for :func:`monai_nets.get_network`), ``steps`` (``None``: the task's
default), ``lr`` (``None``: :func:`default_lr`), ``lr_decay``, ``device``, ``seed`` (network
initialisation and batch sampling), ``time_budget_s``, ``preview_every`` (``StepInfo.output`` is then
the current reconstruction in the output layout and value range); plus ``on_step`` and ``reference``
(ground truth in the output layout: enables metrics and ``result.best``).

Default learning rates (``default_lr(model, task)``): the network's ``recommended_lr`` (its paper's
rate) unless the task's spec overrides it. Fitting, super-resolution, the PINN and occupancy take the
choice of a committed sweep on a development case no table uses
(:mod:`reconstruct.tasks.learning_rates`, ``benchmarks/sweep_defaults.py``); denoising and CT keep the
recommended rates.

Default steps are sized for CPU-scale problems (64²–128² images); larger images need more steps, which
a GPU affords.  Denoising is the exception: its step count is the regulariser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..fit import FitResult
from ..occupancy import extract_surface, voxelize
from .common import Normalisation
from .ct import CT_RECONSTRUCT, ct_reconstruct, total_variation
from .ct3d import CT_RECONSTRUCT_3D, ct_reconstruct_3d
from .image import (
    DENOISE,
    FIT_IMAGE,
    SUPER_RESOLVE,
    SUPER_RESOLVE_MULTI,
    denoise,
    fit_image,
    simulate_misr_frames,
    super_resolve,
    super_resolve_multi,
)
from .occupancy import FIT_OCCUPANCY, fit_occupancy
from .pinn import SOLVE_CONVECTION, solve_convection
from .spec import FIT_PARAMS, DataInput, FitSettings, Param, TaskSpec, normalise_model_name

__all__ = [
    "SPECS",
    "TASKS",
    "DEFAULT_STEPS",
    "FIT_PARAMS",
    "TaskSpec",
    "Param",
    "DataInput",
    "FitSettings",
    "get_spec",
    "task_model_defaults",
    "default_lr",
    "fit_image",
    "denoise",
    "super_resolve",
    "super_resolve_multi",
    "simulate_misr_frames",
    "ct_reconstruct",
    "ct_reconstruct_3d",
    "total_variation",
    "fit_occupancy",
    "voxelize",
    "extract_surface",
    "solve_convection",
    "Normalisation",
]

#: Task name -> its description, in the order the front doors list them.
SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (FIT_IMAGE, DENOISE, SUPER_RESOLVE, SUPER_RESOLVE_MULTI, CT_RECONSTRUCT, CT_RECONSTRUCT_3D,
                 FIT_OCCUPANCY, SOLVE_CONVECTION)
}

#: Task name -> function: the names the GUI, the batch runner and the benchmarks use.
TASKS: dict[str, Callable[..., FitResult]] = {
    "fit_image": fit_image,
    "denoise": denoise,
    "super_resolve": super_resolve,
    "super_resolve_multi": super_resolve_multi,
    "ct_reconstruct": ct_reconstruct,
    "ct_reconstruct_3d": ct_reconstruct_3d,
    "fit_occupancy": fit_occupancy,
    "solve_convection": solve_convection,
}

#: Optimisation steps per task when ``steps=None`` (read from the specs).
DEFAULT_STEPS: dict[str, int] = {name: spec.default_steps for name, spec in SPECS.items()}


def get_spec(task: str) -> TaskSpec:
    """The spec of ``task``: a task name (``"ct_reconstruct"``) or command (``"ct"``, ``"fit-image"``).

    Raises:
        ValueError: unknown task (the message lists them).
    """
    if not isinstance(task, str):
        raise TypeError(f"task must be a string; got {type(task).__name__}")
    key = task.strip().lower()
    for spec in SPECS.values():
        if key in (spec.name, spec.command, spec.command.replace("-", "_"), spec.name.replace("_", "-")):
            return spec
    raise ValueError(f"unknown task {task!r}; choose one of {', '.join(s.command for s in SPECS.values())}")


def default_lr(model: str, task: str) -> float:
    """The default Adam learning rate of ``model`` (a registry name) for ``task`` (a task name).

    Raises:
        ValueError: unknown model or task.
    """
    return get_spec(task).default_lr(model)


def task_model_defaults(task: str, model: str, shape: Sequence[int]) -> dict[str, Any]:
    """Network arguments the task uses for ``model`` on data of spatial ``shape`` unless ``model_kwargs`` override.

    Denoising and single-image super-resolution give NestNet a smoother Fourier prior (see
    :func:`reconstruct.tasks.image.smooth_prior_defaults`); the PINN lowers every network's input
    frequency (:data:`reconstruct.pinn.PINN_MODEL_DEFAULTS`).
    """
    spec = get_spec(task)
    if spec.model_defaults is None:
        return {}
    return spec.model_defaults(normalise_model_name(model), shape)
