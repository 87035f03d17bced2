"""Every registry network traces, exports and converts the way MONAI's own tests and bundles do it.

The patterns are MONAI's: ``convert_to_torchscript(..., use_trace=True)`` saved, reloaded and
verified (``test_script_save`` with a trace, as ``ckpt_export --use_trace`` does), ``torch.export``
with a dynamic batch, ``convert_to_onnx`` verified with ONNX's reference evaluator, ``eval_mode`` and
``copy_model_state``.  Outputs must round-trip to 1e-6 (ONNX: 1e-5, its kernels are numpy's).
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from monai.networks.utils import convert_to_torchscript, copy_model_state, eval_mode

import monai_nets
from monai_nets import ChannelFirst, NestedActivation, NestNet, Wire, available_networks, get_network

NAMES = available_networks()
SMALL = {"hidden_channels": (16, 16)}
ATOL = 1e-6


def _net(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_network(name, spatial_dims=2, out_channels=3, **{**SMALL, **kwargs}).eval()


def _coords(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _traced(net: torch.nn.Module, x: torch.Tensor, other: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # a trace that warns may be wrong elsewhere
        traced = torch.jit.trace(net, x, check_trace=True, check_inputs=[(other,)])
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@pytest.mark.parametrize("name", NAMES)
def test_trace_saves_reloads_and_matches_for_other_batch_sizes(name, tmp_path):
    net = _net(name)
    x, other = _coords(7), _coords(33, seed=2)
    loaded = _traced(net, x, other)
    with torch.no_grad():
        for inp in (other, _coords(1, seed=3)):  # a trace fixes the rank (here (N, 2)), not the sizes
            torch.testing.assert_close(loaded(inp), net(inp), atol=ATOL, rtol=0)
    # MONAI's converter (what `python -m monai.bundle ckpt_export --use_trace` runs), verified after reload
    convert_to_torchscript(net, tmp_path / "model.ts", verify=True, inputs=[x], device="cpu", use_trace=True,
                           rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_with_dynamic_batch_round_trips(name, tmp_path):
    net = _net(name)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(net, (_coords(8),), dynamic_shapes=({0: batch},))
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    module = torch.export.load(path).module()
    with torch.no_grad():
        for n in (1, 8, 57):
            x = _coords(n, seed=n)
            torch.testing.assert_close(module(x), net(x), atol=ATOL, rtol=0)
    # no data-dependent check (the eager NaN scan) was recorded: nothing reads a tensor's value
    data_dependent = {"aten.isfinite.default", "aten.item.default", "aten._local_scalar_dense.default",
                      "aten._assert_async.default", "aten._assert_async.msg"}
    assert not data_dependent & {str(node.target) for node in program.graph.nodes}


@pytest.mark.parametrize("name", NAMES)
def test_compiles_without_graph_breaks(name):
    net = _net(name)
    compiled = torch.compile(net, backend="eager", fullgraph=True, dynamic=True)  # dynamo capture, no codegen
    x = _coords(11)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=ATOL, rtol=0)


def _onnx_round_trip(net: torch.nn.Module, path, dynamo: bool) -> None:
    pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' package (dev extra)")
    import onnx
    from onnx.reference import ReferenceEvaluator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:  # torch.export-based, torch.onnx's default since 2.9 (what MONAI's convert_to_onnx runs)
            pytest.importorskip("onnxscript", reason="torch.onnx's exporter needs 'onnxscript' (dev extra)")
            torch.onnx.export(net, (_coords(8),), str(path), input_names=["coords"], output_names=["values"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True,
                              optimize=False, verbose=False)
        else:  # the TorchScript-based exporter (a trace)
            torch.onnx.export(net, (_coords(8),), str(path), input_names=["coords"], output_names=["values"],
                              dynamic_axes={"coords": {0: "batch"}, "values": {0: "batch"}}, dynamo=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    session = ReferenceEvaluator(model)
    for n in (3, 20):
        x = _coords(n, seed=n)
        [values] = session.run(None, {"coords": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(values), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_matches_the_reference_evaluator(name, tmp_path):
    _onnx_round_trip(_net(name), tmp_path / "model.onnx", dynamo=False)


def test_onnx_export_through_torch_export(tmp_path):
    _onnx_round_trip(_net("nestnet", height=3), tmp_path / "model.onnx", dynamo=True)


@pytest.mark.parametrize("kwargs", [{"height": 2, "num_subnets": 1}, {"height": 3, "num_subnets": 2},
                                    {"height": 2, "num_subnets": 3, "share_subnets": False}])
def test_nestnet_traceable_path_equals_the_fused_function(kwargs):
    """Under tracing/export the activation runs plain ops instead of the custom autograd function:
    same values and the same gradients (input and parameters) as the fused eager path."""
    torch.manual_seed(0)
    net = NestNet(2, 2, hidden_channels=(10, 9), **kwargs).double()
    with torch.no_grad():  # move the subnetworks off their (shared) initial values
        for act in net.activations:
            for p in act.parameters():
                p.add_(0.2 * torch.randn_like(p))
    x = _coords(13).double()
    traced = torch.jit.trace(net, x, check_trace=True)
    xe, xt = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ye, yt = net(xe), traced(xt)
    torch.testing.assert_close(yt, ye, atol=1e-12, rtol=0)
    ge = torch.autograd.grad((ye**2).sum(), [xe, *net.parameters()])
    gt = torch.autograd.grad((yt**2).sum(), [xt, *net.parameters()])
    for a, b in zip(ge, gt):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_float64_networks_compute_in_float64(name):
    net = _net(name).double()
    x = _coords(6).double()
    y = net(x)
    assert y.dtype == torch.float64
    ref = _net(name)(x.float())
    torch.testing.assert_close(y.float(), ref, atol=1e-4, rtol=1e-4)  # the float32 network, to float32 accuracy


def test_wire_real_arithmetic_equals_complex_reference():
    torch.manual_seed(0)
    net = Wire(2, 2, hidden_channels=(12, 12, 12)).double()
    x = _coords(9).double()

    def complex_reference(x):
        h = net.first(x).to(torch.complex128)
        h = torch.exp(1j * net.omega_0 * h - (net.sigma_0 * h.abs()) ** 2)
        for layer in [*net.hidden, net.last]:
            w = torch.complex(layer.weight_real, layer.weight_imag)
            b = torch.complex(layer.bias_real, layer.bias_imag)
            h = h @ w.T + b
            if layer is not net.last:
                h = torch.exp(1j * net.omega_0 * h - (net.sigma_0 * h.abs()) ** 2)
        return h.real

    torch.testing.assert_close(net(x), complex_reference(x), atol=1e-12, rtol=1e-12)


def test_wire_loads_a_checkpoint_of_complex_linear_layers():
    net = Wire(2, 1, hidden_channels=(8, 8))
    state = net.state_dict()
    old = {}
    for key, value in state.items():  # the layout of the complex nn.Linear version
        if key.endswith("_real"):
            old[key[: -len("_real")]] = torch.complex(value, state[key[: -len("_real")] + "_imag"])
        elif not key.endswith("_imag"):
            old[key] = value
    fresh = Wire(2, 1, hidden_channels=(8, 8))
    fresh.load_state_dict(old)
    x = _coords(4)
    assert torch.equal(fresh(x), net(x))


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_and_copy_model_state(name):
    src, dst = _net(name), get_network(name, spatial_dims=2, out_channels=3, **SMALL)
    _, updated, unchanged = copy_model_state(dst, src)
    assert not unchanged and len(updated) == len(src.state_dict())
    x = _coords(10)
    with eval_mode(src, dst):
        assert not src.training and not dst.training
        assert torch.equal(src(x), dst(x))
    # into a channel-first wrapper, by prefix (a bundle's network_def)
    wrapped = ChannelFirst(get_network(name, spatial_dims=2, out_channels=3, **SMALL))
    _, updated, _ = copy_model_state(wrapped, src, dst_prefix="network.")
    assert len(updated) == len(src.state_dict())
    grid = x.T.reshape(1, 2, 2, 5)
    with eval_mode(wrapped):
        torch.testing.assert_close(wrapped(grid), src(x).T.reshape(1, 3, 2, 5))


def test_channel_first_wrapper_traces_and_exports():
    net = ChannelFirst(_net("nestnet"))
    grid = torch.rand(2, 2, 4, 5) * 2 - 1
    loaded = _traced(net, grid, torch.rand(1, 2, 3, 3))
    torch.testing.assert_close(loaded(grid), net(grid), atol=ATOL, rtol=0)
    program = torch.export.export(net, (grid,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    other = torch.rand(3, 2, 4, 5)
    torch.testing.assert_close(program.module()(other), net(other), atol=ATOL, rtol=0)
    with pytest.raises(TypeError, match="coordinate network"):
        ChannelFirst(torch.nn.Linear(2, 1))


def test_eager_calls_still_validate():
    net = _net("nestnet")
    with pytest.raises(ValueError, match="NaN or Inf"):
        net(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        net(torch.zeros(4, 3))
    assert not monai_nets.activations.capturing_graph()
    with pytest.raises(ValueError, match="num_subnets=4"):
        NestedActivation(num_subnets=4)(torch.zeros(2, 3))
