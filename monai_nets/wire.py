"""WIRE: complex Gabor wavelet activations (Saragadam et al., CVPR 2023)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .base import CoordinateNetwork, hidden_tuple

__all__ = ["Wire", "ComplexLinear"]


class ComplexLinear(nn.Module):
    """A complex linear map ``W h + b`` whose parameters are real: ``W = weight_real + i weight_imag``.

    Complex numbers travel as ``(real, imag)`` pairs of real tensors, so the layer follows the real
    dtype of the model (``.double()``, ``.half()``), and traces, exports and converts to ONNX (which has
    no complex tensors).  The initial values are those of ``nn.Linear(..., dtype=torch.cfloat)``, and
    a state dict of that layer (complex ``weight``/``bias``) loads into it.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        reference = nn.Linear(in_features, out_features, dtype=torch.cfloat)  # WIRE's initialisation
        with torch.no_grad():
            self.weight_real = nn.Parameter(reference.weight.real.clone())
            self.weight_imag = nn.Parameter(reference.weight.imag.clone())
            self.bias_real = nn.Parameter(reference.bias.real.clone())
            self.bias_imag = nn.Parameter(reference.bias.imag.clone())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Re, Im)`` of ``W h + b`` for ``h = real + i imag``."""
        out_real = F.linear(real, self.weight_real, self.bias_real) - F.linear(imag, self.weight_imag)
        out_imag = F.linear(imag, self.weight_real, self.bias_imag) + F.linear(real, self.weight_imag)
        return out_real, out_imag

    def forward_real(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """Only ``Re(W h + b)`` (WIRE's output layer)."""
        return F.linear(real, self.weight_real, self.bias_real) - F.linear(imag, self.weight_imag)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of the complex nn.Linear version keep "weight"/"bias" as complex tensors
        for name in ("weight", "bias"):
            key = prefix + name
            if key in state_dict and torch.is_complex(state_dict[key]):
                value = state_dict.pop(key)
                state_dict[f"{key}_real"], state_dict[f"{key}_imag"] = value.real, value.imag
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Wire(CoordinateNetwork):
    """WIRE: hidden activations ψ(z) = exp(j ω₀ z − |s₀ z|²) on complex features; real output.

    The first layer maps real coordinates to real pre-activations; later layers are complex
    linear maps (:class:`ComplexLinear`, computed in real arithmetic).  Hidden widths are divided by
    √2 (as in WIRE) so the number of real parameters matches a real MLP of the nominal width.  The
    network computes in the dtype of its parameters (float32 by default, ``.double()`` for float64)
    and returns the dtype of its input.

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
        self.hidden = nn.ModuleList(ComplexLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.last = ComplexLinear(widths[-1], out_channels)

    def _gabor(self, real: torch.Tensor, imag: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ψ(a + ib) = exp(−ω₀ b − s₀²(a² + b²)) · (cos ω₀a + i sin ω₀a), as ``(Re, Im)``."""
        energy = (self.sigma_0 * real) ** 2
        if imag is None:
            magnitude = torch.exp(-energy)
        else:
            magnitude = torch.exp(-self.omega_0 * imag - energy - (self.sigma_0 * imag) ** 2)
        phase = self.omega_0 * real
        return magnitude * torch.cos(phase), magnitude * torch.sin(phase)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._gabor(self.first(x.to(self.first.weight.dtype)))
        for layer in self.hidden:
            h = self._gabor(*layer(*h))
        return self.last.forward_real(*h).to(x.dtype)
