"""CT projectors in millimetres, pure PyTorch (CPU and CUDA, float32/float64, batched, differentiable).

Geometries (:mod:`.geometry`): :class:`ParallelBeam2D`, :class:`FanBeam2D` (flat / arc detector),
:class:`ConeBeam3D` (flat panel, circular or helical) and :class:`ParallelBeam3D` (a slice stack).
Each has ``forward`` (ray-driven line integrals), ``adjoint`` (its exact transpose) and ``fbp``
(FBP with fan / Parker weights, FDK for the cone). :mod:`.phantoms` gives analytic ellipse / ellipsoid
line integrals, :mod:`.rawdata` counts, flat/dark correction and noise, :mod:`.torch_radon_api` the
torch-radon v1/v2 class names, :mod:`.solvers` the classical iterative solvers.
"""

from .filters import FILTER_NAMES
from .geometry import DETECTOR_SHAPES, ConeBeam3D, FanBeam2D, ParallelBeam2D, ParallelBeam3D, Projector

__all__ = ["DETECTOR_SHAPES", "FILTER_NAMES", "ConeBeam3D", "FanBeam2D", "ParallelBeam2D", "ParallelBeam3D",
           "Projector"]
