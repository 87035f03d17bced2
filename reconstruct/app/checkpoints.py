"""Model checkpoints that load without running pickled code.

A checkpoint holds ``{"state_dict", "network", "network_kwargs", "extra", "format_version"}`` made only
of tensors and plain values, so :func:`load_checkpoint` reads it with ``torch.load(weights_only=True)``
and :func:`load_model` rebuilds the network by its registry name (:func:`monai_nets.get_network`).

Example::

    save_checkpoint("fit.pt", model, network="nestnet", network_kwargs={"spatial_dims": 2})
    model = load_model("fit.pt")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import PathLike, atomic_write, existing_file, one_line, prepare_target

__all__ = ["CHECKPOINT_FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "load_model"]

#: Bumped when the layout of a checkpoint changes; newer files than this version reads are refused.
CHECKPOINT_FORMAT_VERSION = 1


def _plain(obj: Any, where: str) -> Any:
    """``obj`` made of what ``torch.load(weights_only=True)`` accepts: tensors and plain Python values."""
    # numpy scalars first: np.float64 is a float subclass but pickles as a numpy global
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (torch.dtype, np.dtype)):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use strings")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    raise TypeError(f"cannot store {where} ({type(obj).__name__}) in a checkpoint; "
                    "use tensors, numbers, strings, lists or dicts")


def save_checkpoint(
    path: PathLike,
    model: torch.nn.Module,
    *,
    network: str,
    network_kwargs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Save a model so that :func:`load_model` can rebuild it, atomically.

    The file holds ``{"state_dict", "network", "network_kwargs", "extra", "format_version"}`` made only of
    tensors and plain values, so it loads with ``torch.load(..., weights_only=True)`` (no pickled code).

    Args:
        path: target file (``.pt``).
        model: the network whose ``state_dict`` is stored (moved to CPU in the file).
        network: registry name for ``monai_nets.get_network`` (e.g. ``"nestnet"``).
        network_kwargs: the constructor arguments given to ``get_network`` (``spatial_dims``, ...).
        extra: anything else to keep (config, history, input meta), plain values only.
        overwrite: replace an existing file (default, as periodic checkpoints do).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(network, str) or not network:
        raise TypeError(f"network must be a registry name (string), got {network!r}")
    payload = {
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "network": network,
        "network_kwargs": _plain(dict(network_kwargs), "network_kwargs"),
        "extra": _plain(dict(extra or {}), "extra"),
        "format_version": CHECKPOINT_FORMAT_VERSION,
    }
    target = prepare_target(path, overwrite)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)

    return atomic_write(target, write, "a checkpoint")


def load_checkpoint(path: PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs).

    Args:
        path: checkpoint file.
        map_location: device the tensors are loaded onto.

    Returns:
        The checkpoint dict; ``extra`` is always present.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is damaged or not a checkpoint of this kind (one line).
    """
    p = existing_file(path, "a checkpoint file")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read {p} as a checkpoint: {one_line(first)}; "
                         "check the file is complete and not corrupted") from None
    required = ("state_dict", "network", "network_kwargs")
    missing = [k for k in required if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{p} is not a nestnet checkpoint (missing {', '.join(missing)}); "
                         "save it with reconstruct.io.save_checkpoint")
    version = ckpt.get("format_version", 1)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{p} has checkpoint format {version!r}, newer than this version reads "
                         f"({CHECKPOINT_FORMAT_VERSION}); upgrade napari-nestnet")
    ckpt.setdefault("extra", {})
    return ckpt


def load_model(path: PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the network stored by :func:`save_checkpoint` and load its weights (in eval mode).

    Args:
        path: checkpoint file.
        map_location: device to put the model on.
    """
    from monai_nets import get_network  # imported late: the checkpoint reader alone needs no networks

    ckpt = load_checkpoint(path, map_location=map_location)
    try:
        model = get_network(ckpt["network"], **dict(ckpt["network_kwargs"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot rebuild the network in {path}: {one_line(str(exc))}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"weights in {path} do not fit network {ckpt['network']!r}: "
                         f"{one_line(str(exc).splitlines()[0] if str(exc) else str(exc))}") from None
    return model.to(map_location).eval()
