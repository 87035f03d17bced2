"""Multiplicative filter network with Gabor filters (Fathony et al., ICLR 2021)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import CoordinateNetwork, hidden_tuple

__all__ = ["MFN"]


class _GaborFilter(nn.Module):
    """g(x) = exp(−γ/2 ‖x − μ‖²) · sin(W x + b), with the MFN paper's initialisation."""

    def __init__(self, in_features: int, out_features: int, weight_scale: float, alpha: float, beta: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.mu = nn.Parameter(2 * torch.rand(out_features, in_features) - 1)
        self.gamma = nn.Parameter(torch.distributions.Gamma(alpha, beta).sample((out_features,)))
        with torch.no_grad():
            self.linear.weight.mul_(weight_scale * torch.sqrt(self.gamma[:, None]))
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq_dist = (x**2).sum(-1, keepdim=True) + (self.mu**2).sum(-1) - 2 * x @ self.mu.T
        return torch.exp(-0.5 * sq_dist * self.gamma) * torch.sin(self.linear(x))


class MFN(CoordinateNetwork):
    """Gabor multiplicative filter network: z₁ = g₁(x), zᵢ₊₁ = (Wᵢ zᵢ + bᵢ) ⊙ gᵢ₊₁(x), y = W_out z.

    No pointwise activation: depth multiplies filters of the input.  One filter per hidden layer
    plus one; hidden layers must share one width.

    Args:
        spatial_dims: number of coordinate axes.
        out_channels: output channels.
        hidden_channels: hidden widths (all equal), e.g. (256, 256).
        input_scale: frequency scale of the filters (256 in the MFN paper).
        weight_scale: scale of the hidden linear layers' init.
        alpha, beta: Gamma(α/(L+1), β) prior of the filters' inverse widths γ.

    Example::

        net = MFN(spatial_dims=2, out_channels=3)
        net(torch.zeros(8, 2)).shape  # torch.Size([8, 3])
    """

    recommended_lr = 1e-2

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        input_scale: float = 256.0,
        weight_scale: float = 1.0,
        alpha: float = 6.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        widths = hidden_tuple(hidden_channels)
        if len(set(widths)) != 1:
            raise ValueError(f"MFN needs equal hidden widths, got hidden_channels={widths}")
        width, n = widths[0], len(widths)
        self.filters = nn.ModuleList(
            _GaborFilter(spatial_dims, width, input_scale / math.sqrt(n + 1), alpha / (n + 1), beta)
            for _ in range(n + 1)
        )
        self.linears = nn.ModuleList(nn.Linear(width, width) for _ in range(n))
        bound = math.sqrt(weight_scale / width)
        with torch.no_grad():
            for lin in self.linears:
                lin.weight.uniform_(-bound, bound)
        self.output = nn.Linear(width, out_channels)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.filters[0](x)
        for filt, lin in zip(self.filters[1:], self.linears):
            h = filt(x) * lin(h)
        return self.output(h)
