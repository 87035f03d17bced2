"""Tests of the fitting loop, the forward operators and the coordinate grid (tiny networks, tiny grids)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from monai_nets import get_network
from reconstruct.fit import FitResult, StepInfo, fit
from reconstruct.grid import axis_extents, grid_coordinates, make_grid, render, subvoxel_offsets
from reconstruct.operators import Downsample, Identity, OccupancyOperator, RadonOperator, WarpDownsample
from reconstruct.radon import Radon


def tiny_net(out_channels: int = 1, spatial_dims: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_network("nestnet", spatial_dims=spatial_dims, out_channels=out_channels, hidden_channels=(16, 16),
                       num_frequencies=4)


def smooth_image(n: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    return (0.5 + 0.4 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ grid


def test_make_grid_spans_minus_one_to_one_in_array_order():
    g = make_grid((3, 5))
    assert g.shape == (3, 5, 2)
    assert torch.allclose(g[:, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))  # channel 0 is the row
    assert torch.allclose(g[0, :, 1], torch.linspace(-1, 1, 5))


def test_anisotropic_spacing_keeps_the_aspect():
    # 11 slices 2 mm apart (20 mm) and 21 rows 0.5 mm apart (10 mm): rows span half the slices' extent.
    assert axis_extents((11, 21), spacing=(2.0, 0.5)) == pytest.approx((1.0, 0.5))
    g = make_grid((11, 21), spacing=(2.0, 0.5))
    assert float(g[..., 1].max()) == pytest.approx(0.5)


def test_grid_coordinates_match_the_dense_grid():
    shape = (4, 3, 5)
    dense = make_grid(shape).reshape(-1, 3)
    idx = torch.tensor([0, 7, 33, 59])
    assert torch.allclose(grid_coordinates(shape, idx), dense[idx])


def test_render_in_chunks_equals_one_pass():
    net = tiny_net()
    whole = render(net, (9, 7), chunk_size=10_000)
    chunked = render(net, (9, 7), chunk_size=5)
    assert whole.shape == (9, 7, 1)
    assert torch.allclose(whole, chunked, atol=1e-6)


class _Square(torch.nn.Module):
    """f(z, y, x) = y ** 2 + x: its voxel mean is the centre value plus the variance of y over the voxel."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return (c[:, 1] ** 2 + c[:, 2])[:, None]


def test_render_subsamples_average_each_voxel():
    shape, spacing = (1, 5, 9), (1.0, 2.0, 1.0)  # 4 y voxels of 2 mm, 8 x voxels of 1 mm: both span [-1, 1]
    offsets = subvoxel_offsets(shape, spacing, 2)
    assert offsets.shape == (4, 3) and torch.all(offsets[:, 0] == 0)  # one slice: no width, one z offset
    assert sorted(set(offsets[:, 1].tolist())) == pytest.approx([-0.125, 0.125])  # y voxel 0.5 wide
    assert sorted(set(offsets[:, 2].tolist())) == pytest.approx([-1 / 16, 1 / 16])  # x voxel 0.25 wide
    centre = render(_Square(), shape, spacing=spacing)
    assert torch.equal(render(_Square(), shape, spacing=spacing, subsamples=1), centre)
    for s in (2, 3):
        mean = render(_Square(), shape, spacing=spacing, subsamples=s, chunk_size=7)
        # the mean of y² over s sub-voxel centres: centre² + (width² / 12)(1 - 1/s²); x is linear, exact
        assert torch.allclose(mean - centre, torch.full_like(centre, 0.5 ** 2 / 12 * (1 - 1 / s ** 2)), atol=1e-6)
    with pytest.raises(ValueError, match="subsamples must be a positive integer"):
        render(_Square(), shape, subsamples=0)


def test_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="positive sizes"):
        make_grid((0, 4))
    with pytest.raises(ValueError, match="spacing"):
        make_grid((4, 4), spacing=(1.0, -1.0))


# ------------------------------------------------------------------------------------------------ operators


def test_downsample_is_block_average():
    f = torch.arange(4 * 6 * 2, dtype=torch.float32).reshape(4, 6, 2)
    y = Downsample((4, 6), 2, factor=2)(f)
    expected = f.reshape(2, 2, 3, 2, 2).mean(dim=(1, 3))
    assert y.shape == (2, 3, 2)
    assert torch.allclose(y, expected)


