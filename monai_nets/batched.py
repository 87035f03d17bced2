"""K independent copies of one coordinate network, evaluated in one call: ``(K, N, in)`` → ``(K, N, out)``.

:class:`BatchedNetwork` stacks the parameters of ``K`` networks of the same class and configuration
(``torch.func.stack_module_state``) into ``(K, ...)`` :class:`torch.nn.Parameter` tensors, so one
optimizer trains all of them and copy ``k`` only ever receives the gradient of its own outputs. Adam
and the other elementwise optimizers then update every copy exactly as if it were trained alone on
its own loss (up to the loss's scale: a mean over ``K`` copies divides each copy's gradient by ``K``,
which Adam's normalisation all but removes).

How the copies are evaluated (``backend``):

* ``"vmap"`` — ``torch.vmap`` over ``torch.func.functional_call`` of one copy's structure, for every
  network whose operations ``vmap`` supports. The input is validated once for all copies (the
  per-network check reads tensor values, which ``vmap`` cannot). Works for every registry network
  except the NestNet with its fused activation: that activation is a custom
  :class:`torch.autograd.Function` without a ``setup_context``/vmap rule, which functorch transforms
  refuse (``NestNet(fused=False)``, the naive reference, vmaps).
* ``"bmm"`` — NestNet only: batched matmuls (``torch.baddbmm``) and the *fused* nested activation with
  each copy's subnetwork parameters broadcast along the copy axis, so one kernel call per subnetwork
  block serves all copies and the hand-written backward reduces per copy. The default for NestNet.
* ``"loop"`` — one call per copy on slices of the stacked parameters (any network); the fallback
  ``"auto"`` takes, with a warning, for a network ``vmap`` cannot run.

``"auto"`` (default) picks ``"bmm"`` for a fused NestNet and ``"vmap"`` otherwise (after a two-point
trial call; ``"loop"`` if it fails).

Measured on a shared 2-core CPU, one thread, torch 2.13 (load average 3-4, so rough): one train step
of 32 NestNets 2 × 256 at 4,096 points each — ``"bmm"`` 3.7 s, ``"loop"`` 4.2 s, ``"vmap"`` of
``NestNet(fused=False)`` 12.3 s, 32 separate networks one after another 3.9 s. Fitting a 32-slice
sinogram stack of 64² (``benchmarks/bench_slice_models.py``, 100 steps) as 32 batched 2-D INRs took
182 s against 314 s for 32 separate ``ct_reconstruct`` fits (1.72×), at the same PSNR (35.9 vs 35.8 dB).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ._validation import capturing_graph, check_coordinates, check_positive_int
from .activations import _FusedRho, _rho_forward
from .base import CoordinateNetwork
from .nestnet import NestNet
from .registry import get_network

__all__ = ["BatchedNetwork", "BATCHED_BACKENDS"]

#: Accepted values of ``BatchedNetwork(..., backend=)``.
BATCHED_BACKENDS = ("auto", "vmap", "bmm", "loop")


def _mangle(name: str) -> str:
    """A state-dict key of one copy (``layers.0.weight``) as an attribute name (``layers__0__weight``)."""
    return name.replace(".", "__")


class _Unchecked(nn.Module):
    """One copy's structure whose forward skips the value check (done once, outside ``vmap``)."""

    def __init__(self, network: CoordinateNetwork) -> None:
        super().__init__()
        self.net = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._forward(x)


