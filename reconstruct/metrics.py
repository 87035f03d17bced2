"""Quality metrics through MONAI (PSNR, SSIM, IoU) plus the PINN's relative L2 error.

Arrays follow the task layouts: ``(H, W)``, ``(H, W, C)`` images, ``(D, H, W)`` volumes.  PSNR is
``10 log10(data_range² / MSE)``: with images normalised to [0, 1] (``data_range=1``) it is the WIRE
harness's ``10 log10(1 / MSE)``.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import PSNRMetric, SSIMMetric, compute_iou

__all__ = ["psnr", "ssim", "iou", "rel_l2", "image_metrics"]


def _as_tensor(a) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    return t.detach().to(torch.float64)


def _channels_first(t: torch.Tensor, channel_last: bool) -> torch.Tensor:
    """(spatial..., [C]) → (1, C, spatial...) as MONAI's metrics expect."""
    if channel_last:
        t = torch.movedim(t, -1, 0)
    else:
        t = t.unsqueeze(0)
    return t.unsqueeze(0)


def _check_pair(pred: torch.Tensor, ref: torch.Tensor) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from reference shape {tuple(ref.shape)}")


def psnr(pred, reference, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (MONAI ``PSNRMetric``)."""
    p, r = _as_tensor(pred), _as_tensor(reference)
    _check_pair(p, r)
    metric = PSNRMetric(max_val=data_range)
    return float(metric(p.reshape(1, 1, -1), r.reshape(1, 1, -1)).mean())


def ssim(pred, reference, data_range: float = 1.0, channel_last: bool | None = None) -> float:
    """Structural similarity (MONAI ``SSIMMetric``, Gaussian window 11, σ = 1.5).

    ``channel_last`` defaults to True for 3-D arrays whose last axis has 3 or 4 entries (RGB(A)).
    Images smaller than the window use a window of the smallest odd size that fits.
    """
    p, r = _as_tensor(pred), _as_tensor(reference)
    _check_pair(p, r)
    if channel_last is None:
        channel_last = p.ndim == 3 and p.shape[-1] in (3, 4)
    p, r = _channels_first(p, channel_last), _channels_first(r, channel_last)
    spatial = p.shape[2:]
    win = min(11, *(s if s % 2 else s - 1 for s in spatial))
    if win < 3:
        raise ValueError(f"SSIM needs at least 3 samples along every axis, got spatial shape {tuple(spatial)}")
    metric = SSIMMetric(spatial_dims=len(spatial), data_range=data_range, win_size=win)
    return float(metric(p, r).mean())


def iou(pred, reference, threshold: float = 0.5) -> float:
    """Intersection over union of ``pred >= threshold`` and ``reference >= threshold`` (MONAI ``compute_iou``)."""
    p, r = _as_tensor(pred), _as_tensor(reference)
    _check_pair(p, r)
    pb = (p >= threshold).to(torch.float32).reshape(1, 1, -1)
    rb = (r >= threshold).to(torch.float32).reshape(1, 1, -1)
    return float(compute_iou(pb, rb, include_background=True, ignore_empty=False).mean())


def rel_l2(pred, reference) -> float:
    """Relative L2 error ‖pred − ref‖ / ‖ref‖."""
    p, r = _as_tensor(pred), _as_tensor(reference)
    _check_pair(p, r)
    return float(torch.linalg.vector_norm(p - r) / torch.linalg.vector_norm(r).clamp_min(1e-12))


def image_metrics(pred, reference, data_range: float = 1.0, with_ssim: bool = True) -> dict[str, float]:
    """``{"psnr": ..., "ssim": ...}`` for an image or volume against its reference."""
    out = {"psnr": psnr(pred, reference, data_range)}
    if with_ssim:
        out["ssim"] = ssim(pred, reference, data_range)
    return out
