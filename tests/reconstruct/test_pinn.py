"""The convection PINN: exact solution, periodic features, autograd residual, and that it learns."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from monai_nets import available_networks, get_fused_backend, get_network, set_fused_backend
from reconstruct.fit import FitResult
from reconstruct.metrics import rel_l2
from reconstruct.pinn import (
    PINN_MODEL_DEFAULTS,
    SCHEMES,
    ConvectionOperator,
    SpaceTimeFeatures,
    SpaceTimeNet,
    causal_weights,
    exact_convection,
)
from reconstruct.tasks import solve_convection


def build_model(model: str, model_kwargs: dict, features: SpaceTimeFeatures) -> SpaceTimeNet:
    """A network behind the PINN's input map with the task's per-model defaults (as solve_convection builds it)."""
    kwargs = {**PINN_MODEL_DEFAULTS[model], **model_kwargs}
    torch.manual_seed(0)
    return SpaceTimeNet(get_network(model, features.out_features, 1, **kwargs), features, kwargs)

TINY = {"hidden_channels": (16, 16)}


@pytest.fixture(autouse=True)
def eager_activation():
    """Run NestNet's fused activation eagerly: compiling it costs tens of seconds, once per process."""
    previous = get_fused_backend()
    set_fused_backend("eager")
    yield
    set_fused_backend(previous)


def test_exact_solution_solves_the_problem():
    beta = 5.0
    x = np.linspace(0, 2 * np.pi, 401)
    t = np.linspace(0, 1, 201)
    u32 = exact_convection(beta, x, t)
    assert u32.shape == (401, 201) and u32.dtype == np.float32
    u = u32.astype(np.float64)
    np.testing.assert_allclose(u[:, 0], np.sin(x), atol=1e-6)  # initial condition
    np.testing.assert_allclose(u[0], u[-1], atol=1e-6)  # periodic in x
    # u_t + β u_x = 0 by central differences (second-order accurate).
    u_t = (u[1:-1, 2:] - u[1:-1, :-2]) / (2 * (t[1] - t[0]))
    u_x = (u[2:, 1:-1] - u[:-2, 1:-1]) / (2 * (x[1] - x[0]))
    assert np.abs(u_t + beta * u_x).max() < 1e-2
    # A wrong transport speed does not.
    assert np.abs(u_t + 4.0 * u_x).max() > 0.5


def test_joint_features_are_exactly_periodic_and_counted():
    feats = SpaceTimeFeatures("joint", x_frequencies=2, t_frequencies=3)
    assert feats.out_features == 2 * (2 * (2 * 3 + 1) + 3)
    x = torch.rand(64, dtype=torch.float64) * 2 * math.pi
    t = torch.rand(64, dtype=torch.float64)
    torch.testing.assert_close(feats(x, t), feats(x + 2 * math.pi, t))
    # No feature is constant: every (k, ω) pair varies somewhere.
    values = feats(x, t)
    assert values.std(0).min() > 0.1
    assert SpaceTimeFeatures("periodic").out_features == 3
    assert SpaceTimeFeatures("raw").out_features == 2


def test_space_time_net_maps_grid_ends_to_the_same_value():
    net = build_model("siren", TINY, SpaceTimeFeatures("joint"))
    assert isinstance(net, SpaceTimeNet) and net.recommended_lr > 0
    t = torch.linspace(-1, 1, 7)
    left = torch.stack([torch.full_like(t, -1.0), t], -1)
    right = torch.stack([torch.full_like(t, 1.0), t], -1)
    torch.testing.assert_close(net(left), net(right), atol=1e-5, rtol=0)
    assert net(left).shape == (7, 1)
    raw = build_model("siren", TINY, SpaceTimeFeatures("raw"))
    assert not torch.allclose(raw(left), raw(right), atol=1e-3)


class _ExactModel(nn.Module):
    """u = sin(x − βt) written on network coordinates in [−1, 1]²: the residual must vanish."""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = (coords[..., 0] + 1) * math.pi
        t = (coords[..., 1] + 1) / 2
        return (torch.sin(x - self.beta * t) + 0 * self.dummy).unsqueeze(-1)


def test_residual_uses_physical_derivatives():
    op = ConvectionOperator(5.0, 16, 8, seed=0)
    x = torch.rand(256) * 2 * math.pi
    t = torch.rand(256)
    assert op.residual(_ExactModel(5.0), x, t).abs().max() < 1e-4
    # u = sin(x − 3t) has u_t + 5 u_x = 2 cos(x − 3t).
    r = op.residual(_ExactModel(3.0), x, t)
    torch.testing.assert_close(r, 2 * torch.cos(x - 3 * t), atol=1e-4, rtol=1e-4)
    loss, field_ = op.training_loss(_ExactModel(5.0), torch.zeros(16, 1), None, None)
    assert field_ is None and float(loss.detach()) < 1e-8
    assert set(op.last_terms) == {"residual", "initial", "boundary"}


