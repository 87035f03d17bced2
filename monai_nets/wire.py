"""WIRE: complex Gabor wavelet activations (Saragadam et al., CVPR 2023)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import CoordinateNetwork, hidden_tuple

__all__ = ["Wire"]


class Wire(CoordinateNetwork):
    """WIRE: hidden activations ψ(z) = exp(j ω₀ z − |s₀ z|²) on complex features; real output.

    The first layer maps real coordinates to real pre-activations; later layers are complex
    linear maps.  Hidden widths are divided by √2 (as in WIRE) so the number of real parameters
    matches a real MLP of the nominal width.

    Args:
        spatial_dims: number of coordinate axes.
        out_channels: output channels (the real part of the last complex layer).
        hidden_channels: nominal hidden widths (each is divided by √2).
        omega_0: frequency ω₀ of the wavelet (20, the WIRE image-fitting setting).
        sigma_0: scale s₀ of the Gaussian window (10).

    Example::

        net = Wire(spatial_dims=2, out_channels=1)
        net(torch.zeros(8, 2)).shape  # torch.Size([8, 1])
    """

    recommended_lr = 5e-3

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        omega_0: float = 20.0,
        sigma_0: float = 10.0,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        self.omega_0, self.sigma_0 = float(omega_0), float(sigma_0)
        widths = tuple(max(1, int(w / math.sqrt(2))) for w in hidden_tuple(hidden_channels))
        self.first = nn.Linear(spatial_dims, widths[0])
        self.hidden = nn.ModuleList(
            nn.Linear(a, b, dtype=torch.cfloat) for a, b in zip(widths[:-1], widths[1:])
        )
        self.last = nn.Linear(widths[-1], out_channels, dtype=torch.cfloat)

    def _gabor(self, z: torch.Tensor) -> torch.Tensor:
        return torch.exp(1j * self.omega_0 * z - (self.sigma_0 * z.abs()) ** 2)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._gabor(self.first(x.float()))
        for layer in self.hidden:
            h = self._gabor(layer(h))
        return self.last(h).real.to(x.dtype)
