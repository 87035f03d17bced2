"""The common shape of every coordinate network: ``(..., spatial_dims)`` in, ``(..., out_channels)`` out."""

from __future__ import annotations

import torch
from torch import nn

from ._validation import check_coordinates, check_positive_int

__all__ = ["CoordinateNetwork"]


class CoordinateNetwork(nn.Module):
    """Base class of the implicit neural representations in :mod:`monai_nets`.

    Subclasses implement :meth:`_forward` on a flat ``(N, spatial_dims)`` tensor; this class
    validates the input once and restores the leading batch dimensions.

    Args:
        spatial_dims: number of coordinate axes (1, 2 or 3 in practice).
        out_channels: number of output channels (1 grey, 3 RGB, ...).
    """

    #: Adam learning rate that works for this network on image fitting without tuning.
    recommended_lr: float = 1e-3

    def __init__(self, spatial_dims: int, out_channels: int) -> None:
        super().__init__()
        self.spatial_dims = check_positive_int("spatial_dims", spatial_dims)
        self.out_channels = check_positive_int("out_channels", out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_coordinates(x, self.spatial_dims, type(self).__name__)
        lead = x.shape[:-1]
        out = self._forward(x.reshape(-1, self.spatial_dims))
        return out.reshape(*lead, self.out_channels)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_real_parameters(self) -> int:
        """Trainable parameter count with complex parameters counted as two real numbers."""
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters() if p.requires_grad)


def hidden_tuple(hidden_channels: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Normalise ``hidden_channels`` to a non-empty tuple of positive widths."""
    if isinstance(hidden_channels, int):
        hidden_channels = (hidden_channels,)
    widths = tuple(hidden_channels)
    if not widths:
        raise ValueError("hidden_channels must name at least one hidden layer width, got ()")
    for w in widths:
        check_positive_int("hidden_channels entries", w)
    return widths


def linear_stack(in_features: int, widths: tuple[int, ...], out_features: int) -> nn.ModuleList:
    """Linear layers ``in -> widths[0] -> ... -> widths[-1] -> out`` (activations are the caller's)."""
    sizes = (in_features, *widths, out_features)
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
