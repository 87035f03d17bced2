"""Every registry network: shapes, initialisations, registry, bad input, NestNet specifics."""

from __future__ import annotations

import math

import pytest
import torch

import monai_nets
from monai_nets import (
    FourierFeatures,
    GaussianFourierFeatures,
    NestNet,
    PositionalEncoding,
    Siren,
    Wire,
    available_networks,
    get_network,
)

NAMES = ["nestnet", "siren", "wire", "gauss", "mfn", "ffn", "relu_pe", "finer"]
SMALL = {"hidden_channels": (16, 16)}


def test_registry_names():
    assert available_networks() == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_shapes_with_batch_dims(name, spatial_dims):
    torch.manual_seed(0)
    net = get_network(name, spatial_dims=spatial_dims, out_channels=2, **SMALL)
    for lead in [(7,), (2, 3), (2, 2, 2)]:
        x = torch.rand(*lead, spatial_dims) * 2 - 1
        y = net(x)
        assert y.shape == (*lead, 2)
        assert y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_every_network_trains(name):
    """A few Adam steps on a smooth 1-D target reduce the loss (each with its recommended lr)."""
    torch.manual_seed(0)
    net = get_network(name, spatial_dims=1, out_channels=1, hidden_channels=(32, 32))
    x = torch.linspace(-1, 1, 64)[:, None]
    target = torch.sin(3 * x)
    opt = torch.optim.Adam(net.parameters(), lr=net.recommended_lr)
    first = None
    for _ in range(80):
        opt.zero_grad()
        loss = ((net(x) - target) ** 2).mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_height_one_is_exactly_a_relu_mlp():
    torch.manual_seed(0)
    net = NestNet(2, 3, hidden_channels=(32, 16), height=1)
    x = torch.rand(50, 2) * 2 - 1
    h = net.encoding(x)
    for layer in net.layers[:-1]:
        h = torch.relu(torch.nn.functional.linear(h, layer.weight, layer.bias))
    expected = torch.nn.functional.linear(h, net.layers[-1].weight, net.layers[-1].bias)
    assert torch.equal(net(x), expected)
    assert sum(p.numel() for p in net.activations.parameters()) == 0


def test_nestnet_structure_and_parameter_count():
    net = NestNet(2, 1, hidden_channels=(256, 256), num_subnets=2, num_frequencies=10)
    enc = 2 * 10 * 2
    mlp = (enc * 256 + 256) + (256 * 256 + 256) + (256 + 1)
    assert net.num_real_parameters() == mlp + 2 * 10  # two shared subnetworks of 10 parameters
    per_layer = NestNet(2, 1, hidden_channels=(256, 256), num_subnets=2, num_frequencies=10, share_subnets=False)
    assert per_layer.num_real_parameters() == mlp + 2 * 2 * 10
    assert per_layer.activation_for_layer(0) is not per_layer.activation_for_layer(1)
    assert net.activation_for_layer(0) is net.activation_for_layer(1)


def test_nestnet_height_three_and_naive_agree():
    torch.manual_seed(0)
    fused = NestNet(3, 1, hidden_channels=(16, 16), height=3)
    naive = NestNet(3, 1, hidden_channels=(16, 16), height=3, fused=False)
    naive.load_state_dict(fused.state_dict())
    x = torch.rand(20, 3) * 2 - 1
    torch.testing.assert_close(fused(x), naive(x))
    assert fused.activations[0].inner is not None and fused.activations[0].inner.height == 2


def test_state_dict_round_trip():
    torch.manual_seed(0)
    for name in NAMES:
        a = get_network(name, 2, 1, **SMALL)
        torch.manual_seed(1)
        b = get_network(name, 2, 1, **SMALL)
        b.load_state_dict(a.state_dict())
        x = torch.rand(9, 2) * 2 - 1
        assert torch.equal(a(x), b(x)), name


def test_siren_initialisation_bounds():
    net = Siren(2, 1, hidden_channels=(64, 64), omega_0=30.0)
    assert net.layers[0].weight.abs().max() <= 1 / 2
    bound = math.sqrt(6 / 64) / 30
    assert net.layers[1].weight.abs().max() <= bound
    assert net.layers[1].weight.abs().max() > 0.8 * bound


def test_wire_width_keeps_real_parameter_count_close_to_an_mlp():
    wire = Wire(2, 1, hidden_channels=(256, 256))
    siren = Siren(2, 1, hidden_channels=(256, 256))
    assert wire.first.out_features == int(256 / math.sqrt(2))
    ratio = wire.num_real_parameters() / siren.num_real_parameters()
    assert 0.95 < ratio < 1.05


def test_fourier_features_values_and_uniqueness():
    enc = FourierFeatures(1, num_frequencies=3, scale=0.25)
    x = torch.tensor([[-1.0], [0.5], [1.0]])
    out = enc(x)
    assert out.shape == (3, 6)
    freqs = 2 * math.pi * 0.25 * torch.arange(1, 4)
    torch.testing.assert_close(out[1, :3], torch.cos(0.5 * freqs))
    torch.testing.assert_close(out[1, 3:], torch.sin(0.5 * freqs))
    # The default scale keeps the two ends of the domain distinct (βᵢ = i alone would not).
    assert not torch.allclose(out[0], out[2])
    assert torch.allclose(FourierFeatures(1, 3, scale=1.0)(x)[0], FourierFeatures(1, 3, scale=1.0)(x)[2], atol=1e-5)


def test_other_encodings():
    g = GaussianFourierFeatures(3, num_features=8, sigma=2.0, seed=1)
    assert g(torch.zeros(4, 3)).shape == (4, 16)
    assert torch.equal(g.B, GaussianFourierFeatures(3, 8, 2.0, seed=1).B)
    p = PositionalEncoding(2, num_frequencies=4)
    assert p(torch.zeros(5, 2)).shape == (5, 2 + 2 * 2 * 4)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (torch.rand(4, 3), ValueError, r"shape \(\.\.\., 2\)"),
        (torch.randint(0, 2, (4, 2)), TypeError, "floating"),
        (torch.tensor([[0.0, float("nan")]]), ValueError, "NaN or Inf"),
        ([[0.0, 0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_coordinates(bad, exc, match):
    net = get_network("nestnet", 2, 1, **SMALL)
    with pytest.raises(exc, match=match):
        net(bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="unknown network 'nestnett'"):
        get_network("nestnett", 2, 1)
    with pytest.raises(ValueError, match="height"):
        NestNet(2, 1, height=0)
    with pytest.raises(TypeError, match="num_subnets"):
        NestNet(2, 1, num_subnets="2")
    with pytest.raises(ValueError, match="num_subnets=300"):
        NestNet(2, 1, num_subnets=300)
    with pytest.raises(ValueError, match="spatial_dims"):
        NestNet(0, 1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        get_network("siren", 2, 1, height=2)


def test_exports():
    for name in monai_nets.__all__:
        assert hasattr(monai_nets, name)
