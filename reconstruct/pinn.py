"""Physics-informed solve of the 1-D convection equation with any coordinate network.

Problem: ``u_t + β u_x = 0`` for ``x ∈ [0, 2π]``, ``t ∈ [0, 1]``, ``u(x, 0) = sin x``, periodic in
``x``; exact solution ``u = sin(x − βt)``.  The network is fitted by THE loop
(:func:`reconstruct.fit.fit`) through :class:`ConvectionOperator`, whose training loss is the PDE
residual (derivatives by autograd with respect to the input coordinates) plus the initial-condition
and periodic-boundary misfits on collocation points.

Why the network does not see ``(x, t)`` directly (measured here, see ``DESIGN.md``): per-axis
("separable") encodings of ``x`` and ``t`` stall near relative L2 0.1, and an encoding that is not
2π-periodic in ``x`` leaves the boundary condition to the loss.  :class:`SpaceTimeNet` therefore
wraps *any* registry network behind the same input map, so every model gets the same, fair input:

* ``"joint"`` (default) — joint space–time Fourier features ``cos/sin(k x + ω_m t)`` with integer
  ``k`` (exactly 2π-periodic, so the boundary condition holds by construction) and ``ω_m = m π``;
* ``"periodic"`` — the cylinder ``(cos x, sin x, t)``: periodic, but separable;
* ``"raw"`` — ``(x, t)`` scaled to [−1, 1]: neither (the periodic-boundary loss does the work).

The features already carry the frequencies the solution needs, so each network's own input
frequency (NestNet's 32-frequency Fourier bank, SIREN's ω₀ = 30, ...) would only add derivatives
the residual has to fight: :data:`PINN_MODEL_DEFAULTS` lowers those settings per model (merged under
the caller's ``model_kwargs``), in the same spirit as the per-model learning rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .operators import Operator

__all__ = [
    "exact_convection",
    "ConvectionOperator",
    "SpaceTimeNet",
    "SpaceTimeFeatures",
    "FEATURE_KINDS",
    "SCHEMES",
    "causal_weights",
    "PINN_MODEL_DEFAULTS",
    "X_RANGE",
    "T_RANGE",
]

TWO_PI = 2.0 * math.pi
#: The physical domain: ``x ∈ [0, 2π]`` (periodic), ``t ∈ [0, 1]``.
X_RANGE = (0.0, TWO_PI)
T_RANGE = (0.0, 1.0)
#: Input maps of :class:`SpaceTimeFeatures`.
FEATURE_KINDS = ("joint", "periodic", "raw")
#: Training schemes of :class:`ConvectionOperator` (see its docstring).
SCHEMES = ("vanilla", "causal", "curriculum")

#: Per-model constructor settings for the PINN, merged under ``model_kwargs``.  The joint features
#: already oscillate at the solution's frequencies; each network's own input frequency is lowered
#: so the residual's derivatives do not drown the initial condition (at its image-fitting defaults
#: NestNet, WIRE, Gauss, MFN, FFN and ReLU+PE all collapsed to the trivial solution u = 0,
#: rel. L2 ≈ 1).  Each entry is the best of a small grid at β = 5, 300 steps (H100 sweep; see
#: ``solve_convection``'s notes): rel. L2 NestNet 0.012, SIREN 0.004, FINER 0.017, WIRE 0.040,
#: Gauss 0.067, MFN 0.008; FFN (σ = 0.02) 0.017 and ReLU+PE 0.043 at width 64 on the CPU.  FFN's σ
#: is small because its random projection sums all 44 features (a norm of about √22).
PINN_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "nestnet": {"num_frequencies": 2},
    "siren": {"omega_0": 1.0, "hidden_omega_0": 1.0},
    "finer": {"omega_0": 10.0},
    "wire": {"omega_0": 1.0, "sigma_0": 1.0},
    "gauss": {"scale": 1.0},
    "mfn": {"input_scale": 8.0},
    "ffn": {"sigma": 0.02},
    "relu_pe": {"num_frequencies": 1},
}


def exact_convection(beta: float, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Exact solution ``sin(x − βt)`` on the grid ``x`` × ``t``; returns ``(len(x), len(t))`` float32."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    return np.sin(x[:, None] - float(beta) * t[None, :]).astype(np.float32)


def _to_physical(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network coordinates in [−1, 1]² (array order x, t) → physical ``(x, t)``."""
    x = (coords[..., 0] + 1.0) * (0.5 * (X_RANGE[1] - X_RANGE[0])) + X_RANGE[0]
    t = (coords[..., 1] + 1.0) * (0.5 * (T_RANGE[1] - T_RANGE[0])) + T_RANGE[0]
    return x, t


