"""Occupancy volumes: fit a coordinate network to a binary volume (binary cross-entropy on voxel batches)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..fit import FitResult
from ..occupancy import DEFAULT_BATCH_SIZE, check_occupancy_volume
from ..operators import OccupancyOperator
from .common import check_spacing
from .learning_rates import OCCUPANCY_LEARNING_RATES
from .runner import build_network, run_fit, run_parameters, task_function
from .spec import DataInput, FitSettings, Param, TaskSpec

__all__ = ["FIT_OCCUPANCY", "fit_occupancy"]

FIT_OCCUPANCY = TaskSpec(
    name="fit_occupancy", command="occupancy", title="Occupancy volume",
    summary="fit an occupancy volume (from a mesh or a label volume)",
    inputs=(DataInput("volume", "(D, H, W) bool or 0/1 volume"),),
    params=(
        Param("batch_size", int, DEFAULT_BATCH_SIZE, "random voxels per step (None or >= the voxel count: "
              "full batch)", low=1, optional=True, gui_high=10_000_000),
        Param("spacing", tuple, None, "voxel size in array order (None: isotropic)", low=0.0, low_open=True,
              length=3, optional=True, doors=frozenset({"monai"})),
        Param("eval_every", int, None, "steps between IoU evaluations (None: steps // 20)", low=1, optional=True,
              doors=frozenset({"cli", "batch", "monai", "bench"})),
    ),
    metrics=("iou",),
    default_steps=500,
    lr_overrides=OCCUPANCY_LEARNING_RATES,
)


@task_function(FIT_OCCUPANCY)
def fit_occupancy(volume: Any, *, params: dict[str, Any], fit: FitSettings, on_step: Any,
                  reference: Any) -> FitResult:
    """Fit a coordinate network to a binary occupancy volume (binary cross-entropy on voxel batches).

    The network maps voxel coordinates in [−1, 1] (the physically longest axis spans [−1, 1] when
    ``spacing`` is given, so anisotropic volumes keep their aspect) to an inside/outside logit.

    Args:
        volume: ``(D, H, W)`` bool or 0/1 array (numpy or torch); never modified.
        batch_size: random voxels per step; volumes with no more voxels than this (or ``None``) are
            fitted full-batch.
        spacing: voxel size in array order (e.g. a :class:`~reconstruct.occupancy.VoxelGrid`'s), for
            anisotropic volumes.
        eval_every: steps between IoU evaluations, each a rendering of the whole volume (default
            ``steps // 20``; on small batches these renderings can cost more than the training).
        reference: binary volume the IoU is measured against.  Default: ``volume`` itself — fitting
            a given volume, the IoU says how faithfully the network represents it (the WIRE
            occupancy protocol).
        Others: the common fit settings (see :mod:`reconstruct.tasks`); ``lr`` defaults to the model's
            entry of :data:`~reconstruct.tasks.learning_rates.OCCUPANCY_LEARNING_RATES` (committed sweep).

    Returns:
        :class:`~reconstruct.fit.FitResult`: ``output`` the occupancy probability ``(D, H, W)``
        float32, ``metrics["iou"]`` at threshold 0.5, ``extras["spacing"]`` (or ``None``),
        ``extras["threshold"]`` (0.5), ``extras["occupied_fraction"]`` of the input,
        ``extras["parameters"]`` (the exact settings, JSON-able).
    """
    target = check_occupancy_volume(volume)
    ref = target if reference is None else check_occupancy_volume(reference, "reference")
    if ref.shape != target.shape:
        raise ValueError(f"reference shape {ref.shape} differs from the volume's {target.shape}")
    spacing = check_spacing(params["spacing"], 3)
    batch_size = params["batch_size"]
    batch_size = None if batch_size is None or batch_size >= target.size else batch_size
    network, net_kwargs = build_network(FIT_OCCUPANCY, fit, 3, 1, target.shape)
    operator = OccupancyOperator(target.shape, 1, spacing)
    result = run_fit(fit, network, operator, target[..., None], on_step=on_step, reference=ref,
                     batch_size=batch_size, eval_every=params["eval_every"])
    result.output = result.output.astype(np.float32, copy=False)
    result.extras.update(spacing=spacing, threshold=0.5, occupied_fraction=float(target.mean()))
    result.extras["parameters"] = run_parameters(FIT_OCCUPANCY, fit, net_kwargs,
                                                 {**params, "batch_size": batch_size, "spacing": spacing},
                                                 shape=list(target.shape))
    return result
