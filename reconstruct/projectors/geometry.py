"""CT geometries in millimetres: 2-D parallel and fan beam, 3-D cone beam and a 3-D parallel stack.

Every geometry is a :class:`torch.nn.Module` whose ``forward`` projects and ``adjoint`` (alias
``backprojection``) is the exact transpose of that forward (:mod:`._core`); ``fbp`` is the analytic
reconstruction (FBP with fan weighting and Parker short-scan weights, FDK for the cone).

Conventions (all documented signs are tested against analytic phantoms):

- arrays are ``(y, x)`` / ``(z, y, x)``; world ``x`` grows with the column, ``y`` points *up* (it
  decreases with the row), ``z`` grows with the slice index; spacings are ``(sy, sx)`` /
  ``(sz, sy, sx)`` mm.
- the rotation axis passes through voxel index ``n // 2`` on each axis for :class:`ParallelBeam2D`
  (scikit-image's convention) and through the volume's middle ``(n - 1) / 2`` for fan and cone beam
  (ASTRA's). Detector centres follow the same rule (``n // 2`` parallel, ``(n - 1) / 2`` fan/cone).
- at view angle ``theta`` the detector axis is ``e_t = (cos, sin)`` and rays travel along
  ``e_s = (sin, -cos)``: at ``theta = 0`` the projection sums the image over its rows, and angles
  turn counter-clockwise in the (x, y-up) plane, like ``skimage.transform.radon`` (in radians here).
  Fan/cone sources sit at ``-source_distance * e_s`` and the detector centre at
  ``(source_detector_distance - source_distance) * e_s``.
- cone-beam detector rows grow with ``z`` (row 0 is the lowest), columns with ``e_t``; projections
  are ``(views, rows, cols)``. ``pitch`` (mm per turn) moves the source along ``z`` (helical).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _core
from ._checks import angles_array, positive, positive_int, shape_tuple, spacing_tuple

__all__ = ["Projector", "ParallelBeam2D", "FanBeam2D", "ConeBeam3D", "ParallelBeam3D", "DETECTOR_SHAPES",
           "LINE_INTEGRALS"]

#: Detector shapes of fan beam: ``flat`` (equispaced) and ``arc`` (equiangular, centred on the source).
DETECTOR_SHAPES = ("flat", "arc")

#: Discretisations of the 2-D line integral: ``joseph`` (one linear interpolation per row or column
#: crossed, applied as a cached sparse matrix: the fast default) and ``sampled`` (matrix-free,
#: bilinear samples every ``ray_step`` mm along the ray; reproduces ``skimage.transform.radon``).
LINE_INTEGRALS = ("joseph", "sampled")


def _line_integral(line_integral: str, ray_step: float | None) -> str:
    if line_integral not in LINE_INTEGRALS:
        raise ValueError(f"line_integral must be one of {', '.join(LINE_INTEGRALS)}; got {line_integral!r}")
    if ray_step is not None and line_integral == "joseph":
        raise ValueError("ray_step sets the sampled line integral's step; pass line_integral='sampled' with it")
    return line_integral


class Projector(nn.Module):
    """Base class: a linear projector ``A`` with exact adjoint, batched over leading dimensions.

    Subclasses set ``volume_shape``, ``det_shape``, ``spacing`` and implement :meth:`rays`.
    """

    ndim = 2
    parallel = False

    def _setup(self, volume_shape: Sequence[int], spacing: Any, angles: Any, det_shape: Sequence[int],
               centre: str, ray_step: float | None, radius_voxels: float | None = None,
               volume_offset: Any = None) -> None:
        self.volume_shape = shape_tuple(volume_shape, self.ndim, "volume_shape")
        self.spacing = spacing_tuple(spacing, self.ndim, "voxel_size")
        self.det_shape = tuple(int(d) for d in det_shape)
        angle_values = angles_array(angles)
        self.register_buffer("angles", torch.from_numpy(angle_values.copy()), persistent=False)
        # voxel index of the world origin, per array axis
        self.centre_index = tuple(float(n // 2) if centre == "floor" else (n - 1) / 2.0 for n in self.volume_shape)
        step = min(self.spacing) if ray_step is None else positive(ray_step, "ray_step")
        self.step = float(step)
        if radius_voxels is None:
            extent = [max(c + 1.5, n - c + 0.5) * s for c, n, s in zip(self.centre_index, self.volume_shape,
                                                                     self.spacing)]
            self.radius = float(math.sqrt(sum(e * e for e in extent)))
        else:
            self.radius = float((radius_voxels + 1.5) * min(self.spacing))
        self.half_samples = int(math.ceil(self.radius / self.step))
        # world -> grid_sample's normalised coordinates, in (x, y[, z]) order: a + b * world
        sizes = self.volume_shape[::-1]
        signs = (1.0, -1.0, 1.0)[: self.ndim]
        centres = self.centre_index[::-1]
        spacings = self.spacing[::-1]
        self._norm_a = [(2.0 * c + 1.0) / n - 1.0 for c, n in zip(centres, sizes)]
        self._norm_b = [sg * 2.0 / (n * s) for sg, n, s in zip(signs, sizes, spacings)]
        # A volume centred at world point c (x, y[, z] mm) instead of the rotation axis.
        offset = np.zeros(self.ndim) if volume_offset is None else np.broadcast_to(
            np.asarray(volume_offset, dtype=np.float64), (self.ndim,))
        self.volume_offset = tuple(float(v) for v in offset)
        self._norm_a = [a - b * c for a, b, c in zip(self._norm_a, self._norm_b, self.volume_offset)]
        if any(self.volume_offset):
            self.radius += float(np.linalg.norm(offset))

    # ------------------------------------------------------------------ description
    @property
    def n_views(self) -> int:
        return int(self.angles.numel())

    @property
    def n_samples(self) -> int:
        """Samples along every ray (odd; step :attr:`step` mm)."""
        return 2 * self.half_samples + 1

    @property
    def samples_per_view(self) -> int:
        return math.prod(self.det_shape) * self.n_samples

    @property
    def projection_shape(self) -> tuple[int, ...]:
        return (self.n_views, *self.det_shape)

    def rays(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """``(origins, directions)`` of views ``start:stop``, float64 ``(V, *det_shape, ndim)`` world mm.

        ``origins`` is each ray's point closest to the rotation centre, ``directions`` unit vectors.
        """
        raise NotImplementedError

    def sample_grid(self, start: int, stop: int, dtype: torch.dtype, device: Any) -> tuple[torch.Tensor, float]:
        """The normalised sampling grid of views ``start:stop`` for ``grid_sample``, and the step in mm."""
        origins, directions = self.rays(start, stop)
        a = torch.tensor(self._norm_a, dtype=torch.float64)
        b = torch.tensor(self._norm_b, dtype=torch.float64)
        o = (a + b * origins).to(device=device, dtype=dtype)
        d = (b * directions * self.step).to(device=device, dtype=dtype)
        k = torch.arange(-self.half_samples, self.half_samples + 1, device=device, dtype=dtype)
        grid = o.unsqueeze(-2) + k.view(-1, 1) * d.unsqueeze(-2)  # (V, *det, K, ndim)
        if self.ndim == 2:
            grid = grid.reshape(1, -1, self.n_samples, 2)
        else:
            grid = grid.reshape(1, -1, self.det_shape[-1], self.n_samples, 3)
        return grid, self.step

    def world_coordinates(self, dtype: torch.dtype = torch.float64, device: Any = None) -> tuple[torch.Tensor, ...]:
        """World coordinates (x, y[, z]) in mm of every voxel centre, each shaped like the volume."""
        axes = [(torch.arange(n, dtype=dtype, device=device) - c) * s
                for n, c, s in zip(self.volume_shape, self.centre_index, self.spacing)]
        mesh = torch.meshgrid(*axes, indexing="ij")
        off = self.volume_offset
        if self.ndim == 2:
            return mesh[1] + off[0], -mesh[0] + off[1]
        return mesh[2] + off[0], -mesh[1] + off[1], mesh[0] + off[2]

    # ------------------------------------------------------------------ operators
    def _check(self, value: torch.Tensor, trailing: tuple[int, ...], name: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__} (wrap it with torch.as_tensor)")
        if not value.is_floating_point():
            value = value.to(torch.get_default_dtype())
        if value.ndim < len(trailing) or tuple(value.shape[-len(trailing):]) != trailing:
            raise ValueError(f"{name} must have shape (..., {', '.join(map(str, trailing))}); got "
                             f"{tuple(value.shape)}")
        return value

    def _prepare_volume(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Line integrals (value × mm) of ``x`` ``(..., *volume_shape)``: ``(..., n_views, *det_shape)``."""
        x = self._check(x, self.volume_shape, "volume")
        lead = x.shape[: x.ndim - self.ndim]
        flat = self._prepare_volume(x.reshape(-1, *self.volume_shape).contiguous())
        return _core.project(flat, self).reshape(*lead, *self.projection_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The exact adjoint ``A^T y`` of :meth:`forward`: ``(..., *projection_shape)`` -> ``(..., *volume_shape)``."""
        y = self._check(y, self.projection_shape, "projections")
        lead = y.shape[: y.ndim - len(self.projection_shape)]
        out = _core.backproject(y.reshape(-1, *self.projection_shape).contiguous(), self)
        return self._prepare_volume(out).reshape(*lead, *self.volume_shape)

    backprojection = adjoint

    def fbp(self, projections: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        """Analytic reconstruction (FBP / FDK), see :mod:`reconstruct.projectors.fbp`."""
        from .fbp import analytic_reconstruction

        projections = self._check(projections, self.projection_shape, "projections")
        return analytic_reconstruction(self, projections, filter_name)

    def with_views(self, index: Any) -> Projector:
        """The same geometry restricted to the views ``index`` (for ordered subsets)."""
        clone = self.__new__(type(self))
        nn.Module.__init__(clone)
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("_buffers", "_modules",
                                                                                   "_parameters")})
        clone._buffers = {k: v for k, v in self._buffers.items() if k != "angles"}
        clone._modules = {}
        clone._parameters = {}
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        clone.register_buffer("angles", self.angles[idx].clone(), persistent=False)
        if hasattr(self, "_z_shift"):
            clone._z_shift = self._z_shift[idx.numpy()]
        return clone

    def extra_repr(self) -> str:
        return (f"volume_shape={self.volume_shape}, voxel_size={self.spacing}, n_views={self.n_views}, "
                f"det_shape={self.det_shape}")

    def _trig(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.angles[start:stop].detach().to("cpu", torch.float64)
        return torch.cos(theta), torch.sin(theta)


class ParallelBeam2D(Projector):
    """2-D parallel beam (scikit-image's geometry, in mm).

    Args:
        volume_shape: ``(H, W)`` of the image.
        angles: projection angles in radians.
        det_count: detector bins (default: ``max(H, W)``).
        det_spacing: bin width in mm.
        voxel_size: ``(sy, sx)`` mm (a number: isotropic).
        det_offset: shift of the detector centre along ``e_t`` in mm.
        clip_to_circle: project only the disc of radius ``min(H, W) // 2`` voxels (torch-radon's
            ``clip_to_circle``; scikit-image's ``circle=True``); else rays cross the whole square.
        ray_step: sampling step along the rays in mm for ``line_integral="sampled"`` (default: the
            smallest voxel size, which with unit voxels reproduces ``skimage.transform.radon``).
        volume_offset: world point (x, y mm) of the volume's centre instead of the rotation axis.
        line_integral: ``"joseph"`` (default, sparse matrix) or ``"sampled"``, see :data:`LINE_INTEGRALS`.
    """

    parallel = True

    def __init__(self, volume_shape: Sequence[int], angles: Any, det_count: int | None = None,
                 det_spacing: float = 1.0, voxel_size: Any = 1.0, det_offset: float = 0.0,
                 clip_to_circle: bool = False, ray_step: float | None = None, volume_offset: Any = None,
                 line_integral: str = "joseph") -> None:
        super().__init__()
        self.line_integral = _line_integral(line_integral, ray_step)
        shape = shape_tuple(volume_shape, 2, "volume_shape")
        n_det = max(shape) if det_count is None else positive_int(det_count, "det_count")
        self.det_spacing = positive(det_spacing, "det_spacing")
        self.det_offset = float(det_offset)
        self.clip_to_circle = bool(clip_to_circle)
        radius = min(shape) // 2 if self.clip_to_circle else None
        self._setup(shape, voxel_size, angles, (n_det,), "floor", ray_step, radius, volume_offset)
        self.det_count = n_det
        if self.clip_to_circle:
            self.register_buffer("circle_mask", self.inscribed_circle(), persistent=False)

    def inscribed_circle(self) -> torch.Tensor:
        """Voxels inside the inscribed circle (radius ``min(H, W) // 2`` voxels), as scikit-image."""
        h, w = self.volume_shape
        r, c = np.ogrid[:h, :w]
        inside = (r - h // 2) ** 2 + (c - w // 2) ** 2 <= (min(h, w) // 2) ** 2
        return torch.from_numpy(inside)

    def _prepare_volume(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip_to_circle:
            return x * self.circle_mask.to(device=x.device, dtype=x.dtype)
        return x

    def detector_positions(self) -> torch.Tensor:
        """Detector bin centres along ``e_t`` in mm (float64)."""
        j = torch.arange(self.det_count, dtype=torch.float64)
        return (j - self.det_count // 2) * self.det_spacing + self.det_offset

    def rays(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self._trig(start, stop)
        u = self.detector_positions().view(1, -1)
        e_t = torch.stack((cos, sin), -1).unsqueeze(1)  # (V, 1, 2)
        e_s = torch.stack((sin, -cos), -1).unsqueeze(1)
        origins = u.unsqueeze(-1) * e_t
        return origins, e_s.expand_as(origins)

    def field_of_view_radius(self) -> float:
        """Radius (mm) of the disc every view sees whole."""
        u = self.detector_positions()
        return float(min(abs(u[0]), abs(u[-1])) + 0.5 * self.det_spacing)


class FanBeam2D(Projector):
    """2-D fan beam, flat (equispaced) or arc (equiangular) detector, distances in mm.

    Args:
        volume_shape: ``(H, W)``.
        angles: source angles in radians (see the module conventions).
        det_count: detector elements.
        source_distance: source to rotation centre (isocentre), mm.
        source_detector_distance: source to detector centre, mm.
        det_spacing: element pitch in mm (arc detector: arc length on the circle of radius
            ``source_detector_distance``).
        voxel_size: ``(sy, sx)`` mm.
        det_offset: shift of the detector centre along ``e_t`` in mm.
        detector: ``"flat"`` or ``"arc"``.
        ray_step: sampling step along the rays in mm for ``line_integral="sampled"`` (default half the
            smallest voxel).
        volume_offset: world point (x, y mm) of the volume's centre instead of the rotation axis.
        line_integral: ``"joseph"`` (default, sparse matrix) or ``"sampled"``, see :data:`LINE_INTEGRALS`.

    Raises:
        ValueError: the source or the detector sits inside the volume's bounding circle.
    """

    def __init__(self, volume_shape: Sequence[int], angles: Any, det_count: int, source_distance: float,
                 source_detector_distance: float, det_spacing: float = 1.0, voxel_size: Any = 1.0,
                 det_offset: float = 0.0, detector: str = "flat", ray_step: float | None = None,
                 volume_offset: Any = None, line_integral: str = "joseph") -> None:
        super().__init__()
        self.line_integral = _line_integral(line_integral, ray_step)
        if detector not in DETECTOR_SHAPES:
            raise ValueError(f"detector must be one of {', '.join(DETECTOR_SHAPES)}; got {detector!r}")
        shape = shape_tuple(volume_shape, 2, "volume_shape")
        spacing = spacing_tuple(voxel_size, 2, "voxel_size")
        self._setup(shape, spacing, angles, (positive_int(det_count, "det_count"),), "middle",
                    0.5 * min(spacing) if ray_step is None else ray_step, volume_offset=volume_offset)
        self.det_count = self.det_shape[0]
        self.source_distance = positive(source_distance, "source_distance")
        self.source_detector_distance = positive(source_detector_distance, "source_detector_distance")
        self.det_spacing = positive(det_spacing, "det_spacing")
        self.det_offset = float(det_offset)
        self.detector = detector
        _check_distances(self.radius - 1.5 * min(spacing), self.source_distance, self.source_detector_distance)

    def detector_positions(self) -> torch.Tensor:
        j = torch.arange(self.det_count, dtype=torch.float64)
        return (j - (self.det_count - 1) / 2.0) * self.det_spacing + self.det_offset

    def fan_angles(self) -> torch.Tensor:
        """Angle of each detector element's ray to the central ray (radians, float64)."""
        u = self.detector_positions()
        if self.detector == "arc":
            return u / self.source_detector_distance
        return torch.atan2(u, torch.tensor(self.source_detector_distance, dtype=torch.float64))

    def rays(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self._trig(start, stop)
        gamma = self.fan_angles().view(1, -1, 1)
        e_t = torch.stack((cos, sin), -1).unsqueeze(1)
        e_s = torch.stack((sin, -cos), -1).unsqueeze(1)
        source = -self.source_distance * e_s
        direction = torch.cos(gamma) * e_s + torch.sin(gamma) * e_t
        origins = source - (source * direction).sum(-1, keepdim=True) * direction
        return origins, direction

    def field_of_view_radius(self) -> float:
        gamma = self.fan_angles()
        half = float(min(abs(gamma[0]), abs(gamma[-1])))
        return self.source_distance * math.sin(half)


class ConeBeam3D(Projector):
    """3-D cone beam, flat panel, circular (or helical) source trajectory about the z axis, in mm.

    Args:
        volume_shape: ``(Z, H, W)``.
        angles: source angles in radians.
        det_shape: detector ``(rows, cols)``.
        source_distance, source_detector_distance: mm.
        det_spacing: ``(row, col)`` pitch in mm (a number: square pixels).
        voxel_size: ``(sz, sy, sx)`` mm.
        det_offset: ``(row, col)`` shift of the detector centre in mm.
        pitch: source travel along z per turn in mm (0: circular trajectory).
        ray_step: sampling step in mm (default half the smallest voxel).
    """

    ndim = 3

    def __init__(self, volume_shape: Sequence[int], angles: Any, det_shape: Sequence[int], source_distance: float,
                 source_detector_distance: float, det_spacing: Any = 1.0, voxel_size: Any = 1.0,
                 det_offset: Any = 0.0, pitch: float = 0.0, ray_step: float | None = None,
                 volume_offset: Any = None) -> None:
        super().__init__()
        shape = shape_tuple(volume_shape, 3, "volume_shape")
        spacing = spacing_tuple(voxel_size, 3, "voxel_size")
        det = shape_tuple(det_shape, 2, "det_shape")
        self._setup(shape, spacing, angles, det, "middle", 0.5 * min(spacing) if ray_step is None else ray_step,
                    volume_offset=volume_offset)
        self.source_distance = positive(source_distance, "source_distance")
        self.source_detector_distance = positive(source_detector_distance, "source_detector_distance")
        self.det_spacing = spacing_tuple(det_spacing, 2, "det_spacing")
        offset = np.broadcast_to(np.asarray(det_offset, dtype=np.float64), (2,))
        self.det_offset = (float(offset[0]), float(offset[1]))
        self.pitch = float(pitch)
        self._z_shift = self.pitch * self.angles.numpy() / (2 * math.pi)
        _check_distances(self.radius - 1.5 * min(spacing), self.source_distance, self.source_detector_distance)

    def detector_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v, u)`` row and column coordinates in mm (float64)."""
        rows, cols = self.det_shape
        v = (torch.arange(rows, dtype=torch.float64) - (rows - 1) / 2.0) * self.det_spacing[0] + self.det_offset[0]
        u = (torch.arange(cols, dtype=torch.float64) - (cols - 1) / 2.0) * self.det_spacing[1] + self.det_offset[1]
        return v, u

    def rays(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self._trig(start, stop)
        zero = torch.zeros_like(cos)
        e_t = torch.stack((cos, sin, zero), -1).view(-1, 1, 1, 3)
        e_s = torch.stack((sin, -cos, zero), -1).view(-1, 1, 1, 3)
        e_z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        z0 = torch.as_tensor(np.asarray(self._z_shift[start:stop]), dtype=torch.float64).view(-1, 1, 1, 1)
        source = -self.source_distance * e_s + z0 * e_z
        v, u = self.detector_positions()
        target = (source + self.source_detector_distance * e_s + u.view(1, 1, -1, 1) * e_t
                  + v.view(1, -1, 1, 1) * e_z)
        direction = target - source
        direction = direction / direction.norm(dim=-1, keepdim=True)
        origins = source - (source * direction).sum(-1, keepdim=True) * direction
        return origins, direction

    def field_of_view_radius(self) -> float:
        _, u = self.detector_positions()
        half = float(min(abs(u[0]), abs(u[-1])))
        return self.source_distance * math.sin(math.atan2(half, self.source_detector_distance))


class ParallelBeam3D(nn.Module):
    """A 3-D parallel-beam stack: one :class:`ParallelBeam2D` sinogram per z slice.

    ``forward`` maps ``(..., Z, H, W)`` to ``(..., Z, n_views, det_count)``; ``adjoint`` and ``fbp``
    act slice by slice. Arguments as :class:`ParallelBeam2D` with ``volume_shape = (Z, H, W)`` and
    ``voxel_size = (sz, sy, sx)`` (``sz`` only recorded).
    """

    def __init__(self, volume_shape: Sequence[int], angles: Any, det_count: int | None = None,
                 det_spacing: float = 1.0, voxel_size: Any = 1.0, **kwargs: Any) -> None:
        super().__init__()
        shape = shape_tuple(volume_shape, 3, "volume_shape")
        spacing = spacing_tuple(voxel_size, 3, "voxel_size")
        self.volume_shape = shape
        self.spacing = spacing
        self.slice = ParallelBeam2D(shape[1:], angles, det_count, det_spacing, spacing[1:], **kwargs)
        self.projection_shape = (shape[0], *self.slice.projection_shape)

    @property
    def angles(self) -> torch.Tensor:
        return self.slice.angles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.slice(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.slice.adjoint(y)

    backprojection = adjoint

    def fbp(self, projections: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        return self.slice.fbp(projections, filter_name)


def _check_distances(radius: float, source_distance: float, source_detector_distance: float) -> None:
    if source_distance <= radius:
        raise ValueError(f"source_distance {source_distance:g} mm puts the source inside the volume (its bounding "
                         f"radius is {radius:g} mm); move the source further out or shrink the volume")
    if source_detector_distance - source_distance <= radius:
        raise ValueError(f"source_detector_distance {source_detector_distance:g} mm puts the detector inside the "
                         f"volume (bounding radius {radius:g} mm beyond the isocentre); increase it above "
                         f"{source_distance + radius:g} mm")
