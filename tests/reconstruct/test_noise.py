"""Tests for reconstruct.noise: WIRE photon/readout noise model and Gaussian noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reconstruct.noise import gaussian_noise, photon_noise


def flat_image(value: float = 0.5, size: int = 200, dtype=np.float64) -> np.ndarray:
    return np.full((size, size), value, dtype=dtype)


def test_photon_noise_is_deterministic_for_a_seed():
    image = np.random.default_rng(0).random((32, 32))
    first, again = photon_noise(image, seed=3), photon_noise(image, seed=3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, photon_noise(image, seed=4))
    # numpy and torch inputs draw the same noise for the same seed.
    from_torch = photon_noise(torch.from_numpy(image), seed=3)
    assert isinstance(from_torch, torch.Tensor)
    np.testing.assert_allclose(from_torch.numpy(), first)


def test_photon_noise_preserves_mean_and_follows_the_model():
    value, tau, readout = 0.5, 30.0, 2.0
    noisy = photon_noise(flat_image(value), tau=tau, readout=readout, seed=0)
    # Model: variance = x / tau + (readout / tau)^2 (Poisson counts plus Gaussian readout, over tau).
    expected_std = np.sqrt(value / tau + (readout / tau) ** 2)
    assert abs(noisy.mean() - value) < 4 * expected_std / np.sqrt(noisy.size)
    assert noisy.std() == pytest.approx(expected_std, rel=0.03)
    # Without readout noise the values are photon counts over tau.
    counts = photon_noise(flat_image(value, 20), tau=tau, readout=0.0, seed=0) * tau
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


def test_more_integration_time_means_less_noise():
    image = flat_image(0.5)
    levels = [np.std(photon_noise(image, tau=tau, seed=1) - image) for tau in (3.0, 30.0, 300.0)]
    assert levels[0] > levels[1] > levels[2]
    # tau = inf switches photon noise off: only the readout noise is left, unscaled (as in WIRE).
    readout_only = photon_noise(image, tau=float("inf"), readout=0.1, seed=1) - image
    assert readout_only.std() == pytest.approx(0.1, rel=0.03)


def test_negative_values_keep_their_sign():
    noisy = photon_noise(flat_image(-0.5), tau=100.0, readout=0.0, seed=2)
    assert noisy.max() <= 0.0
    assert noisy.mean() == pytest.approx(-0.5, abs=0.01)


def test_photon_noise_keeps_type_dtype_and_input():
    image32 = flat_image(0.3, 16, np.float32)
    before = image32.copy()
    out = photon_noise(image32)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == image32.shape
    np.testing.assert_array_equal(image32, before)
    tensor = torch.full((4, 16, 16), 0.3)
    out_t = photon_noise(tensor)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32 and out_t.shape == tensor.shape
    assert torch.all(tensor == 0.3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"tau": 0.0}, ValueError, "tau must be > 0"),
        ({"tau": -5.0}, ValueError, "tau must be > 0"),
        ({"tau": float("nan")}, ValueError, "tau must be > 0"),
        ({"tau": "30"}, ValueError, "tau must be a number"),
        ({"readout": -1.0}, ValueError, "readout must be a finite number >= 0"),
        ({"readout": float("inf")}, ValueError, "readout must be a finite number >= 0"),
        ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
    ],
)
def test_photon_noise_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        photon_noise(flat_image(0.5, 4), **kwargs)
    assert "\n" not in str(info.value)


def test_image_errors():
    with pytest.raises(ValueError, match="1 non-finite"):
        photon_noise(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_noise(torch.tensor([float("inf")]), 0.1)
    with pytest.raises(TypeError, match="floating-point image.*uint8.*img_as_float"):
        photon_noise(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="floating-point image"):
        gaussian_noise(torch.zeros(4, dtype=torch.int32), 0.1)
    with pytest.raises(TypeError, match="numpy array or torch tensor; got list"):
        photon_noise([0.1, 0.2])


def test_gaussian_noise():
    image = flat_image(0.2)
    noisy = gaussian_noise(image, sigma=0.05, seed=5)
    np.testing.assert_array_equal(noisy, gaussian_noise(image, sigma=0.05, seed=5))
    assert not np.array_equal(noisy, gaussian_noise(image, sigma=0.05, seed=6))
    assert (noisy - image).std() == pytest.approx(0.05, rel=0.03)
    assert abs((noisy - image).mean()) < 4 * 0.05 / np.sqrt(image.size)
    np.testing.assert_array_equal(gaussian_noise(image, sigma=0.0), image)
    out_t = gaussian_noise(torch.zeros(3, 3, dtype=torch.float64), 0.1, seed=5)
    assert out_t.dtype == torch.float64
    for sigma, message in (
        (-0.1, "sigma must be a finite number >= 0"),
        (float("nan"), "sigma must be a finite"),
    ):
        with pytest.raises(ValueError, match=message):
            gaussian_noise(image, sigma)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_noise_stays_on_cuda():
    image = torch.full((8, 8), 0.5, device="cuda")
    out = photon_noise(image, seed=0)
    assert out.is_cuda and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), photon_noise(image.cpu(), seed=0))
    assert gaussian_noise(image, 0.1).is_cuda
