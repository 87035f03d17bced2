"""Coordinate encodings: deterministic Fourier features, random Gaussian features, NeRF positional encoding."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validation import check_positive_int

__all__ = ["FourierFeatures", "GaussianFourierFeatures", "PositionalEncoding", "DEFAULT_NUM_FREQUENCIES"]

#: Default number of frequencies per axis for :class:`FourierFeatures`, from the ``--ablation
#: frequencies`` benchmark (``benchmarks/RESULTS.md``; 64² cameraman, 200 steps, 2 seeds): m = 8 and
#: 16 end 21 and 9 dB below m = 32; m = 64 ends 9.6 dB above it on average but within the seed spread
#: (46.5 and 82.5 dB) with a third more parameters, so 32 stays the default until a longer run decides.
DEFAULT_NUM_FREQUENCIES = 32


class FourierFeatures(nn.Module):
    """Deterministic per-axis Fourier features γ(x) = [cos(2π βᵢ s x), sin(2π βᵢ s x)], βᵢ = i, αᵢ = 1.

    The frequencies are the integers 1..m (as in the NestNet INR paper), multiplied by ``scale``.
    Why ``scale`` defaults to 1/4: cos/sin(2π i x) repeat every unit, so on coordinates in [-1, 1]
    the unscaled encoding gives x = -1 and x = +1 identical features (the first and last rows of an
    image are forced equal and a 97-sample CT grid aliases pixel j onto j + 48). With ``scale=1/4``
    the lowest frequency spans half a period over the whole domain, so every coordinate is encoded
    uniquely.

    Args:
        spatial_dims: number of coordinate axes.
        num_frequencies: m, frequencies per axis (output width ``2 * m * spatial_dims``).
        scale: multiplies every frequency (see above).
        include_input: also pass the raw coordinates through.

    Example::

        enc = FourierFeatures(spatial_dims=2, num_frequencies=8)
        enc(torch.rand(10, 2) * 2 - 1).shape  # torch.Size([10, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        num_frequencies: int = DEFAULT_NUM_FREQUENCIES,
        scale: float = 0.25,
        include_input: bool = False,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_positive_int("spatial_dims", spatial_dims)
        self.num_frequencies = check_positive_int("num_frequencies", num_frequencies)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        self.scale = float(scale)
        self.include_input = include_input
        freqs = 2 * math.pi * self.scale * torch.arange(1, num_frequencies + 1, dtype=torch.float32)
        self.register_buffer("frequencies", freqs, persistent=False)
        self.out_features = 2 * num_frequencies * spatial_dims + (spatial_dims if include_input else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (..., d, m): every axis times every frequency, then flattened per point.
        angles = (x.unsqueeze(-1) * self.frequencies.to(x.dtype)).flatten(-2)
        parts = [torch.cos(angles), torch.sin(angles)]
        if self.include_input:
            parts.insert(0, x)
        return torch.cat(parts, dim=-1)


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features γ(x) = [cos(2π x B), sin(2π x B)] with B ~ N(0, σ²) (Tancik et al. 2020).

    The encoding of the FFN baseline. ``B`` is a buffer drawn from ``seed`` so a network rebuilt
    with the same arguments encodes identically (it is also saved in the state dict).

    Args:
        spatial_dims: number of coordinate axes.
        num_features: number of random frequencies (output width ``2 * num_features``).
        sigma: standard deviation of the frequencies (on coordinates in [-1, 1]).
        seed: seed of the frequency draw.

    Example::

        enc = GaussianFourierFeatures(spatial_dims=3, num_features=64, sigma=5.0)
        enc(torch.zeros(4, 3)).shape  # torch.Size([4, 128])
    """

    def __init__(self, spatial_dims: int, num_features: int = 256, sigma: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        self.spatial_dims = check_positive_int("spatial_dims", spatial_dims)
        check_positive_int("num_features", num_features)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(spatial_dims, num_features, generator=gen) * sigma)
        self.out_features = 2 * num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * x @ self.B.to(x.dtype)
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)


class PositionalEncoding(nn.Module):
    """NeRF positional encoding [x, sin(2ᵏπx), cos(2ᵏπx)] for k = 0..L-1 (Mildenhall et al. 2020).

    Args:
        spatial_dims: number of coordinate axes.
        num_frequencies: L, the number of octaves.
        include_input: also pass the raw coordinates through.

    Example::

        enc = PositionalEncoding(spatial_dims=2, num_frequencies=10)
        enc(torch.zeros(5, 2)).shape  # torch.Size([5, 42])
    """

    def __init__(self, spatial_dims: int, num_frequencies: int = 10, include_input: bool = True) -> None:
        super().__init__()
        self.spatial_dims = check_positive_int("spatial_dims", spatial_dims)
        check_positive_int("num_frequencies", num_frequencies)
        self.include_input = include_input
        freqs = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)
        self.register_buffer("frequencies", freqs, persistent=False)
        self.out_features = 2 * num_frequencies * spatial_dims + (spatial_dims if include_input else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = (x.unsqueeze(-1) * self.frequencies.to(x.dtype)).flatten(-2)
        parts = [torch.sin(angles), torch.cos(angles)]
        if self.include_input:
            parts.insert(0, x)
        return torch.cat(parts, dim=-1)
