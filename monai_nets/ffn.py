"""FFN: ReLU MLP on random Gaussian Fourier features (Tancik et al., NeurIPS 2020)."""

from __future__ import annotations

import torch

from .base import CoordinateNetwork, hidden_tuple, linear_stack
from .encodings import GaussianFourierFeatures

__all__ = ["FFN"]


class FFN(CoordinateNetwork):
    """Fourier feature network: γ(x) = [cos 2πBx, sin 2πBx], B ~ N(0, σ²), then a ReLU MLP.

    Args:
        spatial_dims: number of coordinate axes.
        out_channels: output channels.
        hidden_channels: hidden widths.
        num_features: number of random frequencies.
        sigma: their standard deviation (10 on coordinates in [-1, 1], as in the WIRE harness).
        seed: seed of the frequency draw (part of the network's identity).

    Example::

        net = FFN(spatial_dims=2, out_channels=1)
        net(torch.zeros(8, 2)).shape  # torch.Size([8, 1])
    """

    recommended_lr = 1e-3

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        num_features: int = 256,
        sigma: float = 10.0,
        seed: int = 0,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        self.encoding = GaussianFourierFeatures(spatial_dims, num_features, sigma, seed)
        self.layers = linear_stack(self.encoding.out_features, hidden_tuple(hidden_channels), out_channels)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoding(x)
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h)
