"""PINN for 1-D convection: ``u_t + β u_x = 0`` solved by any coordinate network (see :mod:`reconstruct.pinn`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..fit import FitResult
from ..pinn import (
    FEATURE_KINDS,
    PINN_MODEL_DEFAULTS,
    SCHEMES,
    T_RANGE,
    X_RANGE,
    ConvectionOperator,
    SpaceTimeFeatures,
    SpaceTimeNet,
    exact_convection,
)
from .learning_rates import PINN_LEARNING_RATES
from .runner import build_network, run_fit, run_parameters, task_function
from .spec import FitSettings, Param, TaskSpec

__all__ = ["SOLVE_CONVECTION", "solve_convection"]


def _pinn_model_defaults(model: str, shape: Any) -> dict[str, Any]:
    return dict(PINN_MODEL_DEFAULTS.get(model, {}))


_NOT_IN_GUI = frozenset({"cli", "batch", "monai", "bench"})

SOLVE_CONVECTION = TaskSpec(
    name="solve_convection", command="pinn", title="PINN convection",
    summary="solve u_t + beta u_x = 0 with a physics-informed network",
    inputs=(),
    params=(
        Param("beta", float, 5.0, "convection speed (30 and up is the hard case)", positional=True, gui_high=200.0),
        Param("nx", int, 256, "grid points in x over [0, 2 pi], ends included", low=2, gui_high=4096),
        Param("nt", int, 100, "grid points in t over [0, 1], ends included", low=2, gui_high=4096),
        Param("n_collocation", int, 1024, "residual points per step", low=1, doors=_NOT_IN_GUI),
        Param("n_initial", int, 256, "initial-condition points per step", low=1, doors=_NOT_IN_GUI),
        Param("n_boundary", int, 128, "boundary time points per step", low=1, doors=_NOT_IN_GUI),
        Param("loss_weights", tuple, (1.0, 10.0, 1.0), "(residual, initial, boundary) loss weights", low=0.0,
              length=3, doors=_NOT_IN_GUI),
        Param("features", str, "joint", "input map: joint space-time Fourier features, periodic cylinder or raw",
              choices=FEATURE_KINDS),
        Param("x_frequencies", int, 2, "K of the joint features", low=1, doors=_NOT_IN_GUI),
        Param("t_frequencies", int, None, "M of the joint features (None: max(4, ceil(|beta| / pi) + 2))", low=1,
              optional=True, doors=_NOT_IN_GUI),
        Param("scheme", str, "vanilla", "training scheme: vanilla residual, causal time weighting (Wang et al. "
              "2022) or curriculum time marching", choices=SCHEMES),
        Param("causal_eps", float, 0.01, "causal scheme: epsilon of the weights exp(-eps * earlier slabs' residual)",
              low=0.0, gui_high=1000.0),
        Param("causal_slabs", int, 32, "causal scheme: time slabs the residual points are split into", low=1,
              doors=_NOT_IN_GUI),
        Param("curriculum_start", float, 0.3, "curriculum scheme: end of the first time window, t_max in (0, 1]",
              low=0.0, low_open=True, high=1.0),
        Param("curriculum_fraction", float, 0.3, "curriculum scheme: fraction of the steps over which the time "
              "window grows to [0, 1]", low=0.0, low_open=True, high=1.0, doors=_NOT_IN_GUI),
    ),
    metrics=("rel_l2",),
    default_steps=1000,
    output_grid="own",
    lr_overrides=PINN_LEARNING_RATES,
    model_defaults=_pinn_model_defaults,
)


@task_function(SOLVE_CONVECTION)
def solve_convection(*, params: dict[str, Any], fit: FitSettings, on_step: Any,
                     reference: Any) -> FitResult:
    """Solve ``u_t + β u_x = 0`` on ``[0, 2π] × [0, 1]`` with ``u(x, 0) = sin x``, periodic in x, by a PINN.

    Args:
        beta: transport speed β (finite; 5 is easy, 30 is the hard case of the literature).
        model: registry name of the network (:func:`monai_nets.available_networks`).
        model_kwargs: constructor arguments, merged over :data:`PINN_MODEL_DEFAULTS`.
        nx, nt: output grid: ``nx`` points over ``[0, 2π]`` and ``nt`` over ``[0, 1]``, ends included.
        steps: Adam steps (one fresh collocation draw each; ``None``: :data:`DEFAULT_STEPS`).
        lr: learning rate (default: the model's entry of
            :data:`~reconstruct.tasks.learning_rates.PINN_LEARNING_RATES`, from the committed sweep).
        lr_decay: factor the learning rate reaches at the last step.
        n_collocation, n_initial, n_boundary: residual, initial-condition and boundary points per step.
        loss_weights: ``(residual, initial, boundary)`` weights.
        features: the input map, ``"joint"`` (default), ``"periodic"`` or ``"raw"``
            (see :class:`SpaceTimeFeatures`).
        x_frequencies: K of the joint features.
        t_frequencies: M of the joint features; default ``max(4, ceil(|β| / π) + 2)`` so the
            temporal modes reach the transport frequency β (the PDE's known coefficient, not the
            solution).
        scheme: ``"vanilla"`` (default), ``"causal"`` or ``"curriculum"``; see
            :class:`~reconstruct.pinn.ConvectionOperator`.
        causal_eps: ε of the causal weights ``exp(−ε Σ_{k<i} L_k)`` (≥ 0).  The residual scales as
            β², so ε must be small: at β = 30, ε = 1 held NestNet at rel. L2 0.75 after 1,000 steps.
        causal_slabs: time slabs of the causal scheme (``n_collocation`` must be at least this).
        curriculum_start: the curriculum's first time window ``[0, curriculum_start]``.
        curriculum_fraction: the fraction of ``steps`` over which the window grows to ``[0, 1]``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: seeds the network's initialisation and the collocation draws.
        on_step: progress callback (see :func:`reconstruct.fit.fit`); return False to cancel.
        reference: ``(nx, nt)`` solution the metrics compare against (default: the exact one).
        time_budget_s: stop after this many seconds.
        preview_every: steps between renderings handed to ``on_step``.

    Returns:
        :class:`~reconstruct.fit.FitResult` with ``output`` u on the ``(nx, nt)`` grid (float32),
        ``metrics["rel_l2"]`` against ``reference``, and ``extras``: ``"exact"`` (nx, nt), ``"x"``
        (nx,), ``"t"`` (nt,), ``"error"`` ``|u − exact|``, ``"beta"``, ``"features"``,
        ``"scheme"``, ``"loss_terms"`` (the last step's unweighted residual/initial/boundary terms, plus
        ``"min_causal_weight"`` or ``"t_max"``), ``"causal_weights"`` (causal scheme: the last step's
        per-slab weights),
        ``"parameters"`` (the exact settings, JSON-able).

    Measured (β = 5, 300 steps, 1,024 collocation points, 64 × 32 grid, H100): NestNet 0.012,
    SIREN 0.004, MFN 0.008, FINER 0.017, WIRE 0.040, Gauss 0.067 with :data:`PINN_MODEL_DEFAULTS`;
    NestNet at β = 20 and β = 30 reached 0.072 and 0.075 after 1,000 steps (1,024 points).

    Example::

        result = solve_convection(5.0, steps=300, nx=64, nt=32)
        result.metrics["rel_l2"]   # about 0.03
    """
    beta, nx, nt = params["beta"], params["nx"], params["nt"]
    t_frequencies = params["t_frequencies"]
    if t_frequencies is None:
        t_frequencies = max(4, math.ceil(abs(beta) / math.pi) + 2)
    feats = SpaceTimeFeatures(params["features"], params["x_frequencies"], t_frequencies)
    operator = ConvectionOperator(beta, nx, nt, n_collocation=params["n_collocation"], n_initial=params["n_initial"],
                                  n_boundary=params["n_boundary"], weights=params["loss_weights"], seed=fit.seed,
                                  scheme=params["scheme"], steps=fit.steps, causal_eps=params["causal_eps"],
                                  causal_slabs=params["causal_slabs"], curriculum_start=params["curriculum_start"],
                                  curriculum_fraction=params["curriculum_fraction"])
    x = np.linspace(*X_RANGE, nx, dtype=np.float64)
    t = np.linspace(*T_RANGE, nt, dtype=np.float64)
    exact = exact_convection(beta, x, t)
    if reference is None:
        ref = exact
    else:
        ref = np.asarray(reference.detach().cpu() if isinstance(reference, torch.Tensor) else reference)
        if ref.shape != (nx, nt):
            raise ValueError(f"reference must have the grid's shape (nx, nt) = {(nx, nt)}, got {ref.shape}")
    network, net_kwargs = build_network(SOLVE_CONVECTION, fit, feats.out_features, 1, (nx, nt))
    net = SpaceTimeNet(network, feats, net_kwargs)
    # fit wants a finite measurement; the initial condition on the x grid serves (only its device is used).
    measurement = torch.from_numpy(np.sin(x).astype(np.float32)[:, None])
    result = run_fit(fit, net, operator, measurement, on_step=on_step, reference=ref)
    result.extras.update(
        exact=exact,
        x=x.astype(np.float32),
        t=t.astype(np.float32),
        error=np.abs(result.output - exact).astype(np.float32),
        beta=beta,
        features=feats.kind,
        scheme=operator.scheme,
        loss_terms=dict(operator.last_terms),
    )
    if operator.scheme == "causal":
        result.extras["causal_weights"] = np.asarray(operator.last_causal_weights, dtype=np.float32)
    result.extras["parameters"] = run_parameters(
        SOLVE_CONVECTION, fit, net_kwargs,
        {**params, "loss_weights": list(operator.weights), "t_frequencies": feats.t_frequencies})
    return result