def test_downsample_factor_must_divide():
    with pytest.raises(ValueError, match="does not divide"):
        Downsample((10, 12), 1, factor=4)
    with pytest.raises(ValueError, match="positive integer"):
        Downsample((8, 8), 1, factor=0)


def test_warp_downsample_without_motion_is_downsample():
    f = torch.rand(8, 8, 1, generator=torch.Generator().manual_seed(0))
    warp = WarpDownsample((8, 8), 1, 2, shifts=[[0.0, 0.0]], rotations=[0.0])
    assert torch.allclose(warp(f)[0], Downsample((8, 8), 1, 2)(f), atol=1e-6)
    assert bool(warp.mask.all())


def test_warp_integer_shift_moves_the_image_and_masks_the_border():
    f = torch.rand(8, 8, 1, generator=torch.Generator().manual_seed(1))
    warp = WarpDownsample((8, 8), 1, 1, shifts=[[2.0, 1.0]], rotations=[0.0])  # (dy, dx) in HR pixels
    out = warp(f)[0]
    assert torch.allclose(out[:6, :7], f[2:, 1:], atol=1e-5)  # frame(p) samples f(p + shift)
    assert not bool(warp.mask[0, 7, 7, 0]) and bool(warp.mask[0, 0, 0, 0])


def test_warp_rotation_by_a_right_angle_turns_the_image():
    f = torch.rand(7, 7, 1, generator=torch.Generator().manual_seed(2))
    out = WarpDownsample((7, 7), 1, 1, shifts=[[0.0, 0.0]], rotations=[math.pi / 2])(f)[0]
    turned = torch.rot90(f, k=1, dims=(0, 1))
    assert torch.allclose(out, turned, atol=1e-5) or torch.allclose(out, torch.rot90(f, k=-1, dims=(0, 1)),
                                                                     atol=1e-5)


def test_warp_downsample_rejects_mismatched_motion():
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        WarpDownsample((8, 8), 1, 2, shifts=[[0.0, 0.0], [1.0, 1.0]], rotations=[0.0])


def test_radon_operator_divides_by_scale():
    image = torch.rand(9, 9, 1, generator=torch.Generator().manual_seed(3))
    angles = np.deg2rad(np.arange(0.0, 180.0, 30.0))
    op = RadonOperator(9, angles, scale=4.0)
    expected = Radon(9, angles)(image[..., 0]) / 4.0
    assert torch.allclose(op(image), expected)
    assert not op.pointwise


def test_occupancy_operator_uses_logits():
    op = OccupancyOperator((4, 4, 4), 1)
    logits = torch.tensor([[-20.0], [20.0]])
    assert torch.allclose(op.output_transform(logits), torch.tensor([[0.0], [1.0]]), atol=1e-6)
    assert float(op.loss(logits, torch.tensor([[0.0], [1.0]]))) < 1e-6
    assert op.metric_names == ("iou",) and op.pointwise


# ------------------------------------------------------------------------------------------------ fit


def test_fit_learns_and_records_history():
    image = smooth_image()
    result = fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=60, lr=1e-2, reference=image,
                 device="cpu")
    assert isinstance(result, FitResult)
    assert result.output.shape == image.shape and result.steps == 60 and result.stopped_by == "steps"
    assert [h["step"] for h in result.history] == list(range(1, 61))
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 10
    assert result.metrics["psnr"] > 20
    assert result.best is not None and result.best.metrics["psnr"] >= result.metrics["psnr"] - 1e-6
    seconds = [h["seconds"] for h in result.history]
    assert seconds == sorted(seconds)


def test_best_iterate_snapshot_is_the_state_its_metric_describes():
    # A high learning rate makes PSNR oscillate, so the best iterate falls on a cheap (non-evaluation)
    # step; re-rendering the saved snapshot must reproduce the PSNR that selected it.
    image = smooth_image()
    result = fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=40, lr=0.2, reference=image,
                 eval_every=100, device="cpu")
    selected = max(h["psnr"] for h in result.history)
    assert result.best is not None and result.best.step < result.steps
    assert result.best.metrics["psnr"] == pytest.approx(selected, abs=1e-3)
    assert result.best.metrics["psnr"] >= result.metrics["psnr"]


