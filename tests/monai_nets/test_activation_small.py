"""``auto``'s compile rule for the fused activation at small point counts (issue 12), and the compiled
path at such sizes: same values and gradients as eager, one graph per pass for every point count."""

from __future__ import annotations

import pytest
import torch

from monai_nets import activations, get_network
from monai_nets.activations import _auto_compiles, get_fused_backend, set_fused_backend

WIDTH = 256  # the library default NestNet: 2 x 256, r = 2


@pytest.fixture
def backend():
    previous = get_fused_backend()
    yield set_fused_backend
    set_fused_backend(previous)


@pytest.fixture
def fresh_compile_state(monkeypatch):
    """No graph compiled yet in this process, as far as ``auto`` knows (restored afterwards)."""
    monkeypatch.setattr(activations, "_compiled_kinds", set())
    monkeypatch.setattr(activations, "_compile_failed", False)


def test_rule_compiles_from_the_threshold():
    threshold = activations._AUTO_COMPILE_MIN_NUMEL
    assert _auto_compiles(threshold)
    assert not _auto_compiles(threshold - 1)
    # In points of a 2 x 256 layer: a 96² CT slice (9,216) compiles, a 64² one (4,096) runs eagerly.
    assert _auto_compiles(9216 * WIDTH) and _auto_compiles(16384 * WIDTH) and _auto_compiles(65536 * WIDTH)
    assert not _auto_compiles(4096 * WIDTH) and not _auto_compiles(1024 * WIDTH)
    assert threshold == 8192 * WIDTH


def test_rule_reuses_an_existing_graph_down_to_the_reuse_floor():
    floor = activations._AUTO_REUSE_MIN_NUMEL
    assert floor < activations._AUTO_COMPILE_MIN_NUMEL
    assert _auto_compiles(floor, compiled_already=True)
    assert _auto_compiles(4096 * WIDTH, compiled_already=True)
    assert not _auto_compiles(floor - 1, compiled_already=True)
    assert not _auto_compiles(WIDTH, compiled_already=True)  # one point (a size-1 axis would specialise)


def test_auto_decides_on_the_whole_layer_not_the_channel_block(backend, fresh_compile_state, monkeypatch):
    """r = 2 on an even width is one call over the layer (both blocks at once); on an odd width the
    blocks are separate calls, and the rule still sees the layer's points x width."""
    seen = []

    def kernels(kind, numel, z):
        seen.append((kind, numel, z.numel()))
        return activations._rho_forward, activations._rho_backward

    monkeypatch.setattr(activations, "_kernels", kernels)
    backend("auto")
    net = get_network("nestnet", spatial_dims=2, out_channels=1)
    net(torch.rand(300, 2) * 2 - 1).sum().backward()
    assert {numel for _, numel, _ in seen} == {300 * WIDTH}
    assert {block for _, _, block in seen} == {300 * WIDTH}
    assert len(seen) == 2 * 2 and {kind for kind, _, _ in seen} == {0, 1}  # 2 layers x (forward, backward)
    seen.clear()
    odd = get_network("nestnet", spatial_dims=2, out_channels=1, hidden_channels=(33, 33))
    odd(torch.rand(300, 2) * 2 - 1).sum().backward()
    assert {numel for _, numel, _ in seen} == {300 * 33}
    assert {block for _, _, block in seen} == {300 * 17, 300 * 16}  # blocks of 17 and 16 channels


def test_auto_picks_eager_below_and_compile_at_the_threshold(backend, fresh_compile_state, monkeypatch):
    """``_kernels``' choice (torch.compile itself is stubbed: no compiling here)."""
    monkeypatch.setattr(activations, "_compiled", {"fwd": "compiled-fwd", "bwd": "compiled-bwd"})
    z = torch.empty(0)
    backend("auto")
    assert activations._kernels(0, 4096 * WIDTH, z)[0] is activations._rho_forward
    assert activations._kernels(0, 9216 * WIDTH, z) == ("compiled-fwd", "compiled-bwd")
    # Once the forward ran compiled for 2-D float32 CPU inputs, smaller renders reuse that graph ...
    activations._compiled_kinds.add(activations._kind_key(0, torch.empty(2, 2)))
    assert activations._kernels(0, 4096 * WIDTH, torch.empty(2, 2))[0] == "compiled-fwd"
    # ... but not another pass, dtype or rank (each would compile a new graph).
    assert activations._kernels(1, 4096 * WIDTH, torch.empty(2, 2))[1] is activations._rho_backward
    assert activations._kernels(0, 4096 * WIDTH, torch.empty(2, 2, dtype=torch.float64))[0] is activations._rho_forward
    assert activations._kernels(0, 4096 * WIDTH, torch.empty(2, 2, 2))[0] is activations._rho_forward
    backend("eager")
    assert activations._kernels(0, 65536 * WIDTH, z)[0] is activations._rho_forward
    backend("compile")
    assert activations._kernels(0, 1, z)[0] == "compiled-fwd"
    backend("auto")
    monkeypatch.setattr(activations, "_compile_failed", True)  # the safe fallback: never again
    assert activations._kernels(0, 65536 * WIDTH, z)[0] is activations._rho_forward


def _compile_works() -> str | None:
    try:
        import torch._inductor  # noqa: F401

        torch.compile(lambda t: t * 2 + 1, dynamic=True, fullgraph=True)(torch.ones(3))
    except Exception as exc:  # no C++ compiler, unsupported platform
        return f"torch.compile unavailable here: {type(exc).__name__}: {exc}"
    return None


def test_compiled_net_matches_eager_at_small_n_with_one_graph_per_pass(backend):
    reason = _compile_works()
    if reason:
        pytest.skip(reason)
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    net = get_network("nestnet", spatial_dims=2, out_channels=1)
    with torch.no_grad():  # away from the prescribed init, so every kink and parameter matters
        for act in net.activations:
            for p in act.parameters():
                p.add_(0.2 * torch.randn_like(p))
    x = torch.rand(96, 2) * 2 - 1

    def value_and_grads(name):
        backend(name)
        net.zero_grad(set_to_none=True)
        y = net(x)
        y.square().mean().backward()
        return y.detach(), [p.grad.clone() for p in net.parameters()]

    y_eager, g_eager = value_and_grads("eager")
    y_comp, g_comp = value_and_grads("compile")
    torch.testing.assert_close(y_comp, y_eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

    # Other point counts, train steps and no_grad renders alike: no new graph.
    graphs = counters["stats"]["unique_graphs"]
    for n in (40, 130, 97):
        net(torch.rand(n, 2) * 2 - 1).sum().backward()
        with torch.no_grad():
            net(torch.rand(n + 3, 2) * 2 - 1)
    assert counters["stats"]["unique_graphs"] == graphs
