"""NestedActivation: exact initial values, fused == naive, gradcheck, heights, curve sampling."""

from __future__ import annotations

import pytest
import torch

from monai_nets import NestedActivation
from monai_nets.activations import INIT_B1, INIT_B2, INIT_W1, INIT_W2, get_fused_backend, set_fused_backend


def _perturbed(act: NestedActivation, seed: int = 0) -> NestedActivation:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in act.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return act


def test_prescribed_initial_values_are_exact():
    act = NestedActivation(height=2, num_subnets=2)
    assert torch.equal(act.w1, torch.tensor([INIT_W1, INIT_W1]))
    assert torch.equal(act.b1, torch.tensor([INIT_B1, INIT_B1]))
    assert torch.equal(act.w2, torch.tensor([INIT_W2, INIT_W2]))
    assert torch.equal(act.b2, torch.tensor([INIT_B2, INIT_B2]))
    assert INIT_W1 == (1.0, 1.0, 1.0) and INIT_B1 == (-0.2, -0.1, 0.0) and INIT_W2 == (1.0, 1.0, -1.0)
    assert sum(p.numel() for p in NestedActivation(num_subnets=1).parameters()) == 10


def test_initial_curve_matches_formula():
    act = NestedActivation()
    z = torch.linspace(-1, 1, 101)
    expected = torch.relu(z - 0.2) + torch.relu(z - 0.1) - torch.relu(z)
    torch.testing.assert_close(act(z), expected)


def test_height_one_is_relu_without_parameters():
    act = NestedActivation(height=1)
    z = torch.randn(10, 4)
    assert torch.equal(act(z), torch.relu(z))
    assert list(act.parameters()) == []


@pytest.mark.parametrize("height", [2, 3, 4])
@pytest.mark.parametrize("num_subnets", [1, 2, 3])
def test_fused_matches_naive_forward_and_backward(height, num_subnets):
    fused = _perturbed(NestedActivation(height, num_subnets))
    naive = NestedActivation(height, num_subnets, fused=False)
    naive.load_state_dict(fused.state_dict())
    z = torch.randn(64, 11, dtype=torch.float64, requires_grad=True)  # 11: uneven channel blocks for r = 2, 3
    fused.double()
    naive.double()
    yf, yn = fused(z), naive(z)
    torch.testing.assert_close(yf, yn)
    gf = torch.autograd.grad((yf**2).sum(), [z, *fused.parameters()])
    gn = torch.autograd.grad((yn**2).sum(), [z, *naive.parameters()])
    for a, b in zip(gf, gn):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("num_subnets", [2, 3, 4])
@pytest.mark.parametrize("shape, channel_dim", [((64, 12), -1), ((3, 12, 5, 4), None), ((2, 7, 12), -1)])
def test_one_kernel_over_equal_blocks_matches_naive(num_subnets, shape, channel_dim):
    """Height 2 with the width a multiple of r: every block in one call, z viewed as (..., r, C / r, ...)."""
    fused = _perturbed(NestedActivation(2, num_subnets, channel_dim=channel_dim)).double()
    naive = NestedActivation(2, num_subnets, channel_dim=channel_dim, fused=False).double()
    naive.load_state_dict(fused.state_dict())
    z = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    yf, yn = fused(z), naive(z)
    assert yf.shape == z.shape
    torch.testing.assert_close(yf, yn)
    gf = torch.autograd.grad((yf**2).sum(), [z, *fused.parameters()])
    gn = torch.autograd.grad((yn**2).sum(), [z, *naive.parameters()])
    for a, b in zip(gf, gn):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("height", [2, 3])
@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck_all_parameters_and_input(height, fused):
    act = _perturbed(NestedActivation(height, num_subnets=2, fused=fused)).double()
    names = [n for n, _ in act.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in act.parameters()]
    # Keep pre-activations away from the ReLU kinks, where finite differences are meaningless.
    z = torch.randn(6, 4, dtype=torch.float64)
    z = z + 0.013 * torch.sign(z)
    z.requires_grad_(True)

    def func(z, *ps):
        state = dict(zip(names, ps))
        return torch.func.functional_call(act, state, (z,))

    assert torch.autograd.gradcheck(func, (z, *params), eps=1e-6, atol=1e-5)
    # Height 2 has the 10 parameters of ϱ (per subnet); height 3 adds the inner subnetwork's 10.
    assert len(params) == 4 * (height - 1)


def test_channel_assignment_blocks():
    act = NestedActivation(num_subnets=2)
    with torch.no_grad():
        act.b2[1] = 5.0
    out = act(torch.zeros(3, 6))
    # Channels 0..2 use subnet 0 (b2 = 0), 3..5 subnet 1 (b2 = 5).
    assert torch.equal(out[0], torch.tensor([0.0, 0.0, 0.0, 5.0, 5.0, 5.0]))


def test_channel_dim_one_for_monai_layout():
    act = NestedActivation(num_subnets=2, channel_dim=1)
    with torch.no_grad():
        act.b2[1] = 1.0
    out = act(torch.zeros(2, 4, 3, 3))
    assert torch.equal(out[:, :2], torch.zeros(2, 2, 3, 3))
    assert torch.equal(out[:, 2:], torch.ones(2, 2, 3, 3))


def test_curve_samples_each_subnet():
    act = NestedActivation(num_subnets=2)
    with torch.no_grad():
        act.b2[1] = 1.0
    x, y = act.curve(-1.0, 1.0, num=11)
    assert x.shape == (11,) and y.shape == (2, 11)
    torch.testing.assert_close(y[1] - y[0], torch.ones(11))


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="height"):
        NestedActivation(height=0)
    with pytest.raises(TypeError, match="num_subnets"):
        NestedActivation(num_subnets=1.5)
    with pytest.raises(ValueError, match="init"):
        NestedActivation(init="xavier")
    with pytest.raises(ValueError, match="num_subnets=4"):
        NestedActivation(num_subnets=4)(torch.zeros(2, 3))


def test_random_init_differs_from_prescribed():
    torch.manual_seed(0)
    act = NestedActivation(init="random")
    assert not torch.equal(act.w1.detach(), torch.ones(1, 3))


def test_compiled_backend_matches_eager():
    """torch.compile path (Inductor) gives the same values and gradients as the eager kernels."""
    pytest.importorskip("torch._inductor")
    act = _perturbed(NestedActivation(num_subnets=2))
    z = torch.randn(256, 8, requires_grad=True)
    previous = get_fused_backend()
    try:
        set_fused_backend("eager")
        y_eager = act(z)
        g_eager = torch.autograd.grad(y_eager.sum(), [z, *act.parameters()])
        set_fused_backend("compile")
        y_comp = act(z)
        g_comp = torch.autograd.grad(y_comp.sum(), [z, *act.parameters()])
    finally:
        set_fused_backend(previous)
    torch.testing.assert_close(y_comp, y_eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_backend_name_is_validated():
    with pytest.raises(ValueError, match="backend"):
        set_fused_backend("fast")