def test_nestnet_solves_beta_5():
    result = solve_convection(
        5.0, model="nestnet", model_kwargs={"hidden_channels": (128, 128)}, nx=64, nt=32, steps=300,
        n_collocation=512, device="cpu", seed=0,
    )
    assert isinstance(result, FitResult)
    assert result.output.shape == (64, 32) and result.output.dtype == np.float32
    assert result.metrics["rel_l2"] < 0.05
    exact = result.extras["exact"]
    x, t = result.extras["x"], result.extras["t"]
    np.testing.assert_allclose(exact, exact_convection(5.0, x, t), atol=1e-6)
    assert result.extras["x"][0] == 0 and result.extras["x"][-1] == pytest.approx(2 * np.pi)
    assert result.extras["t"][-1] == pytest.approx(1.0)
    np.testing.assert_allclose(result.extras["error"], np.abs(result.output - exact), atol=1e-6)
    assert result.metrics["rel_l2"] == pytest.approx(rel_l2(result.output, exact), rel=1e-5)
    # Exactly periodic features: the x = 0 and x = 2π columns agree.
    np.testing.assert_allclose(result.output[0], result.output[-1], atol=1e-5)
    assert result.extras["loss_terms"]["boundary"] < 1e-8


def test_every_registry_model_runs_with_its_pinn_defaults():
    assert set(PINN_MODEL_DEFAULTS) <= set(available_networks())
    for name in available_networks():
        result = solve_convection(1.0, model=name, model_kwargs=TINY, nx=8, nt=4, steps=2, n_collocation=32,
                                  n_initial=16, n_boundary=8, device="cpu")
        assert result.output.shape == (8, 4) and np.isfinite(result.output).all(), name
        assert math.isfinite(result.metrics["rel_l2"]), name


def test_deterministic_cancellable_and_reference():
    kwargs = dict(model_kwargs=TINY, nx=8, nt=4, steps=5, n_collocation=32, device="cpu", seed=2)
    a = solve_convection(2.0, **kwargs)
    b = solve_convection(2.0, **kwargs)
    np.testing.assert_array_equal(a.output, b.output)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    params = json.loads(json.dumps(a.extras["parameters"]))  # JSON-able record of the exact settings
    # The caller's kwargs are merged over the PINN defaults; lr=None resolved to a number.
    assert params["model_kwargs"] == {"num_frequencies": 2, "hidden_channels": [16, 16]}
    assert params["lr"] > 0 and params["beta"] == 2.0 and params["steps"] == 5
    stopped = solve_convection(2.0, on_step=lambda info: info.step < 2, **kwargs)
    assert stopped.cancelled and stopped.steps == 2 and stopped.output.shape == (8, 4)
    zero_ref = np.ones((8, 4), dtype=np.float32)
    c = solve_convection(2.0, reference=zero_ref, **kwargs)
    assert c.metrics["rel_l2"] == pytest.approx(rel_l2(c.output, zero_ref), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"beta": float("nan")}, ValueError, "finite"),
        ({"beta": float("inf")}, ValueError, "finite"),
        ({"beta": "5"}, TypeError, "beta must be a finite number"),
        ({"beta": True}, TypeError, "beta must be a finite number"),
        ({"beta": 5.0, "nx": 1}, ValueError, "nx"),
        ({"beta": 5.0, "nt": 2.5}, TypeError, "nt"),
        ({"beta": 5.0, "n_collocation": 0}, ValueError, "n_collocation"),
        ({"beta": 5.0, "features": "polar"}, ValueError, "features"),
        ({"beta": 5.0, "loss_weights": (1.0, -1.0, 1.0)}, ValueError, "weights"),
        ({"beta": 5.0, "model": "nope"}, ValueError, "unknown network"),
        ({"beta": 5.0, "model_kwargs": {"spatial_dims": 2}}, ValueError, "spatial_dims"),
        ({"beta": 5.0, "reference": np.zeros((3, 3))}, ValueError, "reference"),
    ],
)
def test_bad_input(kwargs, exc, message):
    beta = kwargs.pop("beta")
    with pytest.raises(exc, match=message):
        solve_convection(beta, steps=1, device="cpu", **kwargs)


def test_negative_beta_moves_left():
    x = np.array([0.5])
    t = np.array([0.0, 0.1])
    u = exact_convection(-2.0, x, t)
    assert u[0, 1] == pytest.approx(np.sin(0.5 + 0.2))


# ------------------------------------------------------------------------------------ training schemes


def test_causal_weights_are_monotone_and_carry_no_gradient():
    losses = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0], requires_grad=True)
    w = causal_weights(losses, 1.0)
    assert not w.requires_grad and w.grad_fn is None
    assert w[0] == 1.0 and (w[1:] <= w[:-1]).all()
    torch.testing.assert_close(w, torch.exp(-torch.tensor([0.0, 0.5, 2.5, 2.5, 3.5])))
    assert torch.equal(causal_weights(losses, 0.0), torch.ones(5))  # eps = 0: the vanilla loss
    # Through the operator: the residual's gradient flows only through the slab losses.
    op = ConvectionOperator(3.0, 8, 4, n_collocation=64, scheme="causal", causal_slabs=8, causal_eps=1.0)
    net = build_model("siren", TINY, SpaceTimeFeatures("joint"))
    loss, _ = op.training_loss(net, torch.zeros(8, 1), None, None)
    loss.backward()
    weights = op.last_causal_weights
    assert len(weights) == 8 and weights[0] == 1.0
    assert all(b <= a for a, b in zip(weights, weights[1:]))
    assert op.last_terms["min_causal_weight"] == pytest.approx(min(weights))
    assert all(p.grad is not None for p in net.parameters())


