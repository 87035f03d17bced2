"""SIREN: sine-activated MLP with its principled initialisation (Sitzmann et al. 2020)."""

from __future__ import annotations

import math

import torch

from .base import CoordinateNetwork, hidden_tuple, linear_stack

__all__ = ["Siren", "siren_init_"]


@torch.no_grad()
def siren_init_(layers, omega_0: float, hidden_omega_0: float) -> None:
    """SIREN init: first layer U(−1/n, 1/n), later layers U(−√(6/n)/ω₀, √(6/n)/ω₀); n = fan-in."""
    for i, layer in enumerate(layers):
        n = layer.in_features
        bound = 1.0 / n if i == 0 else math.sqrt(6.0 / n) / hidden_omega_0
        layer.weight.uniform_(-bound, bound)


class Siren(CoordinateNetwork):
    """SIREN: ``sin(ω₀ (W x + b))`` hidden layers and a linear output layer.

    Args:
        spatial_dims: number of coordinate axes.
        out_channels: output channels.
        hidden_channels: hidden layer widths.
        omega_0: frequency of the first layer (30 in the paper).
        hidden_omega_0: frequency of the later layers.

    Example::

        net = Siren(spatial_dims=2, out_channels=1)
        net(torch.zeros(16, 2)).shape  # torch.Size([16, 1])
    """

    recommended_lr = 1e-3

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        omega_0: float = 30.0,
        hidden_omega_0: float = 30.0,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        self.omega_0, self.hidden_omega_0 = float(omega_0), float(hidden_omega_0)
        self.layers = linear_stack(spatial_dims, hidden_tuple(hidden_channels), out_channels)
        siren_init_(self.layers, self.omega_0, self.hidden_omega_0)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers[:-1]):
            h = torch.sin((self.omega_0 if i == 0 else self.hidden_omega_0) * layer(h))
        return self.layers[-1](h)
