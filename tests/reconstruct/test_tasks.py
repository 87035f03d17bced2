"""Tests of the task recipes: they learn on small data, keep the caller's layout and values, reject bad input early."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.transform import radon

import reconstruct.tasks as tasks
from monai_nets import available_networks
from reconstruct.metrics import psnr
from reconstruct.noise import photon_noise
from reconstruct.tasks import (
    DEFAULT_STEPS,
    TASKS,
    ct_reconstruct,
    default_lr,
    denoise,
    fit_image,
    simulate_misr_frames,
    super_resolve,
    super_resolve_multi,
)

SMALL = {"hidden_channels": (32, 32)}  # for tests of plumbing, not of quality


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image.reshape(h // factor, factor, w // factor, factor, *image.shape[2:]).mean(axis=(1, 3))


# ------------------------------------------------------------------------------------------------ registry


def test_task_table_and_defaults():
    assert set(TASKS) == {"fit_image", "denoise", "super_resolve", "super_resolve_multi", "ct_reconstruct",
                          "ct_reconstruct_3d", "fit_occupancy", "solve_convection"}
    assert set(DEFAULT_STEPS) == set(TASKS)
    assert all(isinstance(v, int) and v > 0 for v in DEFAULT_STEPS.values())
    recommended = {"nestnet": 5e-3, "siren": 1e-3, "finer": 5e-4, "wire": 5e-3, "gauss": 5e-3, "mfn": 1e-2,
                   "ffn": 1e-3, "relu_pe": 1e-3}  # the networks' own; fitting uses the sweep's (test_lr_defaults)
    assert {m: default_lr(m, "denoise") for m in available_networks()} == recommended
    assert default_lr("finer", "fit_image") == pytest.approx(3 * recommended["finer"])
    assert default_lr("NestNet", "ct_reconstruct") == 5e-3
    with pytest.raises(ValueError, match="unknown task"):
        default_lr("nestnet", "deblur")
    with pytest.raises(ValueError, match="unknown network"):
        default_lr("resnet", "fit_image")


def test_task_model_defaults_scale_nestnet_frequencies_with_the_grid():
    assert tasks.task_model_defaults("denoise", "nestnet", (64, 64)) == {"num_frequencies": 8}
    assert tasks.task_model_defaults("denoise", "nestnet", (512, 512)) == {"num_frequencies": 32}
    assert tasks.task_model_defaults("super_resolve", "NestNet", (16, 20)) == {"num_frequencies": 4}
    assert tasks.task_model_defaults("super_resolve", "nestnet", (64, 64)) == {"num_frequencies": 16}
    assert tasks.task_model_defaults("denoise", "siren", (64, 64)) == {}
    assert tasks.task_model_defaults("fit_image", "nestnet", (64, 64)) == {}


# ------------------------------------------------------------------------------------------------ learning


def test_nestnet_fits_a_64px_image_past_28db(camera64, seed):
    result = fit_image(camera64, steps=60, seed=seed, device="cpu")
    assert result.output.shape == (64, 64) and result.output.dtype == np.float32
    assert result.metrics["psnr"] > 28.0, result.metrics
    assert 0.0 <= result.metrics["ssim"] <= 1.0
    # The output is in the input's range (uint8: 0..255), and the PSNR is the WIRE one on [0, 1].
    assert abs(float(result.output.mean()) - float(camera64.mean())) < 2.0
    assert psnr(result.output / 255.0, camera64 / 255.0) == pytest.approx(result.metrics["psnr"], abs=0.05)
    norm = result.extras["normalisation"]
    assert norm["method"] == "bit-depth" and norm["bits"] == 8 and norm["scale"] == 255.0  # 8-bit data: 255
    assert result.extras["parameters"]["lr"] == 5e-3 and result.extras["parameters"]["steps"] == 60


# PSNR each network must reach in 40 steps on a 16×16 crop at its default learning rate (measured
# 44.7, 43.7, 40.4, 37.9, 35.9, 33.3, 14.1, 40.3 dB from 4-9 dB at step 1; the 64² × 300-step check is
# in reconstruct.tasks' docstring).  ReLU+PE is the weak baseline it is in the literature.
MIN_PSNR_16PX_40_STEPS = {"nestnet": 39.0, "siren": 38.0, "wire": 35.0, "gauss": 32.0, "mfn": 30.0,
                          "ffn": 28.0, "relu_pe": 12.0, "finer": 35.0}


@pytest.mark.parametrize("model", available_networks())
def test_every_network_learns_with_its_default_lr(model, camera64, seed):
    result = fit_image(camera64[::4, ::4], model=model, steps=40, seed=seed, device="cpu")
    assert result.extras["parameters"]["lr"] == default_lr(model, "fit_image")
    assert result.metrics["psnr"] > MIN_PSNR_16PX_40_STEPS[model], (model, result.metrics)
    assert result.metrics["psnr"] > result.history[0]["psnr"] + 7.0


def test_fit_is_deterministic_and_seeded(camera64):
    image = camera64[:16, :16]
    a = fit_image(image, model_kwargs=SMALL, steps=5, seed=1, device="cpu")
    b = fit_image(image, model_kwargs=SMALL, steps=5, seed=1, device="cpu")
    c = fit_image(image, model_kwargs=SMALL, steps=5, seed=2, device="cpu")
    assert np.array_equal(a.output, b.output)
    assert not np.array_equal(a.output, c.output)


def test_colour_torch_input_and_caller_arrays_untouched(astronaut32):
    image = torch.from_numpy(astronaut32.copy())
    before = image.clone()
    result = fit_image(image, model_kwargs=SMALL, steps=3, device="cpu")
    assert isinstance(result.output, np.ndarray) and result.output.shape == (32, 32, 3)
    assert torch.equal(image, before)


def test_float_images_are_normalised_min_max_and_mapped_back(camera64):
    image = camera64[:16, :16].astype(np.float64) * 2.0 + 100.0  # values 110..610
    copy = image.copy()
    result = fit_image(image, model_kwargs=SMALL, steps=30, device="cpu")
    norm = result.extras["normalisation"]
    assert norm["method"] == "min-max" and norm["offset"] == image.min()
    assert norm["scale"] == pytest.approx(image.max() - image.min())
    assert 100 < float(result.output.mean()) < 620
    assert abs(float(result.output.mean()) - float(image.mean())) < 0.1 * (image.max() - image.min())
    np.testing.assert_array_equal(image, copy)


def test_preview_and_cancel_use_the_output_layout(camera64):
    image = camera64[:16, :16, None]  # (H, W, 1) stays (H, W, 1)
    previews = {}

    def on_step(info):
        previews[info.step] = info.output
        return info.step < 4

    result = fit_image(image, model_kwargs=SMALL, steps=10, preview_every=2, on_step=on_step, device="cpu")
    assert result.cancelled and result.steps == 4
    assert result.output.shape == (16, 16, 1)
    assert previews[2].shape == previews[4].shape == (16, 16, 1)
    # The last preview is the same network as the returned output: same layout, same (uint8) scale.
    np.testing.assert_allclose(previews[4], result.output, rtol=1e-5, atol=1e-3)
    assert not np.allclose(previews[2], previews[4])


def test_denoise_beats_the_noisy_input(camera64, seed):
    clean = camera64.astype(np.float32) / 255.0
    noisy = photon_noise(clean, tau=30, readout=2, seed=seed)
    result = denoise(noisy, reference=clean, steps=40, seed=seed, device="cpu")
    noisy_psnr = psnr(noisy, clean)  # 16.7 dB
    assert result.metrics["psnr"] > noisy_psnr + 3.0, (noisy_psnr, result.metrics)
    assert result.extras["parameters"]["model_kwargs"] == {"num_frequencies": 8}  # the smoother prior
    # Metrics use the reference's range (floats in [0, 1]: 1), though the noisy input overshoots [0, 1].
    assert result.extras["normalisation"]["metric_data_range"] == 1.0
    assert psnr(result.output, clean) == pytest.approx(result.metrics["psnr"], abs=0.05)


def test_super_resolve_learns_the_fine_grid(camera64, seed):
    truth = camera64.astype(np.float32) / 255.0
    low = block_mean(truth, 4)
    result = super_resolve(low, scale=4, reference=truth, steps=60, seed=seed, device="cpu")
    assert result.output.shape == (64, 64) and result.extras["bicubic"].shape == (64, 64)
    # Consistent with the measurement: pooling the output gives back the low-resolution image.
    assert psnr(block_mean(result.output, 4), low) > 28.0
    assert result.metrics["psnr"] > result.extras["bicubic_metrics"]["psnr"] - 1.0, (
        result.metrics, result.extras["bicubic_metrics"])


def test_misr_frames_and_reconstruction(camera64, seed):
    truth = camera64[:32, :32].astype(np.float32) / 255.0
    # Without motion a frame is the block average: the operator MISR inverts.
    still = simulate_misr_frames(truth, [[0.0, 0.0]], [0.0], scale=2)
    np.testing.assert_allclose(still[0], block_mean(truth, 2), atol=1e-5)
    shifts = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]  # half a low-resolution pixel
    frames = simulate_misr_frames(truth, shifts, np.zeros(4), scale=2)
    assert frames.shape == (4, 16, 16)
    result = super_resolve_multi(frames, shifts=shifts, rotations=np.zeros(4), scale=2, reference=truth,
                                 steps=150, seed=seed, device="cpu")
    assert result.output.shape == (32, 32)
    assert result.metrics["psnr"] > result.extras["bicubic_metrics"]["psnr"] + 1.5, (  # 30.6 vs 28.1 dB
        result.metrics, result.extras["bicubic_metrics"])


def _sinogram(phantom: np.ndarray, n_angles: int = 60, noise: float = 0.0, seed: int = 0):
    theta = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    sino = radon(phantom.astype(np.float64), theta=theta, circle=True)
    rng = np.random.default_rng(seed)
    return sino + noise * np.abs(sino).max() * rng.standard_normal(sino.shape), theta


def test_ct_nestnet_beats_fbp_on_60_views_and_tv_helps(phantom64, seed):
    sino, theta = _sinogram(phantom64, 60, noise=0.01, seed=seed)
    # The default recipe for a fixed 60 steps at the default TV weight (the held-out stop and the TV search
    # are tested in test_stopping.py and test_ct_recipe.py).
    result = ct_reconstruct(sino, theta, reference=phantom64, steps=60, seed=seed, device="cpu", held_out=0.0,
                            tv_search=False)
    fbp = result.extras["fbp_metrics"]  # about 27.9 dB; the recipe about 34.0
    assert result.output.shape == (64, 64) and result.extras["fbp"].shape == (64, 64)
    assert result.metrics["psnr"] > fbp["psnr"] + 5.0, (result.metrics, fbp)
    assert result.metrics["ssim"] > fbp["ssim"] + 0.02, (result.metrics, fbp)
    # Without total variation the same fit reaches about 31.5 dB: TV is worth ~2.5 dB on this phantom.
    plain = ct_reconstruct(sino, theta, reference=phantom64, steps=60, seed=seed, device="cpu", held_out=0.0,
                           tv_weight=0.0)
    assert result.metrics["psnr"] > plain.metrics["psnr"] + 1.5, (result.metrics, plain.metrics)


def test_ct_layouts_agree_and_output_size(phantom_factory):
    phantom = phantom_factory(17)
    sino, theta = _sinogram(phantom, 12)
    kwargs = {"model_kwargs": SMALL, "steps": 3, "device": "cpu"}
    a = ct_reconstruct(sino, theta, layout="skimage", **kwargs)
    b = ct_reconstruct(torch.from_numpy(sino.T.copy()), torch.from_numpy(theta), layout="torch", **kwargs)
    np.testing.assert_allclose(a.output, b.output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.extras["fbp"], b.extras["fbp"], rtol=1e-5, atol=1e-6)
    big = ct_reconstruct(sino, theta, output_size=21, **kwargs)
    assert big.output.shape == (21, 21) and big.extras["parameters"]["det_count"] == 17
    # Outside the reconstruction circle the output is zero, as iradon(circle=True).
    assert a.output[0, 0] == 0.0 and a.extras["fbp"][0, 0] == 0.0


def test_ct_total_variation_regulariser_runs_and_is_recorded(phantom_factory):
    phantom = phantom_factory(17)
    sino, theta = _sinogram(phantom, 12)
    fixed = {"model_kwargs": SMALL, "steps": 2, "device": "cpu", "held_out": 0.0, "tv_search": False}
    result = ct_reconstruct(sino, theta, tv_weight=1e-2, **fixed)
    plain = ct_reconstruct(sino, theta, tv_weight=0.0, **fixed)
    assert result.extras["parameters"]["tv_weight"] == 1e-2
    assert result.history[0]["loss"] > plain.history[0]["loss"]
    assert float(tasks.total_variation(torch.zeros(4, 4, 1))) == 0.0


# ------------------------------------------------------------------------------------------------ bad input


@pytest.fixture
def no_torch_work(monkeypatch):
    """Fail the test if a task builds a network or starts fitting: validation must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("torch work started before the input was validated")

    from reconstruct.tasks import ct, runner

    monkeypatch.setattr(runner, "fit", forbidden)
    monkeypatch.setattr(runner, "get_network", forbidden)
    monkeypatch.setattr(ct, "Radon", forbidden)


