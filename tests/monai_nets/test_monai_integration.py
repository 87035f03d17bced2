"""MONAI integration through MONAI's own APIs: Act factory, bundle ConfigParser, state dicts."""

from __future__ import annotations

import torch
from monai.bundle import ConfigParser
from monai.networks.layers.factories import Act
from monai.networks.nets import FullyConnectedNet

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
