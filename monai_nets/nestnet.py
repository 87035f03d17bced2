"""NestNet: an MLP whose hidden neurons are activated by trainable subnetworks (height > 1)."""

from __future__ import annotations

import torch
from torch import nn

from ._validation import check_positive_int
from .activations import NestedActivation
from .base import CoordinateNetwork, hidden_tuple, linear_stack
from .encodings import DEFAULT_NUM_FREQUENCIES, FourierFeatures

__all__ = ["NestNet"]


class NestNet(CoordinateNetwork):
    """NestNet implicit neural representation (Shen, Yang & Zhang; the INR paper arXiv 2503.21166).

    Fourier features → Linear → nested activation → … → Linear.  Every hidden neuron is activated
    by one of ``num_subnets`` trainable width-3 subnetworks (see :class:`NestedActivation` for the
    assignment: contiguous blocks of channels share a subnetwork).  ``height=1`` is exactly a ReLU
    MLP on the same features.

    Args:
        spatial_dims: number of coordinate axes (coordinates in [-1, 1]).
        out_channels: output channels (1 grey, 3 RGB, 1 occupancy logit, ...).
        hidden_channels: widths of the hidden layers (the paper: two of 256).
        height: nesting height s (1 = ReLU MLP, 2 = the paper's NestNet, 3+ = deeper nesting).
        num_subnets: r, the number of distinct subnetworks (the INR paper uses 2).
        share_subnets: one set of subnetworks for all hidden layers (the original NestNet) or a set
            per layer.
        num_frequencies: Fourier frequencies per axis (βᵢ = i, i = 1..m).
        frequency_scale: multiplies the frequencies; the default 1/4 keeps x = −1 and x = +1 distinct
            (see :class:`FourierFeatures`).
        subnet_init: ``"prescribed"`` (the paper's initial values) or ``"random"``.
        fused: use the fused activation kernels (``False``: the naive reference, for checking).

    Example::

        net = NestNet(spatial_dims=2, out_channels=3)
        rgb = net(torch.rand(1024, 2) * 2 - 1)   # (1024, 3)
    """

    recommended_lr = 5e-3

    def __init__(
        self,
        spatial_dims: int,
        out_channels: int,
        hidden_channels: int | tuple[int, ...] = (256, 256),
        height: int = 2,
        num_subnets: int = 2,
        share_subnets: bool = True,
        num_frequencies: int = DEFAULT_NUM_FREQUENCIES,
        frequency_scale: float = 0.25,
        subnet_init: str = "prescribed",
        fused: bool = True,
    ) -> None:
        super().__init__(spatial_dims, out_channels)
        widths = hidden_tuple(hidden_channels)
        check_positive_int("height", height)
        check_positive_int("num_subnets", num_subnets)
        if num_subnets > min(widths):
            raise ValueError(
                f"num_subnets={num_subnets} exceeds the narrowest hidden layer ({min(widths)}); "
                "each subnetwork needs at least one neuron"
            )
        self.height = height
        self.encoding = FourierFeatures(spatial_dims, num_frequencies, scale=frequency_scale)
        self.layers = linear_stack(self.encoding.out_features, widths, out_channels)

        def make() -> NestedActivation:
            return NestedActivation(height, num_subnets, channel_dim=-1, init=subnet_init, fused=fused)

        self.share_subnets = share_subnets
        count = 1 if share_subnets else len(widths)
        self.activations = nn.ModuleList(make() for _ in range(count))

    def activation_for_layer(self, index: int) -> NestedActivation:
        """The nested activation applied after hidden layer ``index``."""
        return self.activations[0 if self.share_subnets else index]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoding(x)
        for i, layer in enumerate(self.layers[:-1]):
            h = self.activation_for_layer(i)(layer(h))
        return self.layers[-1](h)
