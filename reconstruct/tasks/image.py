"""Image-like tasks: fitting and denoising (identity operator), single- and multi-image super-resolution.

All of them fit values normalised to [0, 1] (see :mod:`reconstruct.tasks.common`) and return the output
in the input's layout and value range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from monai_nets import DEFAULT_NUM_FREQUENCIES

from ..fit import FitResult, compute_metrics
from ..operators import Downsample, Identity, WarpDownsample
from ..stopping import estimate_noise_sigma, random_mask
from .common import (
    Normalisation,
    StopPlan,
    as_array,
    check_divides,
    check_shifts,
    check_spacing,
    image_layout,
    normalisation,
    reference_on_grid,
    stop_plan,
)
from .learning_rates import IMAGE_LEARNING_RATES
from .runner import build_network, run_fit, run_parameters, task_function
from .spec import DataInput, FitSettings, Param, TaskSpec, stop_params

__all__ = ["FIT_IMAGE", "DENOISE", "SUPER_RESOLVE", "SUPER_RESOLVE_MULTI", "fit_image", "denoise", "super_resolve",
           "super_resolve_multi", "simulate_misr_frames", "downsample", "smooth_prior_defaults"]

# Full-batch fitting up to this many grid points; above it pointwise tasks use random batches.
_FULL_BATCH_MAX = 1 << 18
_AUTO_BATCH = 1 << 16


def smooth_prior_defaults(divisor: int) -> Any:
    """NestNet's Fourier bank for tasks that want a smoother prior than fitting (``side // divisor`` frequencies).

    NestNet's default bank of 32 frequencies (up to 16 cycles across the image) fits photon noise on a
    64² image within ~25 steps (best 19.7 dB from 16.7 dB noisy, then back to 16.7) and fills the 4×
    super-resolution null space with texture (14.4 dB against bicubic's 20.5).  Measured on a 64²
    camera crop: 8 frequencies denoise to 22.2 dB, and for 4× super-resolution from 16² 4 frequencies
    give 20.65 dB, 8 give 20.4.  The rule keeps the highest frequency at the same fraction of the grid:
    ``side // 8`` for denoising and ``low-resolution side // 4`` for super-resolution, clamped to [4, 32].
    """
    def defaults(model: str, shape: Sequence[int]) -> dict[str, Any]:
        if model != "nestnet":
            return {}
        side = min(int(s) for s in shape)
        return {"num_frequencies": int(min(DEFAULT_NUM_FREQUENCIES, max(4, side // divisor)))}

    return defaults


_SPACING = Param("spacing", tuple, None, "voxel spacing in array order (None: every axis spans [-1, 1])",
                 low=0.0, low_open=True, optional=True, doors=frozenset({"monai"}))
_BATCH = Param("batch_size", int, None, "random points per step (None: full batch up to 262,144 points)",
               low=1, optional=True, gui_high=10_000_000)
_SCALE = Param("scale", int, 4, "integer up-sampling factor on every spatial axis", low=1, gui_high=16)
_BIT_DEPTH = Param("bit_depth", int, None, "bits per value of integer data, e.g. 12 for 12-bit data stored as "
                   "uint16 (None: the smallest of 8 or more that holds the data's maximum); sets the value range "
                   "the fit normalises by and the metrics score on", low=1, high=64, optional=True,
                   doors=frozenset({"cli", "batch", "monai", "bench"}))

_SIGMA_NONE = "estimated from the data's finest wavelet scale"
# Denoising stops on held-out pixels by default: run to the end, an INR returns its noisy input. Super-resolution
# of clean data still improves at its default steps (96² camera, 2×: 27.80 dB at step 300, held-out + refit the
# same at twice the steps), so there the stop is asked for (noisy low-res input, 5 %: 23.69 -> 24.82 dB, oracle
# 24.85, bicubic 24.34; astronaut 24.01 -> 24.70, bicubic 24.75).
_PIXEL_STOP = stop_params(stop="held_out", held_out=0.1, what="pixels", patience=30, sigma_none=_SIGMA_NONE)
_LOWRES_STOP = stop_params(stop="none", held_out=0.1, what="low-resolution pixels", patience=30,
                           sigma_none=_SIGMA_NONE)

FIT_IMAGE = TaskSpec(
    name="fit_image", command="fit-image", title="Fit image",
    summary="fit a network to an image (representation)",
    inputs=(DataInput("image", "(H, W) grey, (H, W, C) colour (C <= 4) or (D, H, W) volume, any range"),),
    params=(_SPACING, _BATCH, _BIT_DEPTH), metrics=("psnr", "ssim"),
    default_steps=500,  # still improving at 300 steps (NestNet 74 dB on a 64² crop)
    lr_overrides=IMAGE_LEARNING_RATES,
)
DENOISE = TaskSpec(
    name="denoise", command="denoise", title="Denoise",
    summary="denoise an image by an early-stopped fit",
    inputs=(DataInput("noisy", "(H, W), (H, W, C) or (D, H, W) noisy image, any range"),),
    params=(_SPACING, _BATCH, _BIT_DEPTH, *_PIXEL_STOP), metrics=("psnr", "ssim"),
    default_steps=300,  # a cap: the held-out stop ends it (96², 10 % noise: chosen near step 35-70)
    model_defaults=smooth_prior_defaults(8),
)
SUPER_RESOLVE = TaskSpec(
    name="super_resolve", command="sr", title="Super-resolve",
    summary="single-image super-resolution",
    inputs=(DataInput("lowres", "(h, w), (h, w, C) or (d, h, w) low-resolution image"),),
    params=(_SCALE, _BIT_DEPTH, *_LOWRES_STOP), metrics=("psnr", "ssim"),
    default_steps=300,  # (75 steps at 4× from 16²)
    lr_overrides=IMAGE_LEARNING_RATES,
    output_grid="upsampled", model_defaults=smooth_prior_defaults(4),
)
SUPER_RESOLVE_MULTI = TaskSpec(
    name="super_resolve_multi", command="misr", title="Super-resolve (multi-frame)",
    summary="multi-image super-resolution with known motion",
    inputs=(DataInput("frames", "(K, h, w) or (K, h, w, C) low-resolution frames"),
            DataInput("shifts", "(K, 2) per-frame (dy, dx) in high-resolution pixels", keyword=True, per_item=True),
            DataInput("rotations", "(K,) per-frame rotations in radians about the centre", keyword=True,
                      per_item=True)),
    params=(_SCALE, _BIT_DEPTH, *_LOWRES_STOP), metrics=("psnr", "ssim"),
    default_steps=500,  # still improving at 300 steps (32² from four 16² frames)
    lr_overrides=IMAGE_LEARNING_RATES,
    output_grid="upsampled",
)


def _run_normalised(spec: TaskSpec, fit: FitSettings, on_step: Any, operator: Any, measurement: np.ndarray,
                    norm: Normalisation, out_shape: tuple[int, ...], reference: Any, shape_for_defaults: Sequence[int],
                    batch_size: int | None = None,
                    stop: StopPlan | None = None) -> tuple[FitResult, np.ndarray | None, float, dict[str, Any]]:
    """Fit an image-like task on values scaled by ``norm``; the output in the caller's ``out_shape``.

    Returns ``(result, reference in fit units or None, its data range there, network arguments)``.
    """
    grid, channels = operator.signal_shape, operator.channels
    ref, data_range, data_range_orig = reference_on_grid(reference, out_shape, norm,
                                                         norm.bits if norm.declared else None)

    def to_output(values: np.ndarray) -> np.ndarray:
        return norm.inverse(values).reshape(out_shape)

    fit_ref = None if ref is None else ref.reshape(*grid, channels) if channels > 1 else ref.reshape(grid)
    network, net_kwargs = build_network(spec, fit, len(grid), channels, shape_for_defaults)
    result = run_fit(fit, network, operator, measurement, on_step=on_step, to_output=to_output,
                     reference=fit_ref, data_range=data_range, batch_size=batch_size, stop=stop)
    result.extras["normalisation"] = {**norm.to_dict(), "metric_data_range": data_range_orig}
    return result, ref, data_range, net_kwargs


def _bicubic(lowres01: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from skimage.transform import resize

    return resize(lowres01.astype(np.float64), shape, order=3, mode="edge", anti_aliasing=False).astype(np.float32)


def _add_bicubic(result: FitResult, lowres: np.ndarray, norm: Normalisation, out_shape: tuple[int, ...],
                 operator: Any, ref: np.ndarray | None, data_range: float) -> None:
    """``extras["bicubic"]`` (and with a reference ``extras["bicubic_metrics"]``): the classical baseline."""
    bicubic01 = _bicubic(norm.forward(lowres), out_shape)
    result.extras["bicubic"] = norm.inverse(bicubic01)
    if ref is not None:
        result.extras["bicubic_metrics"] = compute_metrics(operator.metric_names, bicubic01, ref, data_range)


def _image_sigma(measurement: np.ndarray) -> float:
    """The noise level of a channel-last measurement ``(*spatial, C)`` or frames ``(K, *spatial, C)`` (mean)."""
    channel_axis = -1 if measurement.shape[-1] > 1 else None
    return estimate_noise_sigma(measurement if channel_axis is not None else measurement[..., 0], channel_axis)


def _pixel_stop(params: dict[str, Any], measurement: np.ndarray, norm: Normalisation, seed: int,
                valid: np.ndarray | None = None, frames: bool = False) -> StopPlan | None:
    """The stop rule of an image-like task: pixels (all channels of one) held out at random, seeded by ``seed``."""
    if "stop" not in params:  # image fitting represents the image: every step counts
        return None

    def estimate() -> float:
        if frames:
            return float(np.mean([_image_sigma(frame) for frame in measurement]))
        return _image_sigma(measurement)

    return stop_plan(params, scale=norm.scale, mask=lambda fraction: random_mask(
        (*measurement.shape[:-1], 1), fraction, seed=seed), estimate=estimate, valid=valid)


def _fit_identity(spec: TaskSpec, image: Any, name: str, params: dict[str, Any], fit: FitSettings, on_step: Any,
                  reference: Any) -> FitResult:
    arr = as_array(image, name)
    spatial, channels, has_channel_axis = image_layout(arr, name, allow_volume=True)
    norm = normalisation(arr, name, bit_depth=params["bit_depth"])
    spacing = check_spacing(params["spacing"], len(spatial))
    batch_size = params["batch_size"]
    if batch_size is None and math.prod(spatial) > _FULL_BATCH_MAX:
        batch_size = _AUTO_BATCH
    measurement = norm.forward(arr).reshape(*spatial, channels)
    operator = Identity(spatial, channels, spacing)
    stop = _pixel_stop(params, measurement, norm, fit.seed)
    result, _, _, net_kwargs = _run_normalised(spec, fit, on_step, operator, measurement, norm, tuple(arr.shape),
                                               reference, spatial, batch_size=batch_size, stop=stop)
    result.extras["parameters"] = run_parameters(spec, fit, net_kwargs, {**params, "batch_size": batch_size,
                                                                         "spacing": spacing},
                                                 channel_axis=has_channel_axis)
    return result


@task_function(FIT_IMAGE)
def fit_image(image: Any, *, params: dict[str, Any], fit: FitSettings, on_step: Any, reference: Any) -> FitResult:
    """Fit a coordinate network to an image (image representation).

    Args:
        image: ``(H, W)`` grey, ``(H, W, C)`` colour (C ≤ 4) or a ``(D, H, W)`` volume, any numeric range.
        spacing: voxel spacing in array order (anisotropic volumes keep their aspect).
        batch_size: random points per step; ``None`` is full batch up to 262,144 points.
        bit_depth: bits per value of integer data (``None``: the smallest of 8 or more that holds the
            maximum, so 12-bit data in ``uint16`` is normalised and scored by 4,095); see
            :mod:`reconstruct.tasks.common`.
        reference: ground truth for metrics, same shape as ``image`` (default: the image itself).
        Others: the common fit settings (see :mod:`reconstruct.tasks`).

    Returns:
        FitResult; ``output`` has the image's shape and value range (float32), ``metrics`` psnr/ssim.

    Example::

        result = fit_image(skimage.data.camera()[::4, ::4], steps=300)
        result.metrics["psnr"]
    """
    return _fit_identity(FIT_IMAGE, image, "image", params, fit, on_step, image if reference is None else reference)


@task_function(DENOISE)
def denoise(noisy: Any, *, params: dict[str, Any], fit: FitSettings, on_step: Any, reference: Any) -> FitResult:
    """Denoise by fitting a coordinate network to a noisy image and stopping before it fits the noise.

    An INR fits the signal before the noise, so the stop is the regulariser; without one a fit returns
    its noisy input. The default ``stop="held_out"`` leaves ``held_out`` (10 %) of the pixels, drawn at
    random from ``seed``, out of the loss, takes the step with the lowest error on them (the network
    interpolates them, so that error follows the error against the clean image) and, with ``refit``,
    fits all the pixels again from the same start for that many steps (``steps`` is then a cap).
    ``stop="discrepancy"`` stops at the first step whose residual RMS is at most ``tau · noise_sigma``
    (``noise_sigma`` in the image's units, or estimated); ``stop="none"`` runs all ``steps``.
    Measured on a 96² camera crop with 10 % Gaussian noise (20.51 dB), NestNet: 300 steps without a
    stop 24.21 dB, held-out stop 26.20 dB (step 66 = the oracle's, 26.20), discrepancy (τ = 1, estimated
    σ) 25.48 dB; BM3D 28.21 dB. What the rule chose is ``result.extras["stop"]``. With a clean
    ``reference`` ``result.best`` is the oracle-stopped iterate (the WIRE protocol) of the stop's run.

    Args:
        noisy: ``(H, W)``, ``(H, W, C)`` or ``(D, H, W)``, any numeric range.
        stop, held_out, patience, refit, noise_sigma, tau: the stop rule (see :mod:`reconstruct.stopping`).
        reference: clean ground truth, same shape, for metrics.
        Others: as :func:`fit_image`.
    """
    return _fit_identity(DENOISE, noisy, "noisy image", params, fit, on_step, reference)


@task_function(SUPER_RESOLVE)
def super_resolve(lowres: Any, *, params: dict[str, Any], fit: FitSettings, on_step: Any,
                  reference: Any) -> FitResult:
    """Single-image super-resolution: the network lives on the fine grid, the loss after average pooling.

    Args:
        lowres: ``(h, w)``, ``(h, w, C)`` or ``(d, h, w)`` low-resolution data.
        scale: integer up-sampling factor on every spatial axis.
        reference: high-resolution ground truth ``(h·scale, w·scale[, C])`` for metrics.
        Others: the common fit settings (see :mod:`reconstruct.tasks`).

    Returns:
        FitResult with ``output`` of shape ``(h·scale, w·scale[, C])``; ``extras["bicubic"]`` the bicubic
        up-sampling (``skimage.transform.resize``, order 3) for comparison, ``extras["bicubic_metrics"]``
        with a reference.
    """
    arr = as_array(lowres, "low-resolution image")
    spatial, channels, has_channel_axis = image_layout(arr, "low-resolution image", allow_volume=True)
    scale = params["scale"]
    norm = normalisation(arr, "low-resolution image", bit_depth=params["bit_depth"])
    hr_spatial = tuple(s * scale for s in spatial)
    out_shape = hr_spatial + ((channels,) if has_channel_axis else ())
    measurement = norm.forward(arr).reshape(*spatial, channels)
    operator = Downsample(hr_spatial, channels, factor=scale)
    result, ref, data_range, net_kwargs = _run_normalised(SUPER_RESOLVE, fit, on_step, operator, measurement, norm,
                                                          out_shape, reference, spatial,
                                                          stop=_pixel_stop(params, measurement, norm, fit.seed))
    _add_bicubic(result, arr, norm, out_shape, operator, ref, data_range)
    result.extras["parameters"] = run_parameters(SUPER_RESOLVE, fit, net_kwargs, params)
    return result


def _misr_motion(shifts: Any, rotations: Any, n_frames: int | None,
                 hr_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = as_array(shifts, "shifts").astype(np.float64)
    r = as_array(rotations, "rotations").astype(np.float64).reshape(-1) if np.ndim(rotations) <= 1 else None
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"shifts must be (K, 2): one (dy, dx) in high-resolution pixels per frame; got shape "
                         f"{tuple(s.shape)}")
    if r is None:
        raise ValueError(f"rotations must be (K,): one angle in radians per frame; got shape {np.shape(rotations)}")
    if len(r) != len(s):
        raise ValueError(f"shifts give {len(s)} frames but rotations give {len(r)}; pass one of each per frame")
    if n_frames is not None and len(s) != n_frames:
        raise ValueError(f"there are {n_frames} frames but {len(s)} shifts/rotations; pass one per frame")
    check_shifts(s, hr_shape)
    return s, r


def downsample(image: Any, scale: int) -> np.ndarray:
    """The low-resolution image :func:`super_resolve` inverts: ``scale``-times average pooling of ``image``.

    Args:
        image: ``(H, W)``, ``(H, W, C)`` or ``(D, H, W)``; ``scale`` must divide every spatial side.
        scale: integer down-sampling factor.
    """
    arr = as_array(image, "image")
    spatial, channels, has_channel_axis = image_layout(arr, "image", allow_volume=True)
    scale = _SCALE.check(scale)
    check_divides(spatial, scale, "image")
    with torch.no_grad():
        low = Downsample(spatial, channels, scale)(torch.from_numpy(arr.astype(np.float32)).reshape(*spatial, channels))
    return low.numpy() if has_channel_axis else low.numpy()[..., 0]


def simulate_misr_frames(image: Any, shifts: Any, rotations: Any, scale: int = 4) -> np.ndarray:
    """Low-resolution frames of ``image`` under known rigid motions, with the operator MISR inverts.

    Frame ``k`` is ``average-pool(warp_k(image), scale)``; ``warp_k`` rotates by ``rotations[k]``
    radians about the image centre and shifts by ``shifts[k] = (dy, dx)`` high-resolution pixels.
    Pixels that see outside the image are zero (and ignored by :func:`super_resolve_multi`).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` high-resolution image; ``scale`` must divide H and W.
        shifts: ``(K, 2)``.
        rotations: ``(K,)`` radians.
        scale: integer down-sampling factor.

    Returns:
        ``(K, H/scale, W/scale[, C])`` float32 frames in the image's value range.
    """
    arr = as_array(image, "image")
    spatial, channels, has_channel_axis = image_layout(arr, "image", allow_volume=False)
    scale = _SCALE.check(scale)
    check_divides(spatial, scale, "image")
    s, r = _misr_motion(shifts, rotations, None, spatial)
    op = WarpDownsample(spatial, channels, scale, s.tolist(), r.tolist())
    with torch.no_grad():
        frames = op(torch.from_numpy(arr.astype(np.float32).reshape(*spatial, channels))).numpy()
    return frames if has_channel_axis else frames[..., 0]


@task_function(SUPER_RESOLVE_MULTI)
def super_resolve_multi(frames: Any, shifts: Any, rotations: Any, *, params: dict[str, Any], fit: FitSettings,
                        on_step: Any, reference: Any) -> FitResult:
    """Multi-image super-resolution from frames with known shifts and rotations (the WIRE MISR protocol).

    Args:
        frames: ``(K, h, w)`` or ``(K, h, w, C)`` low-resolution frames (see :func:`simulate_misr_frames`).
        shifts: ``(K, 2)`` per-frame ``(dy, dx)`` in high-resolution pixels.
        rotations: ``(K,)`` per-frame rotation in radians about the image centre.
        scale: integer up-sampling factor.
        reference: ``(h·scale, w·scale[, C])`` ground truth for metrics.
        Others: the common fit settings (see :mod:`reconstruct.tasks`).

    Returns:
        FitResult with ``output`` ``(h·scale, w·scale[, C])``.  When frame 0 is unmoved
        ``extras["bicubic"]`` (and ``extras["bicubic_metrics"]``) give its bicubic up-sampling.
    """
    arr = as_array(frames, "frames")
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] > 4):
        raise ValueError(f"frames must be (K, h, w) or (K, h, w, C) with C ≤ 4; got shape {tuple(arr.shape)}")
    scale = params["scale"]
    lr_spatial = tuple(arr.shape[1:3])
    s, r = _misr_motion(shifts, rotations, arr.shape[0], tuple(n * scale for n in lr_spatial))
    has_channel_axis = arr.ndim == 4
    channels = int(arr.shape[-1]) if has_channel_axis else 1
    norm = normalisation(arr, "frames", bit_depth=params["bit_depth"])
    hr_spatial = tuple(n * scale for n in lr_spatial)
    out_shape = hr_spatial + ((channels,) if has_channel_axis else ())
    operator = WarpDownsample(hr_spatial, channels, scale, s.tolist(), r.tolist())
    measurement = norm.forward(arr).reshape(len(s), *lr_spatial, channels)
    valid = operator.mask.numpy()  # the pixels each frame's warp sees: only they count
    stop = _pixel_stop(params, measurement, norm, fit.seed, valid=valid, frames=True)
    result, ref, data_range, net_kwargs = _run_normalised(SUPER_RESOLVE_MULTI, fit, on_step, operator, measurement,
                                                          norm, out_shape, reference, lr_spatial, stop=stop)
    if not np.any(s[0]) and r[0] == 0:
        _add_bicubic(result, arr[0], norm, out_shape, operator, ref, data_range)
    result.extras["parameters"] = run_parameters(SUPER_RESOLVE_MULTI, fit, net_kwargs, params, shifts=s.tolist(),
                                                 rotations=r.tolist())
    return result
