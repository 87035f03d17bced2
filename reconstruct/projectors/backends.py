"""Optional accelerated backends, behind guards that can never break the pure-PyTorch path.

The real ``torch_radon`` (CUDA only, built from source) exists in two API generations: v1 exposes
``Radon`` / ``RadonFanbeam``, v2 exposes ``ParallelBeam`` / ``FanBeam`` / ``ConeBeam``. Import errors,
a failing CUDA extension, or the other generation's API all mean "not available"; callers then use
:mod:`reconstruct.projectors` (which is the reference, and what CPU tensors always use).
"""

from __future__ import annotations

from typing import Any

__all__ = ["import_torch_radon", "torch_radon_v1", "torch_radon_v2"]


def import_torch_radon() -> Any | None:
    """The ``torch_radon`` module, or None when it is missing or fails to import (any exception)."""
    try:
        import torch_radon  # type: ignore[import-not-found]
    except Exception:
        return None
    return torch_radon


def torch_radon_v1(module: Any | None) -> Any | None:
    """``module`` when it has torch-radon 1's ``Radon`` class, else None."""
    return module if _has(module, "Radon") else None


def torch_radon_v2(module: Any | None) -> Any | None:
    """``module`` when it has torch-radon 2's ``ParallelBeam`` class, else None."""
    return module if _has(module, "ParallelBeam") else None


def _has(module: Any | None, name: str) -> bool:
    """Whether ``module`` has a callable ``name``; any exception (a broken extension) means no."""
    if module is None:
        return False
    try:
        return callable(getattr(module, name, None))
    except Exception:
        return False