def _to_network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Physical ``(x, t)`` → network coordinates in [−1, 1]², stacked on the last axis."""
    xn = 2.0 * (x - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0]) - 1.0
    tn = 2.0 * (t - T_RANGE[0]) / (T_RANGE[1] - T_RANGE[0]) - 1.0
    return torch.stack([xn, tn], dim=-1)


class SpaceTimeFeatures(nn.Module):
    """Input map of the PINN: physical ``(x, t)`` → features in [−1, 1] fed to the wrapped network.

    Args:
        kind: ``"joint"``, ``"periodic"`` or ``"raw"`` (see the module docstring).
        x_frequencies: K, the largest integer spatial frequency of the joint features (k = 0..K).
        t_frequencies: M, temporal frequencies ``ω_m = m π``, m = −M..M, of the joint features.
            ``π`` spacing gives period 2 in t, so t = 0 and t = 1 are not tied together.

    The joint features are ``cos/sin(k x + ω_m t)`` for k = 1..K, m = −M..M, plus the purely temporal
    ``cos/sin(ω_m t)`` for m = 1..M: ``2 (K (2M + 1) + M)`` features.
    """

    def __init__(self, kind: str = "joint", x_frequencies: int = 2, t_frequencies: int = 4) -> None:
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}, got {kind!r}")
        for name, value, low in (("x_frequencies", x_frequencies, 1), ("t_frequencies", t_frequencies, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.kind = kind
        self.x_frequencies = x_frequencies
        self.t_frequencies = t_frequencies
        k = torch.arange(0, x_frequencies + 1, dtype=torch.float32)
        m = torch.arange(-t_frequencies, t_frequencies + 1, dtype=torch.float32)
        kk, mm = torch.meshgrid(k, m, indexing="ij")
        # k = 0 with m <= 0 repeats (or is constant): keep each temporal mode once.
        keep = ~((kk == 0) & (mm <= 0))
        self.register_buffer("k", kk[keep].contiguous(), persistent=False)
        self.register_buffer("omega", (math.pi * mm[keep]).contiguous(), persistent=False)
        self.out_features = {"joint": 2 * int(keep.sum()), "periodic": 3, "raw": 2}[kind]

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, x_frequencies={self.x_frequencies}, t_frequencies={self.t_frequencies}"

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tn = 2.0 * (t - T_RANGE[0]) / (T_RANGE[1] - T_RANGE[0]) - 1.0
        if self.kind == "raw":
            return torch.stack([2.0 * (x - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0]) - 1.0, tn], dim=-1)
        if self.kind == "periodic":
            return torch.stack([torch.cos(x), torch.sin(x), tn], dim=-1)
        phase = x.unsqueeze(-1) * self.k.to(x.dtype) + t.unsqueeze(-1) * self.omega.to(x.dtype)
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class SpaceTimeNet(nn.Module):
    """Any coordinate network behind the PINN's input map.

    Takes network coordinates ``(..., 2)`` in [−1, 1] (axis 0 = x, axis 1 = t, as
    :func:`reconstruct.grid.make_grid` lays out the ``(nx, nt)`` grid), maps them to physical
    ``(x, t)`` and then to :class:`SpaceTimeFeatures`, and returns the wrapped network's
    ``(..., 1)`` output.  ``recommended_lr`` and ``num_real_parameters`` pass through.

    Args:
        network: the wrapped network; its ``spatial_dims`` must equal ``features.out_features``.
        features: the input map.
        network_kwargs: the constructor arguments ``network`` was built with (kept for records).
    """

    spatial_dims = 2
    out_channels = 1

    def __init__(
        self, network: nn.Module, features: SpaceTimeFeatures, network_kwargs: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        dims = getattr(network, "spatial_dims", features.out_features)
        if dims != features.out_features:
            raise ValueError(
                f"network takes {dims} input coordinates but the {features.kind!r} features have "
                f"{features.out_features}; build it with spatial_dims={features.out_features}"
            )
        self.network = network
        self.features = features
        self.network_kwargs = dict(network_kwargs or {})

    @property
    def recommended_lr(self) -> float:
        return float(getattr(self.network, "recommended_lr", 1e-3))

    def num_real_parameters(self) -> int:
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters() if p.requires_grad)

    def physical(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``u(x, t)`` at physical coordinates (any matching shapes); returns that shape."""
        return self.network(self.features(x, t))[..., 0]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x, t = _to_physical(coords)
        return self.network(self.features(x, t))


