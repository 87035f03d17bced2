"""The science of napari-nestnet: grids, forward operators, one fitting loop and the reconstruction tasks.

Usable without napari.  Two floors: the science modules (grid, radon, operators, fit, tasks, pinn,
metrics, noise) never import the application modules (io, batch, cli).
"""

from __future__ import annotations

from .device import resolve_device
from .fit import BestIterate, FitResult, StepInfo, fit
from .grid import make_grid, render

__all__ = ["fit", "FitResult", "StepInfo", "BestIterate", "make_grid", "render", "resolve_device"]
