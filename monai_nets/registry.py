"""Name → network registry: the one way the GUI, CLI, batch runner and benchmarks build networks."""

from __future__ import annotations

from .base import CoordinateNetwork
from .ffn import FFN
from .finer import Finer
from .gauss import Gauss
from .mfn import MFN
from .nestnet import NestNet
from .relu_pe import ReluPE
from .siren import Siren
from .wire import Wire

__all__ = ["get_network", "available_networks", "network_class", "NETWORKS"]

NETWORKS: dict[str, type[CoordinateNetwork]] = {
    "nestnet": NestNet,
    "siren": Siren,
    "wire": Wire,
    "gauss": Gauss,
    "mfn": MFN,
    "ffn": FFN,
    "relu_pe": ReluPE,
    "finer": Finer,
}


def available_networks() -> list[str]:
    """Names accepted by :func:`get_network`, in a stable order (NestNet first)."""
    return list(NETWORKS)


def network_class(name: str) -> type[CoordinateNetwork]:
    """The class registered under ``name`` (case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"network name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; available: {', '.join(NETWORKS)}")
    return NETWORKS[key]


def get_network(name: str, spatial_dims: int, out_channels: int, **kwargs) -> CoordinateNetwork:
    """Build a registered network.

    Args:
        name: one of :func:`available_networks` (``nestnet``, ``siren``, ``wire``, ``gauss``,
            ``mfn``, ``ffn``, ``relu_pe``, ``finer``).
        spatial_dims: number of coordinate axes.
        out_channels: output channels.
        kwargs: constructor arguments of that network (e.g. ``hidden_channels``, ``height``).

    Example::

        net = get_network("siren", spatial_dims=2, out_channels=3, omega_0=30.0)
    """
    cls = network_class(name)
    try:
        return cls(spatial_dims=spatial_dims, out_channels=out_channels, **kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"{name}: {exc}".replace("__init__() ", "")) from None
        raise
