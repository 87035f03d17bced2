"""The common shape of every coordinate network: ``(..., spatial_dims)`` in, ``(..., out_channels)`` out."""

from __future__ import annotations

import torch
from torch import nn

from ._validation import check_coordinates, check_positive_int

__all__ = ["CoordinateNetwork", "ChannelFirst"]


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


class ChannelFirst(nn.Module):
    """A coordinate network on MONAI's channel-first layout: ``(B, spatial_dims, *S)`` → ``(B, out_channels, *S)``.

    Channel ``i`` of the input holds coordinate ``i`` of each sample (a coordinate grid is an "image"
    of ``spatial_dims`` channels), so MONAI tools that feed ``(B, C, H[, W, D])`` tensors, such as a
    bundle's ``verify_net_in_out`` or an inferer, can drive an implicit neural representation.  The
    wrapped network's parameters are this module's (``network.*`` in the state dict).

    Args:
        network: a :class:`CoordinateNetwork`.

    Example::

        net = ChannelFirst(NestNet(spatial_dims=2, out_channels=1))
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
        image = net(torch.stack([yy, xx])[None])   # (1, 1, 64, 64)
    """

    def __init__(self, network: CoordinateNetwork) -> None:
        super().__init__()
        if not isinstance(network, CoordinateNetwork):
            raise TypeError(f"ChannelFirst wraps a monai_nets coordinate network, got {type(network).__name__}")
        self.network = network
        self.spatial_dims = network.spatial_dims
        self.out_channels = network.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.ndim < 2:
            raise ValueError(f"ChannelFirst({type(self.network).__name__}): input must be (B, {self.spatial_dims}, "
                             f"*spatial), got shape {tuple(x.shape)}")
        return self.network(x.movedim(1, -1)).movedim(-1, 1)


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
