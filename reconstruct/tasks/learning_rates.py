"""Default learning rates of fitting and super-resolution, chosen by a committed sweep.

``benchmarks/sweep_defaults.py`` fits a development photo (``skimage.data.chelsea``, 96² RGB, 300
steps, not an image of any results table) with every registry network at ⅓, 1, 3 and 9 times its
``recommended_lr`` (the rate of its paper / reference code) and keeps the best final PSNR; its
result, with the command, is ``benchmarks/results/lr_defaults_cpu.json``, and
``tests/benchmarks/test_lr_defaults.py`` checks that these rates are that file's choice. Fitting
and single- and multi-frame super-resolution use them. Denoising does not: the sweep rewards fitting
fast, and a denoising fit is stopped early — at the swept rates SIREN's held-out stop on a noisy
64² image gained 0.6 dB instead of 5 — so it keeps the networks' own rates, as CT, occupancy and the
PINN do (none of them swept here).
"""

from __future__ import annotations

__all__ = ["IMAGE_LEARNING_RATES", "IMAGE_TASKS"]

#: The tasks that take :data:`IMAGE_LEARNING_RATES` as their defaults.
IMAGE_TASKS = ("fit_image", "super_resolve", "super_resolve_multi")

#: model -> Adam learning rate (sweep winner; see the module docstring).
IMAGE_LEARNING_RATES: dict[str, float] = {
    "nestnet": 0.005,
    "siren": 0.003,
    "wire": 0.005,
    "gauss": 0.015,
    "mfn": 0.03,
    "ffn": 0.003,
    "relu_pe": 0.003,
    "finer": 0.0015,
}