class _Recorder(nn.Module):
    """Records the network coordinates it is asked about (t is axis 1, in [-1, 1])."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, coords):
        self.seen.append(coords.detach().clone())
        return (coords.sum(-1, keepdim=True) * self.weight)


def test_curriculum_marches_the_time_window_and_causal_stratifies_it():
    op = ConvectionOperator(3.0, 8, 4, n_collocation=256, scheme="curriculum", steps=100, curriculum_start=0.2,
                            curriculum_fraction=0.5)
    assert op.t_max(0) == pytest.approx(0.2) and op.t_max(25) == pytest.approx(0.6)
    assert op.t_max(50) == op.t_max(100) == 1.0
    model = _Recorder()
    op.training_loss(model, torch.zeros(8, 1), None, None)
    t_phys = [(c[..., 1] + 1) / 2 for c in model.seen]
    assert max(float(t.max()) for t in t_phys) <= 0.2 + 1e-6 and op.last_terms["t_max"] == pytest.approx(0.2)
    assert op.calls == 1
    with pytest.raises(ValueError, match="steps"):
        ConvectionOperator(3.0, scheme="curriculum")
    # Causal: the residual points fill every slab equally, earliest first.
    causal = ConvectionOperator(3.0, 8, 4, n_collocation=64, scheme="causal", causal_slabs=4)
    model = _Recorder()
    causal.training_loss(model, torch.zeros(8, 1), None, None)
    t = (model.seen[0][..., 1] + 1) / 2
    slabs = torch.div(t, 0.25, rounding_mode="floor").clamp(max=3)
    assert torch.equal(slabs, torch.arange(64) // 16)
    assert vanilla_terms() == {"residual", "initial", "boundary"}


def vanilla_terms() -> set[str]:
    op = ConvectionOperator(3.0, 8, 4, n_collocation=16)
    op.training_loss(_Recorder(), torch.zeros(8, 1), None, None)
    return set(op.last_terms)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_trains_a_tiny_model(scheme):
    # SIREN's own rate: the swept PINN default (a third of it) is chosen for 1,000 steps, not these 120
    result = solve_convection(2.0, model="siren", model_kwargs={"hidden_channels": (32, 32)}, nx=16, nt=8,
                              steps=120, lr=1e-3, n_collocation=128, n_initial=64, n_boundary=8, device="cpu",
                              seed=0, scheme=scheme, causal_slabs=8, curriculum_fraction=0.5)
    losses = [h["loss"] for h in result.history]
    errors = [h["rel_l2"] for h in result.history if "rel_l2" in h]
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:5]), scheme
    assert result.metrics["rel_l2"] < 0.5 * errors[0] and result.metrics["rel_l2"] < 0.3, scheme
    assert result.extras["scheme"] == scheme


def test_the_scheme_is_recorded():
    result = solve_convection(2.0, model_kwargs=TINY, nx=8, nt=4, steps=3, n_collocation=32, device="cpu",
                              scheme="causal", causal_eps=0.5, causal_slabs=4)
    params = json.loads(json.dumps(result.extras["parameters"]))
    assert params["scheme"] == "causal" and params["causal_eps"] == 0.5 and params["causal_slabs"] == 4
    assert result.extras["scheme"] == "causal" and result.extras["causal_weights"].shape == (4,)
    assert "min_causal_weight" in result.extras["loss_terms"]
    default = solve_convection(2.0, model_kwargs=TINY, nx=8, nt=4, steps=1, n_collocation=32, device="cpu")
    assert default.extras["parameters"]["scheme"] == "vanilla" and "causal_weights" not in default.extras


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"scheme": "adaptive"}, ValueError, "scheme must be one of vanilla, causal, curriculum"),
        ({"scheme": 3}, TypeError, "scheme must be"),
        ({"scheme": "causal", "causal_eps": -1.0}, ValueError, "causal_eps must be"),
        ({"causal_eps": float("nan")}, ValueError, "causal_eps must be"),
        ({"causal_slabs": 0}, ValueError, "causal_slabs must be"),
        ({"scheme": "causal", "causal_slabs": 64, "n_collocation": 32}, ValueError, "at least causal_slabs"),
        ({"curriculum_start": 0.0}, ValueError, "curriculum_start must be"),
        ({"curriculum_start": 1.5}, ValueError, "curriculum_start must be"),
        ({"curriculum_fraction": 0.0}, ValueError, "curriculum_fraction must be"),
    ],
)
def test_bad_scheme_settings_are_one_line(kwargs, exc, message):
    with pytest.raises(exc, match=message) as info:
        solve_convection(2.0, model_kwargs=TINY, nx=8, nt=4, steps=1, device="cpu", **kwargs)
    assert "\n" not in str(info.value)
