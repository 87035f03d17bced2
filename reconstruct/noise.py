"""Simulated measurement noise for the benchmarks (denoising, CT, super-resolution).

:func:`photon_noise` is the sensor model of the WIRE benchmark harness (``measure(x, noise_snr, tau)``
in vishwa91/wire): photon (shot) noise at integration time ``tau`` plus Gaussian readout noise of
``readout`` electrons, rescaled back to the image's scale::

    noisy = (sign(x) * Poisson(tau * |x|) + readout * N(0, 1)) / tau

Pixels <= 0 get ``-Poisson(-tau x)`` as in WIRE, so the model is odd-symmetric and negative values
(e.g. a zero-mean residual) keep their sign. With ``tau = inf`` there is no photon noise and the
readout noise is added unscaled (``x + readout * N(0, 1)``), again as in WIRE. The mean is
preserved; the per-pixel variance is ``|x| / tau + (readout / tau)^2``, so a larger ``tau`` means
less noise. The WIRE denoising experiment uses ``tau = 30, readout = 2`` (the defaults here).

Both functions take a numpy array or a torch tensor and return the same kind (same dtype, same
device); random numbers come from ``numpy.random.default_rng(seed)``, so a seed gives the same noise
for numpy and torch inputs, on any device. The input is never modified.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["gaussian_noise", "photon_noise"]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _to_numpy(image: Any, func: str) -> np.ndarray:
    """Float64 numpy copy of a floating numpy/torch image, with one-line errors for bad input."""
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise TypeError(
                f"{func} expects a floating-point image in [0, 1]; got {image.dtype} (use .float() / 255)"
            )
        values = image.detach().cpu().to(torch.float64).numpy()
    elif isinstance(image, np.ndarray):
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(
                f"{func} expects a floating-point image in [0, 1]; got {image.dtype} "
                "(convert with skimage.img_as_float)"
            )
        values = image.astype(np.float64, copy=True)
    else:
        raise TypeError(f"{func} expects a numpy array or torch tensor; got {type(image).__name__}")
    n_bad = int((~np.isfinite(values)).sum())
    if n_bad:
        raise ValueError(f"{func}: image contains {n_bad} non-finite values (NaN/inf); clean it first")
    return values


def _like(values: np.ndarray, image: ArrayT) -> ArrayT:
    """``values`` converted back to the type, dtype and device of ``image``."""
    if isinstance(image, torch.Tensor):
        return torch.from_numpy(values).to(device=image.device, dtype=image.dtype)
    return values.astype(image.dtype, copy=False)


def _check_seed(seed: Any, func: str) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"{func}: seed must be a non-negative integer or None; got {seed!r}")


def _check_number(value: Any, name: str, func: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{func}: {name} must be a number; got {value!r}")
    return float(value)


def photon_noise(image: ArrayT, tau: float = 30.0, readout: float = 2.0, seed: int | None = 0) -> ArrayT:
    """Photon (Poisson) plus readout (Gaussian) noise, the WIRE benchmark sensor model.

    Args:
        image: image with intensities nominally in [0, 1] (numpy array or torch tensor, floating point).
        tau: integration time (photons per unit intensity), > 0; ``inf`` disables the photon noise.
        readout: standard deviation of the readout noise in photo-electrons, >= 0 and finite.
        seed: seed of the random generator (same seed, same noise); ``None`` draws a fresh seed.

    Returns:
        Noisy image in the same intensity scale, same type/dtype/device as ``image``.

    Raises:
        TypeError: non-floating or non-array input.
        ValueError: non-finite image values, ``tau`` <= 0 or NaN, negative/non-finite ``readout``,
            or a bad seed.
    """
    tau = _check_number(tau, "tau", "photon_noise")
    readout = _check_number(readout, "readout", "photon_noise")
    if not tau > 0:  # also rejects NaN
        raise ValueError(
            f"photon_noise: tau must be > 0 (integration time; inf = no photon noise); got {tau}"
        )
    if not (math.isfinite(readout) and readout >= 0):
        raise ValueError(f"photon_noise: readout must be a finite number >= 0 (electrons); got {readout}")
    _check_seed(seed, "photon_noise")
    values = _to_numpy(image, "photon_noise")
    rng = np.random.default_rng(seed)
    if math.isinf(tau):
        noisy = values + readout * rng.standard_normal(values.shape)
    else:
        counts = rng.poisson(np.abs(values) * tau).astype(np.float64)
        noisy = (np.copysign(counts, values) + readout * rng.standard_normal(values.shape)) / tau
    return _like(noisy, image)


def gaussian_noise(image: ArrayT, sigma: float, seed: int | None = 0) -> ArrayT:
    """Additive white Gaussian noise ``image + sigma * N(0, 1)``.

    Args:
        image: floating-point numpy array or torch tensor.
        sigma: noise standard deviation in the image's intensity units, finite and >= 0.
        seed: seed of the random generator (same seed, same noise); ``None`` draws a fresh seed.

    Returns:
        Noisy image, same type/dtype/device as ``image``.

    Raises:
        TypeError: non-floating or non-array input.
        ValueError: non-finite image values, negative/non-finite ``sigma``, or a bad seed.
    """
    sigma = _check_number(sigma, "sigma", "gaussian_noise")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"gaussian_noise: sigma must be a finite number >= 0; got {sigma}")
    _check_seed(seed, "gaussian_noise")
    values = _to_numpy(image, "gaussian_noise")
    rng = np.random.default_rng(seed)
    return _like(values + sigma * rng.standard_normal(values.shape), image)
