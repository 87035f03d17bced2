"""BatchedNetwork: K independent copies of a registry network in one call (vmap, batched matmuls, loop)."""

from __future__ import annotations

import copy

import pytest
import torch

from monai_nets import get_network
from monai_nets.batched import BATCHED_BACKENDS, BatchedNetwork

NAMES = ["nestnet", "siren", "wire", "gauss", "mfn", "ffn", "relu_pe", "finer"]
SMALL = {"hidden_channels": (16, 16)}
K = 3


def _copies(name: str, **kwargs) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [get_network(name, spatial_dims=2, out_channels=2, **SMALL, **kwargs) for _ in range(K)]


def _real_sum(y: torch.Tensor) -> torch.Tensor:
    return y.real.sum() if y.is_complex() else y.sum()


def _cases() -> list[tuple[str, dict, str]]:
    cases = [(name, {}, backend) for name in NAMES for backend in ("auto", "loop")]
    cases += [("nestnet", kw, "auto") for kw in ({"height": 3}, {"num_subnets": 1}, {"share_subnets": False})]
    cases += [("nestnet", {"fused": False}, "vmap")]
    return cases


@pytest.mark.parametrize(("name", "kwargs", "backend"), _cases())
def test_equals_separate_models_outputs_and_gradients(name, kwargs, backend):
    nets = _copies(name, **kwargs)
    batched = BatchedNetwork(copy.deepcopy(nets), backend=backend)
    x = torch.rand(K, 40, 2) * 2 - 1
    y = batched(x)
    assert y.shape == (K, 40, 2)
    expected = torch.stack([net(x[k]) for k, net in enumerate(nets)])
    assert torch.allclose(y, expected, atol=1e-6, rtol=0), (y - expected).abs().max()
    _real_sum(y[1] ** 2).backward()
    _real_sum(nets[1](x[1]) ** 2).backward()
    for key, param in nets[1].named_parameters():
        got = getattr(batched, key.replace(".", "__")).grad
        if param.grad is None:
            assert got is None or not got[1].any()
        else:
            assert torch.allclose(got[1], param.grad, atol=1e-5, rtol=1e-5), key


@pytest.mark.parametrize("name", NAMES)
def test_a_loss_on_one_copy_leaves_the_others_gradients_zero(name):
    batched = BatchedNetwork(_copies(name))
    _real_sum(batched(torch.rand(K, 30, 2) * 2 - 1)[0]).backward()
    grads = [p.grad for p in batched.parameters() if p.grad is not None]
    assert grads and any(g[0].abs().sum() > 0 for g in grads)
    for g in grads:
        assert not g[1:].any()


def test_auto_backends():
    assert BatchedNetwork(_copies("nestnet")).backend == "bmm"  # the fused activation does not vmap
    assert BatchedNetwork(_copies("nestnet", fused=False)).backend == "vmap"
    assert BatchedNetwork(_copies("siren")).backend == "vmap"
    assert set(BATCHED_BACKENDS) == {"auto", "vmap", "bmm", "loop"}


def test_parameters_train_with_a_normal_optimizer_and_copies_stay_independent():
    nets = _copies("nestnet")
    batched = BatchedNetwork(copy.deepcopy(nets))
    assert all(isinstance(p, torch.nn.Parameter) and p.shape[0] == K for p in batched.parameters())
    assert batched.num_real_parameters() == K * nets[0].num_real_parameters()
    x = torch.rand(K, 64, 2) * 2 - 1
    target = torch.zeros(K, 64, 2)
    target[0] = 1.0
    opt = torch.optim.Adam(batched.parameters(), lr=1e-2)
    start = ((batched(x) - target) ** 2).mean(dim=(1, 2)).detach()
    for _ in range(20):
        opt.zero_grad()
        ((batched(x[:1], copies=[0]) - target[:1]) ** 2).mean().backward()  # only copy 0 is trained
        opt.step()
    after = ((batched(x) - target) ** 2).mean(dim=(1, 2)).detach()
    assert after[0] < 0.5 * start[0]
    assert torch.equal(after[1:], start[1:])  # the untouched copies did not move
    trained = copy.deepcopy(nets[0])
    trained.load_state_dict(batched.state_dict_of(0))
    assert torch.allclose(trained(x[0]), batched(x[:1], copies=[0])[0])
    assert not torch.allclose(trained(x[0]), nets[0](x[0]))


def test_copies_selects_rows_and_state_dict_of_extracts_one():
    nets = _copies("siren")
    batched = BatchedNetwork(copy.deepcopy(nets))
    x = torch.rand(2, 10, 2) * 2 - 1
    y = batched(x, copies=torch.tensor([2, 0]))
    assert torch.allclose(y[0], nets[2](x[0]), atol=1e-6) and torch.allclose(y[1], nets[0](x[1]), atol=1e-6)
    single = get_network("siren", spatial_dims=2, out_channels=2, **SMALL)
    single.load_state_dict(batched.state_dict_of(1))
    assert torch.allclose(single(x[0]), nets[1](x[0]))
    with pytest.raises(IndexError, match="out of range"):
        batched.state_dict_of(3)


def test_from_registry_and_state_dict_round_trip():
    torch.manual_seed(1)
    batched = BatchedNetwork.from_registry("nestnet", copies=4, spatial_dims=3, out_channels=1,
                                           hidden_channels=(8, 8))
    assert batched.copies == 4 and batched.spatial_dims == 3 and batched.recommended_lr > 0
    clone = BatchedNetwork.from_registry("nestnet", copies=4, spatial_dims=3, out_channels=1, hidden_channels=(8, 8))
    clone.load_state_dict(batched.state_dict())
    x = torch.rand(4, 5, 3) * 2 - 1
    assert torch.equal(clone(x), batched(x))
    assert "copies=4" in repr(batched)


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="at least one"):
        BatchedNetwork([])
    with pytest.raises(TypeError, match="coordinate networks"):
        BatchedNetwork([torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="one class and configuration"):
        BatchedNetwork([get_network("siren", 2, 1, hidden_channels=(8,)),
                        get_network("siren", 2, 1, hidden_channels=(9,))])
    with pytest.raises(ValueError, match="backend must be"):
        BatchedNetwork(_copies("siren"), backend="gpu")
    with pytest.raises(ValueError, match="vmap rule"):
        BatchedNetwork(_copies("nestnet"), backend="vmap")
    with pytest.raises(ValueError, match="fused activation"):
        BatchedNetwork(_copies("siren"), backend="bmm")
    batched = BatchedNetwork(_copies("siren"))
    with pytest.raises(ValueError, match=r"\(copies=3, N, 2\)"):
        batched(torch.zeros(2, 5, 2))
    with pytest.raises(IndexError, match="out of range"):
        batched(torch.zeros(1, 5, 2), copies=[3])
    with pytest.raises(ValueError, match="NaN or Inf"):
        batched(torch.full((3, 5, 2), float("nan")))
