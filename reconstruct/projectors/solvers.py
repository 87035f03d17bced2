"""Classical CT solvers on any projector with ``forward`` / ``adjoint`` (deepinv-style composition).

A solver is an object configured once (iterations, relaxation, regularisation) and called with the
physics operator and the measurement: ``SIRT(iterations=100)(projector, sinogram)``. The data fidelity
is :class:`L2` (``½‖A x − y‖²``) for every iterative solver; the operator never knows the solver.

Defaults do not look at any ground truth: fixed iteration counts chosen by measurement on the
Shepp–Logan phantom *and* a natural-content slice (they are early-stopped, semi-convergent methods:
more iterations fit the noise), non-negativity for attenuation, and for TV the weight on the same
normalised scale as the INR's TV term (``reconstruct.tasks.ct``), so one number means the same thing
for both.

- :class:`FBP`: the projector's analytic reconstruction (FBP / fan FBP / FDK).
- :class:`SIRT`: ``x += C Aᵀ R (y − A x)`` with ``R = 1/(A 1)``, ``C = 1/(Aᵀ 1)`` (100 iterations).
- :class:`SART`: ordered-subset SART (OS-SART): the SIRT step per subset of views (10 subsets,
  10 epochs, relaxation 0.9).
- :class:`CGLS`: conjugate gradients on the normal equations (5 iterations: on Shepp–Logan 48²/64²
  with 1 % noise 5 gave 24.9/24.5 dB, 10 gave 21.7/23.4 — CGLS fits noise fast).
- :class:`TV`: ``½‖A x − y‖² + λ TV(x)`` (anisotropic) by Chambolle–Pock on the normalised operator
  (200 iterations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["L2", "Solver", "FBP", "SIRT", "SART", "CGLS", "TV", "SOLVERS", "operator_norm", "make_solver"]


def _physics(op: Any) -> Any:
    return getattr(op, "projector", op)


def _dot(a: torch.Tensor, b: torch.Tensor, lead: int) -> torch.Tensor:
    """Per-item inner products over the trailing dims (``lead`` leading batch dims kept)."""
    dims = tuple(range(lead, a.ndim))
    return (a * b).sum(dim=dims, keepdim=True) if dims else a * b


class L2:
    """Data fidelity ``½‖A x − y‖²`` and its gradient ``Aᵀ(A x − y)``."""

    def value(self, op: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (op(x) - y).square().sum()

    def grad(self, op: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return op.adjoint(op(x) - y)


def operator_norm(op: Any, like: torch.Tensor, iterations: int = 15, seed: int = 0) -> float:
    """‖A‖₂ by power iteration on ``AᵀA`` (a random start; slightly underestimates, so callers pad it)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(like.shape, generator=gen, dtype=like.dtype).to(like.device)
    norm = 1.0
    for _ in range(iterations):
        x = op.adjoint(op(x))
        norm = float(x.norm())
        if norm == 0:
            return 0.0
        x = x / norm
    return norm ** 0.5


