"""MONAI integration through MONAI's own APIs: Act factory (MLPs and conv nets), bundle ConfigParser, state dicts."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.layers.factories import Act
from monai.networks.nets import BasicUNet, FullyConnectedNet, UNet

import monai_nets
from monai_nets import NestedActivation, NestNet


def test_act_factory_knows_nestnet():
    assert monai_nets.MONAI_ACT_NAME.upper() in Act.names
    assert Act[monai_nets.MONAI_ACT_NAME] is NestedActivation


def test_fully_connected_net_with_nested_activation_trains():
    torch.manual_seed(0)
    net = FullyConnectedNet(2, 1, [32, 32], act=("nestnet", {"num_subnets": 2, "height": 2}))
    acts = [m for m in net.modules() if isinstance(m, NestedActivation)]
    assert len(acts) == 2
    x = torch.rand(128, 2) * 2 - 1
    y = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    # The subnetworks themselves learned.
    assert not torch.equal(acts[0].w1.detach(), torch.ones(2, 3))


def test_bundle_config_instantiates_nestnet_and_runs():
    config = {
        "network_def": {
            "_target_": "monai_nets.NestNet",
            "spatial_dims": 3,
            "out_channels": 1,
            "hidden_channels": [16, 16],
            "height": 3,
            "num_subnets": 2,
        },
        "coords": "$torch.rand(10, 3) * 2 - 1",
        "output": "$@network_def(@coords)",
    }
    parser = ConfigParser(config, globals={"torch": "torch"})
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, NestNet) and net.height == 3
    out = parser.get_parsed_content("output")
    assert out.shape == (10, 1)


def test_state_dict_round_trip_through_file(tmp_path):
    torch.manual_seed(0)
    net = NestNet(2, 3, hidden_channels=(16, 16), height=3, num_subnets=2)
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    other = NestNet(2, 3, hidden_channels=(16, 16), height=3, num_subnets=2)
    other.load_state_dict(torch.load(path, weights_only=True))
    x = torch.rand(5, 2)
    assert torch.equal(net(x), other(x))


def _mark_second_subnet(net: torch.nn.Module, value: float = 7.0) -> list[NestedActivation]:
    """Make subnetwork 1 of every nested activation the constant ``value`` (w₂ = 0, b₂ = value)."""
    acts = [m for m in net.modules() if isinstance(m, NestedActivation)]
    with torch.no_grad():
        for act in acts:
            act.w2[1].zero_()
            act.b2[1] = value
    return acts


def _check_assignment(acts: list[NestedActivation], channel_axis: int, value: float = 7.0) -> list[tuple]:
    """Hooks asserting that channel c of C uses subnetwork c * 2 // C along ``channel_axis``."""
    seen: list[tuple] = []

    def hook(module, inputs, output):
        z = inputs[0]
        axis = channel_axis % z.ndim
        channels = z.shape[axis]
        second = (torch.arange(channels) * 2 // channels == 1).reshape([-1] + [1] * (z.ndim - axis - 1))
        first = torch.relu(z - 0.2) + torch.relu(z - 0.1) - torch.relu(z)  # subnetwork 0: initial values
        torch.testing.assert_close(output, torch.where(second, torch.full_like(z, value), first))
        seen.append(tuple(z.shape))

    for act in acts:
        act.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_basic_unet_assigns_subnetworks_along_the_channel_axis(spatial_dims):
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=spatial_dims, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4),
                    act=("nestnet", {"num_subnets": 2}))
    seen = _check_assignment(_mark_second_subnet(net), channel_axis=1)
    size = 32  # four poolings leave 2 voxels per axis for the instance norm
    out = net(torch.rand(1 if spatial_dims == 3 else 2, 1, *(size,) * spatial_dims))
    assert out.shape[1:] == (2, *(size,) * spatial_dims)
    assert len(seen) == 18 and all(len(shape) == spatial_dims + 2 for shape in seen)  # NCHW / NCDHW
    assert {shape[1] for shape in seen} == {4, 8, 16}


def test_unet_assigns_subnetworks_along_the_channel_axis():
    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=1,
               act=("nestnet", {"num_subnets": 2}))
    seen = _check_assignment(_mark_second_subnet(net), channel_axis=1)
    assert net(torch.rand(1, 1, 8, 8, 8)).shape == (1, 2, 8, 8, 8)
    assert seen and all(len(shape) == 5 for shape in seen)


def test_fully_connected_net_assigns_subnetworks_along_the_feature_axis():
    torch.manual_seed(0)
    net = FullyConnectedNet(3, 2, [8, 6], act=("nestnet", {"num_subnets": 2}))
    seen = _check_assignment(_mark_second_subnet(net), channel_axis=-1)
    assert net(torch.rand(5, 3)).shape == (5, 2)
    assert seen == [(5, 8), (5, 6)]


def test_the_channel_rule_and_its_overrides():
    act = NestedActivation(num_subnets=2)  # MONAI's layout
    assert act.channel_axis(torch.zeros(2, 4, 3, 3)) == 1 and act.channel_axis(torch.zeros(2, 4, 3)) == 1
    assert act.channel_axis(torch.zeros(5, 6)) == 1 and act.channel_axis(torch.zeros(6)) == 0
    last = NestedActivation(num_subnets=2, channel_dim=-1)  # features last, any leading axes
    assert last.channel_axis(torch.zeros(2, 3, 6)) == 2
    with torch.no_grad():
        last.b2[1] = 1.0
    out = last(torch.zeros(2, 3, 6))
    assert torch.equal(out[..., 3:], torch.ones(2, 3, 3)) and torch.equal(out[..., :3], torch.zeros(2, 3, 3))
    # the coordinate networks use the last axis whatever the leading axes
    assert all(a.channel_dim == -1 for a in NestNet(2, 1, hidden_channels=(8, 8)).activations)
    with pytest.raises(TypeError, match="channel_dim"):
        NestedActivation(channel_dim=1.0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # MONAI's own size checks in BasicUNet
def test_conv_net_with_nested_activation_traces():
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4),
                    act=("nestnet", {"num_subnets": 2})).eval()
    x = torch.rand(1, 1, 32, 32)
    traced = torch.jit.trace(net, x, check_trace=True)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x), atol=1e-6, rtol=0)
