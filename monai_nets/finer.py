"""FINER: variable-periodic sine activations sin(ω₀ (|z| + 1) z) (Liu et al., CVPR 2024)."""

from __future__ import annotations

import torch

from .base import CoordinateNetwork, hidden_tuple, linear_stack
from .siren import siren_init_

__all__ = ["Finer"]


class Finer(CoordinateNetwork):
    """FINER: SIREN's layers with the activation ``sin(ω₀ α(z) z)``, ``α(z) = |z| + 1``.

    As in FINER, the scale ``α`` is treated as a constant in backpropagation (it only stretches the
    local frequency), and the first layer's bias may be drawn from a wider range U(−k, k) to
    widen the initial frequency set.

    Args:
        spatial_dims: number of coordinate axes.
        out_channels: output channels.
        hidden_channels: hidden layer widths.
        omega_0: frequency factor of every hidden layer (30 as in SIREN/FINER).
        first_bias_scale: k for the first layer's bias U(−k, k); ``None`` keeps PyTorch's default.

    Example::

        net = Finer(spatial_dims=2, out_channels=3)
        net(torch.zeros(8, 2)).shape  # torch.Size([8, 3])
    """

    recommended_lr = 5e-4

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        omega_0: float = 30.0,
        first_bias_scale: float | None = None,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        self.omega_0 = float(omega_0)
        self.layers = linear_stack(spatial_dims, hidden_tuple(hidden_channels), out_channels)
        siren_init_(self.layers, self.omega_0, self.omega_0)
        if first_bias_scale is not None:
            with torch.no_grad():
                self.layers[0].bias.uniform_(-first_bias_scale, first_bias_scale)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            z = layer(h)
            h = torch.sin(self.omega_0 * (z.abs().detach() + 1) * z)
        return self.layers[-1](h)
