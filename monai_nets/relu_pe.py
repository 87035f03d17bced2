"""ReLU MLP on NeRF positional encoding (Mildenhall et al. 2020)."""

from __future__ import annotations

import torch

from .base import CoordinateNetwork, hidden_tuple, linear_stack
from .encodings import PositionalEncoding

__all__ = ["ReluPE"]


class ReluPE(CoordinateNetwork):
    """ReLU MLP on [x, sin(2ᵏπx), cos(2ᵏπx)], k = 0..L−1.

    Args:
        spatial_dims: number of coordinate axes.
        out_channels: output channels.
        hidden_channels: hidden widths.
        num_frequencies: L, octaves of the positional encoding.

    Example::

        net = ReluPE(spatial_dims=2, out_channels=1)
        net(torch.zeros(8, 2)).shape  # torch.Size([8, 1])
    """

    recommended_lr = 1e-3

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        num_frequencies: int = 10,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        self.encoding = PositionalEncoding(spatial_dims, num_frequencies)
        self.layers = linear_stack(self.encoding.out_features, hidden_tuple(hidden_channels), out_channels)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoding(x)
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        return self.layers[-1](h)
