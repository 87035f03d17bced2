"""Input checks shared by every coordinate network (one-line errors, never deep torch tracebacks).

Eager calls run every check.  While a graph is captured (``torch.jit.trace``/``script``,
``torch.compile``, ``torch.export``, ONNX export), checks that read tensor *values* (the NaN/Inf
scan) cannot be recorded and are skipped; checks on types and static shapes still run under
``torch.compile``/``torch.export`` (they become guards), and under ``torch.jit.trace`` only the type
checks run (sizes are traced tensors there, and branching on them would bake the example's answer
into the trace; a wrong width still fails in the first layer).
"""

from __future__ import annotations

import torch

__all__ = ["check_coordinates", "check_positive_int", "capturing_graph"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def capturing_graph() -> bool:
    """True while ``torch.jit`` traces or scripts, or ``torch.compile``/``torch.export`` capture a graph."""
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as int or raise a ValueError/TypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_coordinates(x: object, spatial_dims: int, network: str) -> torch.Tensor:
    """Validate a coordinate tensor of shape ``(..., spatial_dims)`` with finite float values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{network}: coordinates must be a torch.Tensor of shape (..., {spatial_dims}), "
            f"got {type(x).__name__}; convert with torch.as_tensor(x, dtype=torch.float32)"
        )
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{network}: coordinates must be a floating tensor, got dtype {x.dtype}; "
            "use x.float() (coordinates live in [-1, 1])"
        )
    if torch.jit.is_tracing():
        return x
    if x.ndim < 1 or x.shape[-1] != spatial_dims:
        raise ValueError(
            f"{network}: coordinates must have shape (..., {spatial_dims}) for spatial_dims={spatial_dims}, "
            f"got shape {tuple(x.shape)}"
        )
    if capturing_graph():  # a data-dependent check: no graph can hold it
        return x
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{network}: coordinates contain NaN or Inf; all coordinates must be finite")
    return x
