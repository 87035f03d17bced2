"""torch-radon's class names and arguments (v1 and v2) on our pure-PyTorch projectors.

v1 (``torch_radon`` 1.x): :class:`Radon` (:class:`reconstruct.radon.Radon`) and :class:`RadonFanbeam`
``(resolution, angles, source_distance, det_distance=-1, det_count=-1, det_spacing=-1,
clip_to_circle=False)``; both have ``forward``, ``backprojection`` / ``backward`` and
``filter_sinogram(sino, filter_name="ramp")`` with torch-radon's ``pi / (2 n_angles)`` factor.

v2 (``torch_radon`` 2.x): :class:`ParallelBeam` ``(det_count, angles, det_spacing=1.0, volume=None)``,
:class:`FanBeam` ``(det_count, angles, src_dist=None, det_dist=None, det_spacing=None, volume=None)``,
:class:`ConeBeam` ``(det_count_u, angles, src_dist=None, det_dist=None, det_count_v=-1,
det_spacing_u=1.0, det_spacing_v=-1.0, pitch=0.0, base_z=0.0, volume=None)``, :class:`Volume2D`
``(center, voxel_size)`` / :class:`Volume3D`; angles may be ``(start, end, n)``
(``linspace(start, end, n, endpoint=False)``); the volume size is taken from the first ``forward``
(or ``volume.set_size``); ``backward`` is the adjoint divided by the voxel area/volume (their
convention). ``det_dist`` is the detector's distance from the *origin* (ours:
``source_detector_distance = src_dist + det_dist``).

When the real ``torch_radon`` of the matching generation is importable, CUDA float32/float16 inputs go
to it (:mod:`.backends`); anything else — and any failure of that package — uses ours.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..radon import Radon
from ._checks import angles_array
from .backends import import_torch_radon, torch_radon_v1, torch_radon_v2
from .filters import check_filter_name, fourier_filter, padded_size
from .geometry import ConeBeam3D, FanBeam2D, ParallelBeam2D, Projector

__all__ = ["Radon", "RadonFanbeam", "ParallelBeam", "FanBeam", "ConeBeam", "Volume2D", "Volume3D"]


def _filter(sinogram: torch.Tensor, filter_name: str | None, n_angles: int) -> torch.Tensor:
    """torch-radon's ``filter_sinogram``: iradon's filter along the last axis times pi / (2 n_angles)."""
    name = check_filter_name(filter_name)
    if name is not None:
        n = sinogram.shape[-1]
        size = padded_size(n)
        response = torch.from_numpy(fourier_filter(size, name)).to(sinogram.device, sinogram.dtype)
        sinogram = torch.fft.irfft(torch.fft.rfft(sinogram, n=size, dim=-1) * response, n=size, dim=-1)[..., :n]
    return sinogram * (math.pi / (2 * n_angles))


def _fast_path(real: Any, value: torch.Tensor) -> bool:
    return real is not None and value.is_cuda and value.dtype in (torch.float32, torch.float16)


class RadonFanbeam(torch.nn.Module):
    """torch-radon v1 fan beam (flat detector) on :class:`FanBeam2D`; distances in pixels."""

    def __init__(self, resolution: int, angles: Any, source_distance: float, det_distance: float = -1,
                 det_count: int = -1, det_spacing: float = -1, clip_to_circle: bool = False) -> None:
        super().__init__()
        if det_count is None or det_count <= 0:
            det_count = resolution
        if det_distance is None or det_distance < 0:
            det_distance = source_distance
            det_spacing = 2.0  # torch-radon 1's default when det_distance is not given
        if det_spacing is None or det_spacing < 0:
            det_spacing = (source_distance + det_distance) / source_distance
        self.resolution, self.det_count = int(resolution), int(det_count)
        self.source_distance, self.det_distance, self.det_spacing = float(source_distance), float(det_distance), \
            float(det_spacing)
        self.clip_to_circle = bool(clip_to_circle)
        values = angles_array(list(angles) if isinstance(angles, tuple) else angles)
        self.projector = FanBeam2D((self.resolution,) * 2, values, self.det_count, self.source_distance,
                                   self.source_distance + self.det_distance, self.det_spacing)
        self.angles = self.projector.angles
        self._real = None
        module = torch_radon_v1(import_torch_radon())
        if module is not None:
            try:
                self._real = module.RadonFanbeam(self.resolution, values, self.source_distance, self.det_distance,
                                                 self.det_count, self.det_spacing, self.clip_to_circle)
            except Exception:
                self._real = None

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        if not self.clip_to_circle:
            return x
        n = self.resolution
        r = torch.arange(n, device=x.device) - (n - 1) / 2.0
        return x * ((r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) <= (n / 2.0) ** 2).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_path(self._real, x):
            return self._real.forward(x)
        return self.projector(self._mask(x))

    def backprojection(self, sinogram: torch.Tensor) -> torch.Tensor:
        if _fast_path(self._real, sinogram):
            return self._real.backprojection(sinogram)
        return self._mask(self.projector.adjoint(sinogram))

    backward = backprojection

    def filter_sinogram(self, sinogram: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        return _filter(sinogram, filter_name, self.projector.n_views)

    def fbp(self, sinogram: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        """Fan-beam FBP with the fan weighting (and Parker weights for a short scan)."""
        return self._mask(self.projector.fbp(sinogram, filter_name))


class Volume2D:
    """torch-radon v2's 2-D volume: ``center`` (x, y) and ``voxel_size`` (x, y); size from ``set_size``."""

    def __init__(self, center: Any = (0.0, 0.0), voxel_size: Any = (1.0, 1.0)) -> None:
        self.center = tuple(float(c) for c in center)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.height = -1
        self.width = -1

    def set_size(self, height: int, width: int) -> None:
        self.height, self.width = int(height), int(width)

    def has_size(self) -> bool:
        return self.height > 0 and self.width > 0

    def num_dimensions(self) -> int:
        return 2

    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width)

    def __repr__(self) -> str:
        return f"Volume2D(height={self.height}, width={self.width}, center={self.center}, voxel_size={self.voxel_size})"