def test_the_last_evaluation_rendering_is_reused_not_redone(monkeypatch):
    # Occupancy evaluated only at its last step (the 256³ benchmark's setting): that one whole-grid
    # rendering is the best iterate's and the output's; the fit must not render twice more.
    fit_module = importlib.import_module("reconstruct.fit")  # the package re-exports the function `fit`

    rng = np.random.default_rng(0)
    occupancy = (rng.random((6, 6, 6)) > 0.5).astype(np.float32)
    calls = []

    def counting_render(*args, **kwargs):
        calls.append(1)
        return render(*args, **kwargs)

    monkeypatch.setattr(fit_module, "render", counting_render)
    net = tiny_net(spatial_dims=3)
    result = fit(net, OccupancyOperator(occupancy.shape, 1), occupancy[..., None], steps=6, lr=1e-2,
                 batch_size=64, reference=occupancy, eval_every=6, device="cpu")
    assert len(calls) == 1
    assert result.best is not None and result.best.step == result.steps
    fresh = fit_module._to_layout(render(net, occupancy.shape, transform=torch.sigmoid), 1)
    assert np.array_equal(result.output, fresh) and np.array_equal(result.best.output, fresh)
    assert result.output is not result.best.output  # two arrays: editing one leaves the other
    # A best iterate earlier than the last evaluation is rendered from its own snapshot.
    calls.clear()
    image = smooth_image()
    result = fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=40, lr=0.2, reference=image,
                 eval_every=100, device="cpu")
    assert result.best.step < result.steps and len(calls) == 2


def test_fit_is_deterministic_for_a_seed():
    image = smooth_image()
    a = fit(tiny_net(seed=0), Identity(image.shape, 1), image[..., None], steps=8, batch_size=64, seed=3,
            device="cpu")
    b = fit(tiny_net(seed=0), Identity(image.shape, 1), image[..., None], steps=8, batch_size=64, seed=3,
            device="cpu")
    c = fit(tiny_net(seed=0), Identity(image.shape, 1), image[..., None], steps=8, batch_size=64, seed=4,
            device="cpu")
    assert np.array_equal(a.output, b.output)
    assert not np.array_equal(a.output, c.output)  # a different batch order


def test_fit_cancel_returns_the_result_so_far():
    image = smooth_image()
    seen: list[StepInfo] = []

    def on_step(info: StepInfo):
        seen.append(info)
        return info.step < 3

    result = fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=50, on_step=on_step, device="cpu")
    assert result.cancelled and result.steps == 3 and len(result.history) == 3
    assert [i.step for i in seen] == [1, 2, 3] and all(i.steps == 50 for i in seen)
    assert result.output.shape == image.shape


def test_fit_previews_only_on_preview_steps():
    image = smooth_image()
    outputs = {}
    fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=6, preview_every=3, device="cpu",
        on_step=lambda info: outputs.__setitem__(info.step, info.output))
    assert [s for s, o in outputs.items() if o is not None] == [3, 6]
    assert outputs[3].shape == image.shape


def test_fit_time_budget_stops_early():
    image = smooth_image()
    result = fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=10_000, time_budget_s=0.3,
                 device="cpu")
    assert result.stopped_by == "time_budget" and result.steps < 10_000


def test_fit_regularizer_is_added_to_the_loss():
    image = smooth_image()
    plain = fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=1, device="cpu")
    reg = fit(tiny_net(), Identity(image.shape, 1), image[..., None], steps=1, device="cpu",
              regularizer=lambda f: torch.tensor(5.0))
    assert reg.history[0]["loss"] == pytest.approx(plain.history[0]["loss"] + 5.0, rel=1e-5)


def test_fit_rejects_bad_arguments():
    image = smooth_image()
    op = Identity(image.shape, 1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        fit(tiny_net(), op, np.full((16, 16, 1), np.nan, np.float32), steps=1, device="cpu")
    with pytest.raises(ValueError, match="steps"):
        fit(tiny_net(), op, image[..., None], steps=0, device="cpu")
    with pytest.raises(ValueError, match="full batch"):
        fit(tiny_net(), RadonOperator(16, [0.0, 1.0]), np.zeros((2, 16), np.float32), steps=1, batch_size=8,
            device="cpu")
    with pytest.raises(TypeError, match="nn.Module"):
        fit("nestnet", op, image[..., None], steps=1, device="cpu")


def test_fit_diverging_learning_rate_raises_floating_point_error():
    image = smooth_image()
    net = get_network("relu_pe", spatial_dims=2, out_channels=1, hidden_channels=(16, 16))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(net, Identity(image.shape, 1), image[..., None] * 1e20, steps=20, lr=1e10, device="cpu")
