"""CUDA checks (run on a GPU machine; skipped with a reason elsewhere)."""

from __future__ import annotations

import pytest
import torch

from monai_nets import NestedActivation, get_network, set_fused_backend
from monai_nets.activations import get_fused_backend

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


@pytest.mark.parametrize("backend", ["eager", "compile"])
def test_fused_matches_naive_on_cuda(backend):
    fused = NestedActivation(height=2, num_subnets=2).cuda()
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(0.2 * torch.randn_like(p))
    naive = NestedActivation(height=2, num_subnets=2, fused=False).cuda()
    naive.load_state_dict(fused.state_dict())
    z = torch.randn(4096, 256, device="cuda", requires_grad=True)
    previous = get_fused_backend()
    set_fused_backend(backend)
    try:
        yf = fused(z)
        gf = torch.autograd.grad(yf.sum(), [z, *fused.parameters()])
    finally:
        set_fused_backend(previous)
    yn = naive(z)
    gn = torch.autograd.grad(yn.sum(), [z, *naive.parameters()])
    torch.testing.assert_close(yf, yn, rtol=1e-5, atol=1e-5)
    for a, b in zip(gf, gn):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("name", ["nestnet", "siren", "wire", "mfn", "finer"])
def test_networks_train_on_cuda(name):
    torch.manual_seed(0)
    net = get_network(name, 2, 1, hidden_channels=(64, 64)).cuda()
    x = torch.rand(2048, 2, device="cuda") * 2 - 1
    y = torch.sin(4 * x[:, :1]) * torch.cos(3 * x[:, 1:])
    opt = torch.optim.Adam(net.parameters(), net.recommended_lr)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