class Volume3D(Volume2D):
    """torch-radon v2's 3-D volume: ``center`` (x, y, z), ``voxel_size`` (x, y, z), ``set_size(d, h, w)``."""

    def __init__(self, center: Any = (0.0, 0.0, 0.0), voxel_size: Any = (1.0, 1.0, 1.0)) -> None:
        super().__init__(center, voxel_size)
        self.depth = -1

    def set_size(self, depth: int, height: int, width: int) -> None:  # type: ignore[override]
        self.depth, self.height, self.width = int(depth), int(height), int(width)

    def has_size(self) -> bool:
        return self.depth > 0 and super().has_size()

    def num_dimensions(self) -> int:
        return 3

    def shape(self) -> tuple[int, ...]:
        return (self.depth, self.height, self.width)


class _BaseV2:
    """Shared v2 behaviour: the volume size comes from the first forward; projectors cached per size."""

    _real_name = ""

    def __init__(self, angles: Any, volume: Volume2D) -> None:
        self.angles = torch.from_numpy(angles_array(angles))
        self.volume = volume
        self._cache: dict[tuple[Any, ...], Projector] = {}
        self._real = None
        module = torch_radon_v2(import_torch_radon())
        if module is not None:
            try:
                self._real = self._make_real(module)
            except Exception:
                self._real = None

    def _make_real(self, module: Any) -> Any:  # pragma: no cover - needs the real package
        return None

    def _build(self, shape: tuple[int, ...], angles: np.ndarray) -> Projector:  # pragma: no cover - abstract
        raise NotImplementedError

    def projector(self, angles: Any = None) -> Projector:
        if not self.volume.has_size():
            raise ValueError("the volume has no size yet: call forward first or volume.set_size(...)")
        values = self.angles.numpy() if angles is None else angles_array(angles)
        key = (self.volume.shape(), self.volume.center, self.volume.voxel_size, values.tobytes())
        if key not in self._cache:
            self._cache = {key: self._build(self.volume.shape(), values)}
        return self._cache[key]

    def _spacing(self) -> tuple[float, ...]:
        return tuple(self.volume.voxel_size[::-1])  # ours are in array order (z,) y, x

    def forward(self, x: torch.Tensor, angles: Any = None, exec_cfg: Any = None) -> torch.Tensor:
        nd = self.volume.num_dimensions()
        self.volume.set_size(*x.shape[-nd:])
        if angles is None and _fast_path(self._real, x):
            return self._real.forward(x)
        return self.projector(angles)(x)

    def backward(self, sinogram: torch.Tensor, angles: Any = None, volume: Volume2D | None = None,
                 exec_cfg: Any = None) -> torch.Tensor:
        if volume is not None:
            self.volume = volume
        if angles is None and volume is None and _fast_path(self._real, sinogram):
            return self._real.backward(sinogram)
        return self.projector(angles).adjoint(sinogram) / math.prod(self.volume.voxel_size)

    backprojection = backward

    def filter_sinogram(self, sinogram: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        return _filter(sinogram, filter_name, int(self.angles.numel()))

    def fbp(self, sinogram: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        """Analytic reconstruction (FBP, fan-weighted FBP or FDK) in the volume's units."""
        return self.projector().fbp(sinogram, filter_name)


class ParallelBeam(_BaseV2):
    """torch-radon v2 parallel beam."""

    def __init__(self, det_count: int, angles: Any, det_spacing: float = 1.0, volume: Volume2D | None = None) -> None:
        self.det_count, self.det_spacing = int(det_count), float(det_spacing)
        super().__init__(angles, volume if volume is not None else Volume2D())

    def _make_real(self, module: Any) -> Any:  # pragma: no cover - needs the real package
        return module.ParallelBeam(self.det_count, self.angles.numpy(), self.det_spacing)

    def _build(self, shape: tuple[int, ...], angles: np.ndarray) -> Projector:
        return ParallelBeam2D(shape, angles, self.det_count, self.det_spacing, self._spacing(),
                              volume_offset=self.volume.center)


class FanBeam(_BaseV2):
    """torch-radon v2 fan beam (flat detector)."""

    def __init__(self, det_count: int, angles: Any, src_dist: float | None = None, det_dist: float | None = None,
                 det_spacing: float | None = None, volume: Volume2D | None = None) -> None:
        self.det_count = int(det_count)
        self.src_dist = float(det_count if src_dist is None else src_dist)
        self.det_dist = float(self.src_dist if det_dist is None else det_dist)
        self.det_spacing = float((self.src_dist + self.det_dist) / self.src_dist if det_spacing is None
                                 else det_spacing)
        super().__init__(angles, volume if volume is not None else Volume2D())

    def _make_real(self, module: Any) -> Any:  # pragma: no cover - needs the real package
        return module.FanBeam(self.det_count, self.angles.numpy(), self.src_dist, self.det_dist, self.det_spacing)

    def _build(self, shape: tuple[int, ...], angles: np.ndarray) -> Projector:
        return FanBeam2D(shape, angles, self.det_count, self.src_dist, self.src_dist + self.det_dist,
                         self.det_spacing, self._spacing(), volume_offset=self.volume.center)


class ConeBeam(_BaseV2):
    """torch-radon v2 cone beam (flat panel; ``pitch`` per turn, ``base_z`` the source's start height)."""

    def __init__(self, det_count_u: int, angles: Any, src_dist: float | None = None, det_dist: float | None = None,
                 det_count_v: int = -1, det_spacing_u: float = 1.0, det_spacing_v: float = -1.0,
                 pitch: float = 0.0, base_z: float = 0.0, volume: Volume3D | None = None) -> None:
        self.det_count_u = int(det_count_u)
        self.det_count_v = int(det_count_v) if det_count_v > 0 else self.det_count_u
        self.src_dist = float(det_count_u if src_dist is None else src_dist)
        self.det_dist = float(self.src_dist if det_dist is None else det_dist)
        self.det_spacing_u = float(det_spacing_u)
        self.det_spacing_v = float(det_spacing_v) if det_spacing_v > 0 else self.det_spacing_u
        self.pitch, self.base_z = float(pitch), float(base_z)
        super().__init__(angles, volume if volume is not None else Volume3D())

    def _make_real(self, module: Any) -> Any:  # pragma: no cover - needs the real package
        return module.ConeBeam(self.det_count_u, self.angles.numpy(), self.src_dist, self.det_dist, self.det_count_v,
                               self.det_spacing_u, self.det_spacing_v, self.pitch, self.base_z)

    def _build(self, shape: tuple[int, ...], angles: np.ndarray) -> Projector:
        centre = self.volume.center
        return ConeBeam3D(shape, angles, (self.det_count_v, self.det_count_u), self.src_dist,
                          self.src_dist + self.det_dist, (self.det_spacing_v, self.det_spacing_u), self._spacing(),
                          pitch=self.pitch, volume_offset=(centre[0], centre[1], centre[2] - self.base_z))
