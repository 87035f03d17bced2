"""Gaussian-activated MLP: exp(−(s z)²) (Ramasinghe & Lucey 2022)."""

from __future__ import annotations

import torch

from .base import CoordinateNetwork, hidden_tuple, linear_stack

__all__ = ["Gauss"]


class Gauss(CoordinateNetwork):
    """MLP with Gaussian activations ``exp(−(s · z)²)`` and a linear output layer.

    Args:
        spatial_dims: number of coordinate axes.
        out_channels: output channels.
        hidden_channels: hidden layer widths.
        scale: s, the inverse width of the Gaussian (10, as in the WIRE benchmark harness).

    Example::

        net = Gauss(spatial_dims=3, out_channels=1)
        net(torch.zeros(4, 3)).shape  # torch.Size([4, 1])
    """

    recommended_lr = 5e-3

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        scale: float = 10.0,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        self.scale = float(scale)
        self.layers = linear_stack(spatial_dims, hidden_tuple(hidden_channels), out_channels)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = torch.exp(-((self.scale * layer(h)) ** 2))
        return self.layers[-1](h)
