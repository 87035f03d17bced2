"""MONAI dictionary transforms that run a NestNet task inside ``monai.transforms.Compose``: the public names.

Kept for the public API (``configs/inference.json``, the README and user scripts use
``reconstruct.transforms.CTReconstructd``, ``network_spec``, ...). The code lives in the application
floor, :mod:`reconstruct.app.transforms` (one transform per task, its keyword arguments from the task's
spec; the module docstring gives the array and geometry conventions).

This is an application module: the science modules of :mod:`reconstruct` never import it.
"""

from __future__ import annotations

from .app.transforms import *  # noqa: F403 - the public names, listed once in reconstruct.app.transforms
from .app.transforms import __all__  # noqa: F401
