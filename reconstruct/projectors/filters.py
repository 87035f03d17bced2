"""FBP filters: the band-limited ramp (Kak & Slaney ch. 3, eq. 61) and scikit-image's windows.

:func:`fourier_filter` is scikit-image's ``iradon`` response (it is *twice* the ramp |omega|, which
iradon compensates with ``pi / (2 * n_angles)``). :func:`ramp_filter` applies the true ramp in physical
units along the last axis, optionally the equiangular (arc detector) kernel ``(g / sin g)^2 h(g)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["FILTER_NAMES", "FILTER_ALIASES", "fourier_filter", "padded_size", "ramp_filter", "check_filter_name"]

#: Filters (scikit-image's iradon names); ``None`` means no filtering.
FILTER_NAMES: tuple[str, ...] = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
#: Other names accepted for the same filters (torch-radon's ``ram-lak``).
FILTER_ALIASES = {"ram-lak": "ramp", "ramlak": "ramp", "shepp_logan": "shepp-logan", "hanning": "hann"}


def check_filter_name(filter_name: str | None) -> str | None:
    """The canonical filter name, or a one-line ValueError."""
    if filter_name is None:
        return None
    if not isinstance(filter_name, str):
        raise ValueError(f"unknown filter_name {filter_name!r}; choose one of {', '.join(FILTER_NAMES)} or None")
    name = FILTER_ALIASES.get(filter_name.lower(), filter_name.lower())
    if name not in FILTER_NAMES:
        raise ValueError(f"unknown filter_name {filter_name!r}; choose one of {', '.join(FILTER_NAMES)} "
                         f"(or ram-lak) or None")
    return name


def padded_size(n: int) -> int:
    """FFT length: the next power of two of ``2 n`` (at least 64), as iradon and torch-radon."""
    return max(64, 1 << int(math.ceil(math.log2(2 * n))))


@lru_cache(maxsize=64)
def fourier_filter(size: int, filter_name: str, arc_step: float = 0.0) -> np.ndarray:
    """Real rfft-layout response (length ``size // 2 + 1``) of the named filter, iradon's scale (2 |omega|).

    ``arc_step`` > 0 (radians per sample) builds the equiangular kernel ``(g / sin g)^2 h(g)``.
    """
    lag = np.arange(size)
    lag = np.minimum(lag, size - lag)
    kernel = np.zeros(size)
    kernel[0] = 0.25
    odd = lag % 2 == 1
    kernel[odd] = -1.0 / (np.pi * lag[odd]) ** 2
    if arc_step > 0:
        g = lag[odd] * arc_step
        sin = np.sin(g)
        safe = np.abs(sin) > 1e-6  # lags past the detector never reach the kept outputs
        kernel[odd] *= np.where(safe, (g / np.where(safe, sin, 1.0)) ** 2, 1.0)
    response = 2.0 * np.real(np.fft.fft(kernel))
    freq = np.fft.fftfreq(size)
    if filter_name == "shepp-logan":
        omega = np.pi * freq[1:]
        response[1:] *= np.sin(omega) / omega
    elif filter_name == "cosine":
        response *= np.abs(np.cos(np.pi * freq))
    elif filter_name == "hamming":
        response *= np.fft.fftshift(np.hamming(size))
    elif filter_name == "hann":
        response *= np.fft.fftshift(np.hanning(size))
    # numpy's shifted windows are one sample off between +f and -f; iradon keeps the real part of
    # the inverse FFT, the same as filtering with the symmetrised response.
    response = 0.5 * (response + np.roll(response[::-1], 1))
    return response[: size // 2 + 1].copy()


def ramp_filter(values: torch.Tensor, spacing: float, filter_name: str | None = "ramp", size: int | None = None,
                arc_step: float = 0.0, power: float = 1.0) -> torch.Tensor:
    """Convolve the last axis with the true ramp kernel (physical units: 1 / spacing^2 per sample).

    ``None`` returns ``values`` unchanged. The result is ``|omega|``-filtered (half of iradon's filter).
    ``power`` raises the response to that power (0.5: the square root, a ramp-weighted data term).
    """
    name = check_filter_name(filter_name)
    if name is None:
        return values
    n = values.shape[-1]
    size = padded_size(n) if size is None else size
    response = fourier_filter(size, name, float(arc_step))
    if power != 1.0:
        response = np.maximum(response, 0.0) ** power
    response = torch.from_numpy(response).to(values.device, values.dtype)
    full = torch.fft.irfft(torch.fft.rfft(values, n=size, dim=-1) * response, n=size, dim=-1)
    return full[..., :n] * (0.5 / spacing)