class BatchedNetwork(nn.Module):
    """``K`` independent copies of a :mod:`monai_nets` coordinate network, evaluated together.

    ``forward(x)`` maps ``x`` of shape ``(K, N, spatial_dims)`` (copy ``k`` sees ``x[k]``) to
    ``(K, N, out_channels)``, equal to ``torch.stack([net_k(x[k]) for k in range(K)])`` of the networks
    it was built from. ``forward(x, copies=idx)`` evaluates only the copies ``idx`` (a 1-D index, one per
    row of ``x``), e.g. the slices a rendering chunk touches. The parameters are ``(K, ...)`` stacks named
    like one copy's state-dict keys with ``.`` → ``__`` (``layers__0__weight``); :meth:`state_dict_of`
    returns copy ``k``'s state dict, which loads into a network of the same configuration.

    Args:
        networks: the copies, all of one class and configuration (e.g. ``K`` NestNets built with the same
            arguments). Their current parameters are copied into the stacks' rows; the first network is
            kept (unregistered) as the structure the stacks are evaluated with, its own tensors never read.
        backend: ``"auto"``, ``"vmap"``, ``"bmm"`` (fused NestNet only) or ``"loop"`` (see the module
            docstring).

    Raises:
        TypeError: an entry that is not a :class:`~monai_nets.base.CoordinateNetwork`.
        ValueError: no networks, copies of different classes or shapes, an unknown backend, ``"bmm"``
            for a network other than a fused NestNet, or ``"vmap"`` for one that ``vmap`` cannot run.

    Example::

        nets = BatchedNetwork.from_registry("nestnet", copies=32, spatial_dims=2, out_channels=1,
                                            hidden_channels=(64, 64))
        x = torch.rand(32, 4096, 2) * 2 - 1
        y = nets(x)                                    # (32, 4096, 1): copy k evaluated at x[k]
        opt = torch.optim.Adam(nets.parameters(), lr=5e-3)
        copy0 = NestNet(2, 1, hidden_channels=(64, 64))
        copy0.load_state_dict(nets.state_dict_of(0))   # copy 0 as a plain NestNet
    """

    def __init__(self, networks: Sequence[CoordinateNetwork], backend: str = "auto") -> None:
        super().__init__()
        networks = list(networks)
        if not networks:
            raise ValueError("BatchedNetwork needs at least one network")
        for net in networks:
            if not isinstance(net, CoordinateNetwork):
                raise TypeError(f"BatchedNetwork stacks monai_nets coordinate networks, got {type(net).__name__}")
        first = networks[0]
        shapes = {k: v.shape for k, v in first.state_dict(keep_vars=True).items()}
        for net in networks[1:]:
            if type(net) is not type(first) or {k: v.shape for k, v in net.state_dict(keep_vars=True).items()} \
                    != shapes or set(dict(net.named_buffers())) != set(dict(first.named_buffers())):
                raise ValueError(f"BatchedNetwork copies must share one class and configuration; got "
                                 f"{type(first).__name__} and a different {type(net).__name__}")
        if backend not in BATCHED_BACKENDS:
            raise ValueError(f"backend must be one of {BATCHED_BACKENDS}, got {backend!r}")
        self.copies = len(networks)
        self.spatial_dims = first.spatial_dims
        self.out_channels = first.out_channels
        self.recommended_lr = float(getattr(first, "recommended_lr", 1e-3))
        self.network_class = type(first).__name__
        params, buffers = torch.func.stack_module_state(networks)
        persistent = set(first.state_dict())
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_mangle(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_mangle(name), value.detach().clone(), persistent=name in persistent)
        # One copy's structure: functional_call swaps the stacks' rows in for its tensors, the batched
        # matmuls read its configuration. Kept out of the module tree so it never shows among the
        # parameters, the state dict or .to().
        self.__dict__["_template"] = first
        self.backend = self._choose_backend(backend, first)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_registry(cls, name: str, copies: int, spatial_dims: int, out_channels: int, backend: str = "auto",
                      **kwargs) -> BatchedNetwork:
        """``copies`` networks ``get_network(name, spatial_dims, out_channels, **kwargs)``, stacked.

        The copies are drawn one after another from the global RNG (seed it first for reproducible
        initialisations); to start every copy from the same initialisation, build one network and pass
        ``[copy.deepcopy(net) for _ in range(copies)]`` to the constructor.
        """
        check_positive_int("copies", copies)
        return cls([get_network(name, spatial_dims, out_channels, **kwargs) for _ in range(copies)], backend)

    def _choose_backend(self, backend: str, first: CoordinateNetwork) -> str:
        fused_nestnet = isinstance(first, NestNet) and all(a.fused for a in first.activations)
        if backend == "bmm" and not fused_nestnet:
            raise ValueError(f"backend='bmm' is written for a NestNet with the fused activation; "
                             f"{self.network_class} runs with backend 'vmap' or 'loop'")
        if backend in ("bmm", "loop"):
            return backend
        if backend == "auto" and fused_nestnet:
            return "bmm"
        if fused_nestnet:
            raise ValueError("backend='vmap' cannot run NestNet's fused activation (a custom autograd.Function "
                             "without a vmap rule); use backend 'bmm' (the default) or NestNet(fused=False)")
        try:
            probe = torch.zeros(1, 2, self.spatial_dims, device=getattr(self, _mangle(self._param_names[0])).device)
            with torch.enable_grad():
                self._vmap(probe, self._stacks(torch.zeros(1, dtype=torch.long)))
        except Exception as exc:  # a network with an operation vmap does not support
            if backend == "vmap":
                raise ValueError(f"torch.vmap cannot run {self.network_class} ({type(exc).__name__}: {exc}); "
                                 "use backend 'loop'") from None
            warnings.warn(f"torch.vmap cannot run {self.network_class} ({type(exc).__name__}); BatchedNetwork "
                          "evaluates its copies one after another (backend 'loop')", stacklevel=3)
            return "loop"
        return "vmap"

    # ------------------------------------------------------------------ parameters
    def _stacks(self, copies: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(parameters, buffers)`` of one copy's state-dict names, stacked over ``copies`` (all: None)."""
        def pick(value: torch.Tensor) -> torch.Tensor:
            return value if copies is None else value.index_select(0, copies.to(value.device))

        params = {n: pick(getattr(self, _mangle(n))) for n in self._param_names}
        buffers = {n: pick(getattr(self, _mangle(n))) for n in self._buffer_names}
        return params, buffers

    def state_dict_of(self, index: int) -> dict[str, torch.Tensor]:
        """Copy ``index``'s state dict (detached copies), loadable into a network of the same configuration."""
        if not -self.copies <= index < self.copies:
            raise IndexError(f"copy {index} out of range for {self.copies} copies")
        keys = self._template.state_dict().keys()
        return {name: getattr(self, _mangle(name))[index].detach().clone() for name in keys}

    def num_real_parameters(self) -> int:
        """Trainable parameters of all copies, complex ones counted as two real numbers."""
        return sum(p.numel() * (2 if p.is_complex() else 1) for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        return f"copies={self.copies}, network={self.network_class}, backend={self.backend!r}"

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, copies: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """``(K', N, spatial_dims)`` → ``(K', N, out_channels)``; row ``i`` by copy ``copies[i]`` (default: all)."""
        x = check_coordinates(x, self.spatial_dims, f"BatchedNetwork({self.network_class})")
        index = None
        rows = self.copies
        if copies is not None:
            index = torch.as_tensor(copies, dtype=torch.long).reshape(-1)
            if index.numel() and (int(index.min()) < -self.copies or int(index.max()) >= self.copies):
                raise IndexError(f"copies {index.tolist()} out of range for {self.copies} copies")
            index = index % self.copies
            rows = index.numel()
            if rows == self.copies and torch.equal(index, torch.arange(rows, device=index.device)):
                index = None  # all copies in order: the stacks themselves, no gather
        if x.ndim != 3 or x.shape[0] != rows:
            raise ValueError(f"BatchedNetwork({self.network_class}): input must be (copies={rows}, N, "
                             f"{self.spatial_dims}), got shape {tuple(x.shape)}")
        params, buffers = self._stacks(index)
        if self.backend == "bmm":
            return self._bmm(x, params, buffers)
        if self.backend == "vmap":
            return self._vmap(x, (params, buffers))
        return torch.stack([torch.func.functional_call(
            _Unchecked(self._template), ({f"net.{k}": v[i] for k, v in params.items()},
                                         {f"net.{k}": v[i] for k, v in buffers.items()}), (x[i],))
            for i in range(rows)])

    def _vmap(self, x: torch.Tensor, stacks: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> torch.Tensor:
        params, buffers = ({f"net.{k}": v for k, v in s.items()} for s in stacks)
        module = _Unchecked(self._template)

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], points: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(module, (p, b), (points,))

        return torch.vmap(one)(params, buffers, x)

    # ------------------------------------------------------------------ NestNet, batched matmuls
    def _bmm(self, x: torch.Tensor, p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
        net: NestNet = self._template
        enc = net.encoding
        freqs = b["encoding.frequencies"].to(x.dtype)  # (K, m)
        angles = (x.unsqueeze(-1) * freqs[:, None, None, :]).flatten(-2)  # (K, N, d * m)
        parts = [torch.cos(angles), torch.sin(angles)]
        if enc.include_input:
            parts.insert(0, x)
        h = torch.cat(parts, dim=-1)
        last = len(net.layers) - 1
        for i in range(last + 1):
            weight, bias = p[f"layers.{i}.weight"], p[f"layers.{i}.bias"]
            h = torch.baddbmm(bias.unsqueeze(1).to(h.dtype), h, weight.transpose(1, 2).to(h.dtype))
            if i < last:
                index = 0 if net.share_subnets else i
                h = self._nested(h, net.activations[index], f"activations.{index}.", p)
        return h

    def _nested(self, z: torch.Tensor, act: nn.Module, prefix: str, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """NestNet's activation on ``(K, N, C)``: contiguous channel blocks share a subnetwork, as in the model."""
        if act.height == 1:
            return torch.relu(z)
        channels, r = z.shape[-1], act.num_subnets
        if r == 1:
            return self._subnet(z, act, prefix, 0, p)
        starts = [-(-j * channels // r) for j in range(r + 1)]  # first channel c with c * r // C == j
        blocks = z.split([starts[j + 1] - starts[j] for j in range(r)], dim=-1)
        return torch.cat([self._subnet(block.contiguous(), act, prefix, j, p) for j, block in enumerate(blocks)],
                         dim=-1)

    def _subnet(self, z: torch.Tensor, act: nn.Module, prefix: str, j: int, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Subnetwork ``j`` of every copy on ``(K, N, C)``: its parameters broadcast as ``(K, 1, 1)``."""
        k = z.shape[0]
        w1, b1, w2 = (p[prefix + n][:, j].to(z.dtype).reshape(k, 1, 1, 3) for n in ("w1", "b1", "w2"))
        b2 = p[prefix + "b2"][:, j].to(z.dtype).reshape(k, 1, 1)
        if act.inner is None:
            if capturing_graph():  # as NestedActivation: the same formula as plain ops while a graph is captured
                return _rho_forward(z, w1, b1, w2, b2)
            return _FusedRho.apply(z, w1, b1, w2, b2)
        out = b2
        for unit in range(3):
            out = out + w2[..., unit] * self._subnet(z * w1[..., unit] + b1[..., unit], act.inner,
                                                     prefix + "inner.", j, p)
        return out
