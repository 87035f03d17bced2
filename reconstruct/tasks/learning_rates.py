"""Default learning rates per task, chosen by committed sweeps on development cases.

``benchmarks/sweep_defaults.py`` runs every registry network on a task's development case — data no
results table uses — at ⅓, 1, 3 and 9 times its ``recommended_lr`` (the rate of its paper / reference
code; further out while the best stays at an edge) and keeps the rate of the best final metric:

* fitting and single- and multi-frame super-resolution: ``skimage.data.chelsea``, 96² RGB, 300 steps,
  PSNR (``benchmarks/results/lr_defaults_cpu.json``);
* the convection PINN: β = 25 and 35 (the tables use 5 and 30-50), vanilla, 1000 steps, the
  geometric mean of the two relative L2 errors (``lr_defaults_pinn_hard_cpu.json``); FFN learns
  neither speed at any rate and keeps the rate a first sweep at β = 20 chose for it
  (``lr_defaults_pinn_cpu.json``);
* occupancy: generated 96³ ``skimage.data.binary_blobs``, 60 steps, IoU
  (``lr_defaults_occupancy_cpu.json``); FFN and ReLU+PE fit nothing in 60 steps at any rate, so
  theirs come from 300 steps (``lr_defaults_occupancy_300_cpu.json``).

The occupancy choice holds at the task's 500 steps (NestNet on the blobs: IoU 0.9955 at 5e-3, 0.9998
at 0.015). The PINN's best rate moves with β: the first sweep, at β = 20 alone, chose rates that made
SIREN, Gauss, WIRE and MFN worse at the tables' β = 30 / 40 than their papers' rates
(``benchmarks/RESULTS.md`` lists every rate's runs), so the defaults come from the hard regime's two
speeds instead.

``tests/benchmarks/test_lr_defaults.py`` checks these tables equal the records' choices. Denoising is
not swept: the sweep rewards fitting fast, and a denoising fit is stopped early — at the image rates
SIREN's held-out stop on a noisy 64² image gained 0.6 dB instead of 5 — so it keeps the networks' own
rates, as CT does (not swept: its tables compare against classical methods at the recommended rates).
"""

from __future__ import annotations

__all__ = ["IMAGE_LEARNING_RATES", "IMAGE_TASKS", "PINN_LEARNING_RATES", "OCCUPANCY_LEARNING_RATES", "SWEPT_TASKS"]

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

#: model -> Adam learning rate of the PINN (sweep winner on convection at β = 25 and 35; FFN's at β = 20;
#: see the module docstring).
PINN_LEARNING_RATES: dict[str, float] = {
    "nestnet": 0.005,
    "siren": 0.001,
    "wire": 0.005 / 3,
    "gauss": 0.005 / 3,
    "mfn": 0.01 * 3,
    "ffn": 0.001 * 3,
    "relu_pe": 0.001 * 9,
    "finer": 0.0005 / 3,
}

#: model -> Adam learning rate of occupancy fitting (sweep winner on generated blobs; see the module docstring).
OCCUPANCY_LEARNING_RATES: dict[str, float] = {
    "nestnet": 0.005 * 3,
    "siren": 0.001 * 3,
    "wire": 0.005,
    "gauss": 0.005,
    "mfn": 0.01 * 9,
    "ffn": 0.001 * 9,
    "relu_pe": 0.001 * 9,
    "finer": 0.0005 * 9,
}

#: Every task whose default learning rates come from a committed sweep.
SWEPT_TASKS = (*IMAGE_TASKS, "solve_convection", "fit_occupancy")