def causal_weights(slab_losses: torch.Tensor, eps: float) -> torch.Tensor:
    """Causal weights ``w_i = exp(−ε Σ_{k<i} L_k)`` of per-slab residual losses, without gradient.

    Wang, Sankaran and Perdikaris (2022), "Respecting causality is all you need for training
    physics-informed neural networks": slab ``i`` (in time order) counts only once the slabs before
    it are solved.  ``w_0 = 1`` and the weights never increase along time (the losses are ≥ 0).

    Args:
        slab_losses: ``(M,)`` mean squared residuals of the M time slabs, earliest first.
        eps: causality parameter ε ≥ 0 (0: all weights 1, the vanilla loss).
    """
    losses = slab_losses.detach()
    before = torch.cumsum(losses, 0) - losses  # Σ_{k<i} L_k
    return torch.exp(-float(eps) * before)


class ConvectionOperator(Operator):
    """The PINN's "operator": its training loss is the physics, not a data misfit.

    ``training_loss`` ignores the grid and the measurement (it only takes the device from it) and
    returns ``w_r · R + w_ic · mean((u(x, 0) − sin x)²) + w_bc · mean((u(0, t) − u(2π, t))²)``
    with the residual ``r = u_t + β u_x`` from autograd and ``R`` its loss under the ``scheme``:

    * ``"vanilla"`` — ``R = mean(r²)`` over points uniform in ``[0, 2π] × [0, 1]``;
    * ``"causal"`` — causal training (Wang, Sankaran, Perdikaris 2022): the time axis is cut into
      ``causal_slabs`` equal slabs with the same number of points each (stratified draws),
      ``L_i = mean(r²)`` on slab ``i``, ``R = mean(w_i L_i)`` with :func:`causal_weights`
      ``w_i = exp(−ε Σ_{k<i} L_k)`` (no gradient through the weights): a later slab enters the loss
      only as the earlier ones are solved, so the network cannot fit a wrong late-time solution first;
    * ``"curriculum"`` — time marching: the residual and boundary points are drawn in
      ``[0, t_max]`` with ``t_max`` growing linearly from ``curriculum_start`` to 1 over the first
      ``curriculum_fraction`` of the ``steps`` (then the full domain); the initial condition is
      propagated outward one window at a time (in the spirit of Krishnapriyan et al. 2021 and
      Wight & Zhao 2020's adaptive time sampling).

    Measured (CPU, 1,000 steps, one seed, ``benchmarks/results/pinn_schemes_cpu.json``), rel. L2 at
    β = 30 / 40 / 50 for vanilla → causal (ε = 0.01) → curriculum (0.3, 0.3): NestNet 0.031 / 0.112 /
    0.259 → 0.030 / 0.143 / 0.306 → 0.027 / 0.102 / 0.269; SIREN 0.0038 / 0.0066 / 0.0087 → 0.0024 /
    0.0048 / 0.0071 → 0.010 / 0.025 / 0.051; FINER 0.044 / 0.057 / 0.061 → 0.043 / 0.051 / 0.064 →
    0.058 / 0.063 / 0.075.  No scheme is better for every model, so vanilla stays the default.
    SIREN's causal gain is the weights' (ε = 0, stratified points only: 0.0039 at β = 30); NestNet
    is limited by how fast its residual falls, not by causality (ε = 0.1: 0.046, ε = 1: 0.75 at β = 30).

    Collocation points are drawn afresh every step from a generator seeded with ``seed`` on the
    CPU (so a run is the same on any device); fresh points keep the network from satisfying the PDE
    only at a fixed set.  With the joint or periodic features the boundary term is zero by
    construction (kept for ``"raw"``).  The schedules count calls of :meth:`training_loss` (one per
    step of :func:`reconstruct.fit.fit`).

    Args:
        beta: transport speed β (any finite number; negative moves left).
        nx, nt: output grid ``(nx, nt)`` over ``[0, 2π] × [0, 1]``, end points included.
        n_collocation: residual points per step (at least ``causal_slabs`` for the causal scheme).
        n_initial: initial-condition points per step.
        n_boundary: boundary time points per step.
        weights: ``(residual, initial, boundary)`` loss weights.
        seed: seed of the collocation sampling.
        scheme: ``"vanilla"``, ``"causal"`` or ``"curriculum"``.
        steps: the run's total steps (the curriculum's clock; required for ``"curriculum"``).
        causal_eps: ε of the causal weights (≥ 0).
        causal_slabs: M, the number of time slabs of the causal scheme (≥ 1).
        curriculum_start: the first time window's end ``t_max`` in (0, 1].
        curriculum_fraction: the fraction of ``steps`` over which the window grows to [0, 1], in (0, 1].
    """

    pointwise = False
    metric_names = ("rel_l2",)

    def __init__(
        self,
        beta: float,
        nx: int = 256,
        nt: int = 100,
        *,
        n_collocation: int = 1024,
        n_initial: int = 256,
        n_boundary: int = 128,
        weights: Sequence[float] = (1.0, 10.0, 1.0),
        seed: int = 0,
        scheme: str = "vanilla",
        steps: int | None = None,
        causal_eps: float = 0.01,
        causal_slabs: int = 32,
        curriculum_start: float = 0.3,
        curriculum_fraction: float = 0.3,
    ) -> None:
        super().__init__((nx, nt), 1)
        self.beta = _check_beta(beta)
        self.n_collocation = _check_count("n_collocation", n_collocation)
        self.n_initial = _check_count("n_initial", n_initial)
        self.n_boundary = _check_count("n_boundary", n_boundary)
        w = tuple(float(v) for v in weights)
        if len(w) != 3 or not all(math.isfinite(v) and v >= 0 for v in w):
            raise ValueError(
                f"weights must be three non-negative numbers (residual, initial, boundary), got {weights!r}"
            )
        self.weights = w
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
        self.scheme = scheme
        self.steps = None if steps is None else _check_count("steps", steps)
        if scheme == "curriculum" and self.steps is None:
            raise ValueError("the curriculum scheme needs the run's steps (its clock); pass steps=")
        self.causal_eps = _check_number("causal_eps", causal_eps, 0.0)
        self.causal_slabs = _check_count("causal_slabs", causal_slabs)
        if scheme == "causal" and self.n_collocation < self.causal_slabs:
            raise ValueError(f"n_collocation ({self.n_collocation}) must be at least causal_slabs "
                             f"({self.causal_slabs}): every time slab needs residual points")
        self.curriculum_start = _check_number("curriculum_start", curriculum_start, 0.0, 1.0, low_open=True)
        self.curriculum_fraction = _check_number("curriculum_fraction", curriculum_fraction, 0.0, 1.0,
                                                 low_open=True)
        self.generator = torch.Generator().manual_seed(int(seed))
        #: Calls of :meth:`training_loss` so far (the schedules' clock).
        self.calls = 0
        #: The unweighted loss terms of the last step (floats), for diagnostics; the causal scheme adds
        #: ``"min_causal_weight"``, the curriculum ``"t_max"``.
        self.last_terms: dict[str, float] = {}
        #: The causal weights of the last step, earliest slab first (causal scheme only).
        self.last_causal_weights: list[float] = []

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) * (high - low) + low).to(device)

    def t_max(self, step: int) -> float:
        """The curriculum's time window end after ``step`` completed steps (1 for the other schemes)."""
        if self.scheme != "curriculum":
            return T_RANGE[1]
        progress = min(1.0, step / (self.curriculum_fraction * self.steps))
        start = self.curriculum_start
        return T_RANGE[0] + (start + (1.0 - start) * progress) * (T_RANGE[1] - T_RANGE[0])

    def residual(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """PDE residual ``u_t + β u_x`` at physical points (differentiable w.r.t. the model)."""
        x = x.detach().requires_grad_(True)
        t = t.detach().requires_grad_(True)
        u = model(_to_network(x, t))[..., 0]
        u_x, u_t = torch.autograd.grad(u.sum(), (x, t), create_graph=True)
        return u_t + self.beta * u_x

    def slab_losses(self, model: nn.Module, x: torch.Tensor, slab: torch.Tensor) -> torch.Tensor:
        """Mean squared residual of each causal time slab: points ``x``, slab index per point."""
        m = self.causal_slabs
        width = (T_RANGE[1] - T_RANGE[0]) / m
        u01 = torch.rand(slab.shape[0], generator=self.generator).to(x.device)
        t = T_RANGE[0] + (slab.to(x.dtype) + u01) * width
        r2 = self.residual(model, x, t).square()
        sums = torch.zeros(m, dtype=r2.dtype, device=r2.device).index_add(0, slab, r2)
        counts = torch.bincount(slab, minlength=m).to(r2.dtype)
        return sums / counts

    def training_loss(
        self,
        model: nn.Module,
        measurement: torch.Tensor,
        coords: torch.Tensor | None,
        batch_index: torch.Tensor | None,
    ) -> tuple[torch.Tensor, None]:
        dev = measurement.device
        t_end = self.t_max(self.calls)
        self.calls += 1
        x_r = self._uniform(self.n_collocation, *X_RANGE, dev)
        terms: dict[str, float] = {}
        if self.scheme == "causal":
            # Equal counts per slab (stratified in time), earliest slab first.
            slab = (torch.arange(self.n_collocation) * self.causal_slabs // self.n_collocation).to(dev)
            per_slab = self.slab_losses(model, x_r, slab)
            w = causal_weights(per_slab, self.causal_eps)
            res = (w * per_slab).mean()
            self.last_causal_weights = w.tolist()
            terms["residual"] = float(per_slab.detach().mean())
            terms["min_causal_weight"] = float(w.min())
        else:
            t_r = self._uniform(self.n_collocation, T_RANGE[0], t_end, dev)
            res = self.residual(model, x_r, t_r).square().mean()
            terms["residual"] = float(res.detach())
        x_0 = self._uniform(self.n_initial, *X_RANGE, dev)
        u_0 = model(_to_network(x_0, torch.full_like(x_0, T_RANGE[0])))[..., 0]
        ic = (u_0 - torch.sin(x_0)).square().mean()
        t_b = self._uniform(self.n_boundary, T_RANGE[0], t_end, dev)
        u_left = model(_to_network(torch.full_like(t_b, X_RANGE[0]), t_b))[..., 0]
        u_right = model(_to_network(torch.full_like(t_b, X_RANGE[1]), t_b))[..., 0]
        bc = (u_left - u_right).square().mean()
        w_r, w_ic, w_bc = self.weights
        terms.update(initial=float(ic.detach()), boundary=float(bc.detach()))
        if self.scheme == "curriculum":
            terms["t_max"] = t_end
        self.last_terms = terms
        return w_r * res + w_ic * ic + w_bc * bc, None


def _check_beta(beta: object) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise TypeError(f"beta must be a real number (the transport speed), got {type(beta).__name__}")
    value = float(beta)
    if not math.isfinite(value):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    return value


def _check_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_number(name: str, value: object, low: float, high: float | None = None, *,
                  low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or (out <= low if low_open else out < low) or (high is not None and out > high):
        where = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}]'}"
        raise ValueError(f"{name} must be a finite number in {where}, got {value!r}")
    return out