GOOD = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: fit_image(np.where(GOOD > 0.5, np.nan, GOOD)), ValueError, "NaN or Inf"),
        (lambda: fit_image(np.where(GOOD > 0.5, np.inf, GOOD)), ValueError, "NaN or Inf"),
        (lambda: fit_image(GOOD.ravel()), ValueError, "must be a 2-D"),
        (lambda: fit_image(GOOD[None, None]), ValueError, "must be a 2-D"),
        (lambda: fit_image(np.zeros((0, 8))), ValueError, "empty"),
        (lambda: fit_image(np.full((8, 8), 3.0)), ValueError,
         r"image is constant \(all values 3\.0\): nothing to fit"),
        (lambda: fit_image(np.full((8, 8), "a")), TypeError, "real numbers"),
        (lambda: fit_image(GOOD.astype(np.complex64)), TypeError, "real numbers"),
        (lambda: fit_image(GOOD, model="resnet"), ValueError, "unknown network"),
        (lambda: fit_image(GOOD, model_kwargs=[1]), TypeError, "model_kwargs"),
        (lambda: fit_image(GOOD, model_kwargs={"out_channels": 2}), ValueError, "out_channels"),
        (lambda: fit_image(GOOD, model="siren", model_kwargs={"omega": 30}), TypeError,
         "siren has no argument 'omega'; it takes"),
        (lambda: fit_image(GOOD, steps=0), ValueError, "steps"),
        (lambda: fit_image(GOOD, lr=-1.0), ValueError, "lr"),
        (lambda: fit_image(GOOD, seed=-1), ValueError, "seed"),
        (lambda: fit_image(GOOD, device="tpu"), ValueError, "device"),
        (lambda: fit_image(GOOD, reference=np.zeros((4, 4))), ValueError, "reference shape"),
        (lambda: denoise(np.full((8, 8), 7, np.uint8)), ValueError, r"constant \(all values 7\)"),
        (lambda: super_resolve(GOOD, scale=0), ValueError, r"scale must be an integer in \[1, inf\]; got 0"),
        (lambda: super_resolve(GOOD, scale=2.5), TypeError, r"scale must be an integer in \[1, inf\]; got 2.5"),
        (lambda: super_resolve(GOOD, scale=2, reference=np.zeros((8, 8))), ValueError, "reference shape"),
        (lambda: simulate_misr_frames(np.ones((10, 10)) * GOOD[0, 1], [[0, 0]], [0], scale=4), ValueError,
         "does not divide"),
        (lambda: simulate_misr_frames(GOOD, [[0, 0, 0]], [0], scale=2), ValueError, r"\(K, 2\)"),
        (lambda: super_resolve_multi(np.stack([GOOD, GOOD]), shifts=[[0, 0]], rotations=[0]), ValueError,
         "2 frames"),
        (lambda: super_resolve_multi(np.stack([GOOD, GOOD]), shifts=[[0, 0], [1, 1]], rotations=[0]),
         ValueError, "rotations give 1"),
        (lambda: super_resolve_multi(GOOD, shifts=[[0, 0]], rotations=[0]), ValueError, r"\(K, h, w\)"),
        (lambda: ct_reconstruct(np.ones((8, 5)) * GOOD[:, :5], np.arange(6.0)), ValueError,
         "5 angle columns but 6 angles"),
        (lambda: ct_reconstruct(GOOD, np.arange(8.0), layout="radon"), ValueError,
         "layout must be one of torch, skimage"),
        (lambda: ct_reconstruct(np.stack([GOOD, GOOD]), np.arange(8.0)), ValueError, "2-D"),
        (lambda: ct_reconstruct(np.zeros((8, 8)), np.arange(8.0)), ValueError,
         r"sinogram is constant \(all values 0\.0\): nothing to reconstruct"),
        (lambda: ct_reconstruct(GOOD, np.arange(8.0), filter_name="gauss"), ValueError, "filter_name"),
        (lambda: ct_reconstruct(GOOD, np.arange(8.0), tv_weight=-1), ValueError, "tv_weight"),
        (lambda: ct_reconstruct(GOOD, np.arange(8.0), reference=np.zeros((9, 9))), ValueError, "reference shape"),
    ],
)
def test_bad_input_raises_one_line_before_any_torch_work(call, error, match, no_torch_work):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_ct_refuses_a_sinogram_whose_axes_look_swapped(no_torch_work):
    from skimage.transform import radon

    n = 17
    yy, xx = np.mgrid[:n, :n] - n // 2
    disc = ((xx**2 + yy**2) < 25).astype(np.float64)
    sino = radon(disc, theta=np.linspace(0, 180, 12, endpoint=False), circle=True)  # (17 detectors, 12 angles)
    with pytest.raises(ValueError, match="layout") as info:
        ct_reconstruct(sino, np.linspace(0, 180, 17, endpoint=False), layout="torch")
    assert "\n" not in str(info.value)