class Solver:
    """Base class: ``solver(op, y, x0=None) -> x``; ``callback(iteration, x)`` may return True to stop."""

    name = ""

    def __init__(self, iterations: int = 1, nonnegative: bool = True,
                 callback: Callable[[int, torch.Tensor], Any] | None = None) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer; got {iterations!r}")
        self.iterations = iterations
        self.nonnegative = nonnegative
        self.callback = callback
        self.data_fidelity = L2()

    def _start(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        shape = (*y.shape[: y.ndim - len(op.projection_shape)], *op.volume_shape)
        return y.new_zeros(shape) if x0 is None else x0.clone()

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_(min=0.0) if self.nonnegative else x

    def _stop(self, iteration: int, x: torch.Tensor) -> bool:
        return bool(self.callback(iteration, x)) if self.callback is not None else False

    def __call__(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.solve(_physics(op), y, x0)

    def solve(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class FBP(Solver):
    """The analytic reconstruction of the projector (FBP, fan-weighted FBP, FDK)."""

    name = "fbp"

    def __init__(self, filter_name: str | None = "ramp", **kwargs: Any) -> None:
        super().__init__(nonnegative=False, **kwargs)
        self.filter_name = filter_name

    def solve(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        return op.fbp(y, self.filter_name)


def _inverse(values: torch.Tensor) -> torch.Tensor:
    return torch.where(values > 1e-8 * values.max().clamp(min=1e-30), 1.0 / values.clamp(min=1e-30),
                       torch.zeros_like(values))


class SIRT(Solver):
    """Simultaneous iterative reconstruction technique (Landweber with row/column normalisation)."""

    name = "sirt"

    def __init__(self, iterations: int = 100, relaxation: float = 1.0, **kwargs: Any) -> None:
        super().__init__(iterations, **kwargs)
        self.relaxation = float(relaxation)

    def solve(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        x = self._start(op, y, x0)
        ones = torch.ones(op.volume_shape, dtype=y.dtype, device=y.device)
        row = _inverse(op(ones))
        col = _inverse(op.adjoint(torch.ones(op.projection_shape, dtype=y.dtype, device=y.device)))
        for it in range(self.iterations):
            x = self._project(x + self.relaxation * col * op.adjoint(row * (y - op(x))))
            if self._stop(it, x):
                break
        return x


class SART(Solver):
    """Ordered-subset SART: the SIRT update on interleaved subsets of the views, ``iterations`` epochs."""

    name = "sart"

    def __init__(self, iterations: int = 10, subsets: int = 10, relaxation: float = 0.9, **kwargs: Any) -> None:
        super().__init__(iterations, **kwargs)
        self.subsets = int(subsets)
        self.relaxation = float(relaxation)

    def solve(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        x = self._start(op, y, x0)
        n = op.n_views
        k = max(1, min(self.subsets, n))
        view_axis = y.ndim - len(op.projection_shape)
        parts = []
        ones = torch.ones(op.volume_shape, dtype=y.dtype, device=y.device)
        for s in range(k):
            index = torch.arange(s, n, k)
            sub = op.with_views(index)
            ys = y.index_select(view_axis, index.to(y.device))
            row = _inverse(sub(ones))
            col = _inverse(sub.adjoint(torch.ones(sub.projection_shape, dtype=y.dtype, device=y.device)))
            parts.append((sub, ys, row, col))
        for it in range(self.iterations):
            for sub, ys, row, col in parts:
                x = self._project(x + self.relaxation * col * sub.adjoint(row * (ys - sub(x))))
            if self._stop(it, x):
                break
        return x


class CGLS(Solver):
    """Conjugate gradients on ``AᵀA x = Aᵀ y`` (semi-convergent: the iteration count regularises)."""

    name = "cgls"

    def __init__(self, iterations: int = 5, **kwargs: Any) -> None:
        kwargs.setdefault("nonnegative", False)
        super().__init__(iterations, **kwargs)

    def solve(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        x = self._start(op, y, x0)
        lead = y.ndim - len(op.projection_shape)
        r = y - op(x)
        s = op.adjoint(r)
        p = s.clone()
        gamma = _dot(s, s, lead)
        for it in range(self.iterations):
            q = op(p)
            qq = _dot(q, q, lead)
            alpha = torch.where(qq > 0, gamma / qq.clamp(min=1e-300), torch.zeros_like(qq))
            x = x + alpha.view(*alpha.shape[:lead], *([1] * (x.ndim - lead))) * p
            r = r - alpha * q
            s = op.adjoint(r)
            new = _dot(s, s, lead)
            beta = torch.where(gamma > 0, new / gamma.clamp(min=1e-300), torch.zeros_like(new))
            p = s + beta.view(*beta.shape[:lead], *([1] * (s.ndim - lead))) * p
            gamma = new
            if self._stop(it, x):
                break
        return self._project(x) if self.nonnegative else x


def _grad(x: torch.Tensor, nd: int) -> list[torch.Tensor]:
    out = []
    for axis in range(x.ndim - nd, x.ndim):
        d = torch.diff(x, dim=axis, append=x.narrow(axis, x.shape[axis] - 1, 1))
        out.append(d)
    return out


def _div(q: list[torch.Tensor], nd: int) -> torch.Tensor:
    """Negative adjoint of :func:`_grad` (forward differences, zero at the far edge)."""
    total = None
    for i, d in enumerate(q):
        axis = d.ndim - nd + i
        n = d.shape[axis]
        first = d.narrow(axis, 0, 1)
        middle = d.narrow(axis, 1, n - 2) - d.narrow(axis, 0, n - 2) if n > 2 else d.narrow(axis, 0, 0)
        last = -d.narrow(axis, n - 2, 1) if n > 1 else d.narrow(axis, 0, 0)
        term = torch.cat([first, middle, last], dim=axis) if n > 1 else torch.zeros_like(d)
        total = term if total is None else total + term
    return total


class TV(Solver):
    """``½‖A x − y‖² + weight · Σ|∇x|`` (anisotropic TV) by Chambolle–Pock (primal–dual).

    ``weight`` is the absolute λ; :func:`tv_weight_from_normalised` converts the task's normalised
    weight. Steps ``σ = τ = 0.99 / ‖[A/‖A‖; ∇]‖`` on the operator scaled by its norm.
    """

    name = "tv"

    def __init__(self, weight: float = 0.0, iterations: int = 100, **kwargs: Any) -> None:
        super().__init__(iterations, **kwargs)
        if weight < 0:
            raise ValueError(f"weight must be >= 0; got {weight!r}")
        self.weight = float(weight)

    def solve(self, op: Any, y: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        nd = len(op.volume_shape)
        if x0 is None and hasattr(op, "fbp"):
            x0 = op.fbp(y)  # a warm start: Chambolle–Pock then needs far fewer iterations
            x0 = x0.clamp(min=0.0) if self.nonnegative else x0
        x = self._start(op, y, x0)
        norm = 1.01 * operator_norm(op, x.new_zeros(op.volume_shape)) or 1.0
        y_n = y / norm
        mu = self.weight / norm ** 2
        step = 0.99 / (1.0 + 4.0 * nd) ** 0.5
        p = torch.zeros_like(y)
        q = [torch.zeros_like(x) for _ in range(nd)]
        x_bar = x.clone()
        for it in range(self.iterations):
            p = (p + step * (op(x_bar) / norm - y_n)) / (1.0 + step)
            q = [torch.clamp(qi + step * gi, -mu, mu) for qi, gi in zip(q, _grad(x_bar, nd))]
            x_new = self._project(x - step * (op.adjoint(p) / norm - _div(q, nd)))
            x_bar = 2.0 * x_new - x
            x = x_new
            if self._stop(it, x):
                break
        return x


#: Solver name -> class (the CT task's ``method`` choices besides ``inr``).
SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (FBP, SIRT, SART, CGLS, TV)}


def make_solver(name: str, **kwargs: Any) -> Solver:
    """The solver called ``name`` built with ``kwargs`` (unknown names: one-line ValueError)."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[name](**kwargs)
