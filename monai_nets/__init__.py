"""MONAI-style implicit neural representation networks: NestNet and the INR baselines.

Every network maps coordinates ``(..., spatial_dims)`` in [-1, 1] to ``(..., out_channels)``.
Importing this package registers the nested activation in MONAI's activation factory under the
name ``"nestnet"``, so ``monai.networks.nets.FullyConnectedNet(..., act="nestnet")`` (or
``act=("nestnet", {"height": 3, "num_subnets": 2})``) uses it; in MONAI's convolutional nets
(``BasicUNet``, ``UNet``, ...) its subnetworks are assigned along the channel axis 1 of
``(B, C, *spatial)``, in ``FullyConnectedNet`` along the last axis of ``(B, C)`` (see
:class:`NestedActivation`).  :class:`ChannelFirst` runs a coordinate network on MONAI's channel-first
layout.

Every registry network traces (``torch.jit.trace``), exports (``torch.export``, ONNX) and compiles;
see ``tests/monai_nets/test_export.py``.
"""

from __future__ import annotations

from monai.networks.layers.factories import Act

from .activations import NestedActivation, get_fused_backend, set_fused_backend
from .base import ChannelFirst, CoordinateNetwork
from .encodings import DEFAULT_NUM_FREQUENCIES, FourierFeatures, GaussianFourierFeatures, PositionalEncoding
from .ffn import FFN
from .finer import Finer
from .gauss import Gauss
from .mfn import MFN
from .nestnet import NestNet
from .registry import available_networks, get_network, network_class
from .relu_pe import ReluPE
from .siren import Siren
from .wire import ComplexLinear, Wire

__all__ = [
    "CoordinateNetwork",
    "ChannelFirst",
    "NestNet",
    "NestedActivation",
    "Siren",
    "Wire",
    "ComplexLinear",
    "Gauss",
    "MFN",
    "FFN",
    "ReluPE",
    "Finer",
    "FourierFeatures",
    "GaussianFourierFeatures",
    "PositionalEncoding",
    "DEFAULT_NUM_FREQUENCIES",
    "get_network",
    "available_networks",
    "network_class",
    "set_fused_backend",
    "get_fused_backend",
    "MONAI_ACT_NAME",
]

#: Name of the nested activation in ``monai.networks.layers.factories.Act``.
MONAI_ACT_NAME = "nestnet"

if MONAI_ACT_NAME.upper() not in Act.names:
    Act.add_factory_class(MONAI_ACT_NAME, NestedActivation, "NestNet's trainable nested activation")
