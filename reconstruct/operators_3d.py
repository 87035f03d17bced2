"""Forward operators of 3-D CT for the fit loop: a stack of 2-D sinograms, and cone-beam ray batches.

* :class:`SliceStackOperator` — one INR over ``(z, y, x)`` rendered on the whole ``(Z, H, W)`` grid every
  step; every slice is projected by the same 2-D projector (:class:`~reconstruct.projectors.ParallelBeam2D`
  or :class:`~reconstruct.projectors.FanBeam2D`, batched over z). Optionally the data term compares
  ramp-filtered sinograms (the 2-D task's preconditioned least squares).
* :class:`ConeRayOperator` — NAF-style: the "points" of a random-batch fit are detector rows (all their
  rays). For a batch :meth:`ConeRayOperator.coordinates` returns ``samples_per_ray`` points along each ray
  inside the volume's box (stratified: jittered while training, midpoints without gradients), the
  network is queried there and :meth:`ConeRayOperator.integrate` sums them × the step in mm — the same
  line-integral units as :class:`~reconstruct.projectors.ConeBeam3D`. Memory per step is the batch's
  rays × samples, whatever the scan's size.

Coordinates follow :func:`reconstruct.grid.make_grid` with the volume's spacing: a world offset of
``w`` mm from the volume's centre along an array axis is the INR coordinate ``2 w / L`` with ``L`` the
physically longest axis between its outer voxel centres; the projectors' world ``y`` points up (it
decreases with the row), so the row coordinate is ``-2 y / L``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .operators import Operator
from .projectors import ConeBeam3D
from .projectors.filters import ramp_filter

__all__ = ["SliceStackOperator", "ConeRayOperator", "StackProjector", "inr_scale", "default_samples_per_ray",
           "trilinear_field", "CONE_RENDER_SUBSAMPLES"]


#: Sub-samples per axis of a voxel when a cone-beam INR is rendered on the grid (chosen in
#: benchmarks/bench_ct3d.py, see :class:`ConeRayOperator`).
CONE_RENDER_SUBSAMPLES = 2


def default_samples_per_ray(shape: Sequence[int], spacing: Sequence[float]) -> int:
    """Points per ray by default: one per smallest voxel along the volume box's diagonal (at least 2)."""
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
    return max(2, math.ceil(diagonal / min(spacing)))


def inr_scale(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """INR coordinate units per mm: ``2 / L``, ``L`` the longest axis between outer voxel centres (mm)."""
    return 2.0 / max(max(n - 1, 1) * s for n, s in zip(shape, spacing))


class StackProjector(torch.nn.Module):
    """A 2-D projector applied to every z slice, seen as one 3-D operator (for the 3-D TV solver).

    ``volume_shape`` is ``(Z, H, W)`` and ``projection_shape`` ``(Z, n_views, n_det)``; ``forward``,
    ``adjoint`` and ``fbp`` act slice by slice (the 2-D projector batches over leading dimensions).
    """

    def __init__(self, projector: torch.nn.Module, n_slices: int) -> None:
        super().__init__()
        self.projector = projector
        self.volume_shape = (int(n_slices), *projector.volume_shape)
        self.projection_shape = (int(n_slices), *projector.projection_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.projector.adjoint(y)

    def fbp(self, y: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        return self.projector.fbp(y, filter_name)


class SliceStackOperator(Operator):
    """``y = A f`` for a stack of sinograms: the field on ``(Z, H, W)`` projected slice by slice.

    Args:
        projector: a 2-D projector on ``(H, W)`` (batched over z).
        n_slices: ``Z``.
        spacing: ``(sz, sy, sx)`` mm (the INR's grid keeps this aspect, so slices are continuous in z).
        scale: projections are divided by this (the fit's normalisation).
        data_filter: compare ramp-filtered sinograms with this FBP filter (None: plain least squares).
        data_filter_power: the filter's response to this power (0.5: the 2-D task's ramp-weighted term).
    """

    def __init__(self, projector: torch.nn.Module, n_slices: int, spacing: Sequence[float], scale: float = 1.0,
                 data_filter: str | None = None, data_filter_power: float = 1.0) -> None:
        super().__init__((int(n_slices), *projector.volume_shape), 1, spacing)
        self.projector = projector
        self.scale = float(scale)
        self.data_filter = data_filter
        self.power = float(data_filter_power)

    def raw(self, f: torch.Tensor) -> torch.Tensor:
        return self.projector(f[..., 0]) / self.scale

    def _filter(self, values: torch.Tensor) -> torch.Tensor:
        # iradon's scale (twice the true ramp), as the 2-D task's data term: its TV weights mean the same here
        return values if self.data_filter is None else ramp_filter(values, 0.5, self.data_filter, power=self.power)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self._filter(self.raw(f))

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, self._filter(target))


class ConeRayOperator(Operator):
    """Cone-beam detector rows as the points of a random-batch fit (NAF-style ray marching through the INR).

    A point is one detector row of one view: its ``cols`` rays are marched together, so a batch of
    ``B`` points is ``B * cols`` rays (random views × detector rows, every pixel of the row). The fit's
    flat point index ``i`` names a row: the first ``len(views) * rows`` are every row of ``views``
    (view-major), the rest the explicit row ids ``extra`` (``view * rows + row``), e.g. a bounded sample
    of held-out views' rows. :meth:`measurement` lays projections out in that order, ``(points, cols)``.
    Whole rows let the data term compare ramp-filtered rows (``data_filter``, the preconditioned least
    squares of the stacks and of the 2-D task: fine detail converges in tens of steps, not thousands).

    Args:
        geometry: the scan (:class:`~reconstruct.projectors.ConeBeam3D`, circular or helical orbit).
        scale: projections are divided by this (the fit's normalisation).
        views: views whose every row is a point (default: all).
        extra: further single rows, as row ids (default: none).
        samples_per_ray: points per ray inside the box (default :func:`default_samples_per_ray`).
        data_filter: compare rows filtered along the detector with this FBP filter (None: plain MSE).
        seed: seed of the stratified jitter.
        render_subsamples: the reconstruction's voxel is the mean of the network over this many points per
            axis inside it (:attr:`Operator.render_subsamples`; default :data:`CONE_RENDER_SUBSAMPLES`): the
            rays sample the network anywhere along them, so its value at a voxel's centre alone aliases.
    """

    pointwise = True

    def __init__(self, geometry: ConeBeam3D, scale: float = 1.0, views: Sequence[int] | torch.Tensor | None = None,
                 extra: Sequence[int] | torch.Tensor | None = None, samples_per_ray: int | None = None,
                 data_filter: str | None = None, seed: int = 0,
                 render_subsamples: int = CONE_RENDER_SUBSAMPLES) -> None:
        shape, spacing = tuple(geometry.volume_shape), tuple(geometry.spacing)
        super().__init__(shape, 1, spacing)
        if isinstance(render_subsamples, bool) or not isinstance(render_subsamples, int) or render_subsamples < 1:
            raise ValueError(f"render_subsamples must be a positive integer, got {render_subsamples!r}")
        self.render_subsamples = render_subsamples
        if any(geometry.volume_offset):
            raise ValueError("ConeRayOperator needs a volume centred on the rotation axis (volume_offset 0)")
        self.geometry = geometry
        self.scale = float(scale)
        self.data_filter = data_filter
        rows, cols = geometry.det_shape
        self.rows, self.cols = int(rows), int(cols)
        all_views = torch.arange(geometry.n_views)
        self.register_buffer("views", torch.as_tensor(all_views if views is None else views, dtype=torch.long))
        self.register_buffer("extra", torch.as_tensor([] if extra is None else extra, dtype=torch.long).reshape(-1))
        half = [n * s / 2.0 for n, s in zip(shape[::-1], spacing[::-1])]  # box half-extents, world (x, y, z)
        self.register_buffer("half_box", torch.tensor(half, dtype=torch.float64))
        self.samples_per_ray = int(samples_per_ray or default_samples_per_ray(shape, spacing))
        self.k = inr_scale(shape, spacing)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._weights: torch.Tensor | None = None
        cos, sin = torch.cos(geometry.angles.double()), torch.sin(geometry.angles.double())
        zero = torch.zeros_like(cos)
        e_s = torch.stack((sin, -cos, zero), -1)
        z0 = geometry.pitch * geometry.angles.double() / (2 * math.pi)
        source = -geometry.source_distance * e_s + torch.stack((zero, zero, z0), -1)
        self.register_buffer("source", source)
        self.register_buffer("det_centre", source + geometry.source_detector_distance * e_s)
        self.register_buffer("e_u", torch.stack((cos, sin, zero), -1))
        v, u = geometry.detector_positions()
        self.register_buffer("det_v", v)
        self.register_buffer("det_u", u)

    # ------------------------------------------------------------------ layout
    @property
    def num_points(self) -> int:
        return int(self.views.numel()) * self.rows + int(self.extra.numel())

    def row_ids(self, flat_index: torch.Tensor) -> torch.Tensor:
        """Row ids ``view * rows + row`` of the fit's points ``flat_index``."""
        n_full = int(self.views.numel()) * self.rows
        index = flat_index.to(self.views.device, torch.long)
        full = self.views[(index // self.rows).clamp(max=max(int(self.views.numel()) - 1, 0))] * self.rows \
            + index % self.rows
        if self.extra.numel() == 0:
            return full
        return torch.where(index < n_full, full, self.extra[(index - n_full).clamp(min=0, max=self.extra.numel() - 1)])

    def measurement(self, projections: torch.Tensor) -> torch.Tensor:
        """``(n_views, rows, cols)`` projections as the fit's ``(num_points, cols)`` measurement, in point order."""
        by_row = projections.reshape(-1, self.cols)
        full = projections[self.views.to(projections.device)].reshape(-1, self.cols)
        return torch.cat([full, by_row[self.extra.to(projections.device)]])

    def rays(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sources, unit directions)`` in world mm (float64, ``(N, 3)``) of the rays ``ids``.

        A ray id is ``(view * rows + row) * cols + col``; the conventions are
        :mod:`reconstruct.projectors.geometry`'s (detector row 0 is the lowest z).
        """
        per_view = self.rows * self.cols
        view, pixel = ids // per_view, ids % per_view
        row, col = pixel // self.cols, pixel % self.cols
        e_z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=ids.device)
        target = self.det_centre[view] + self.det_u[col, None] * self.e_u[view] + self.det_v[row, None] * e_z
        source = self.source[view]
        direction = target - source
        return source, direction / direction.norm(dim=-1, keepdim=True)

    # ------------------------------------------------------------------ ray marching
    def coordinates(self, flat_index: torch.Tensor) -> torch.Tensor:
        """INR inputs ``(N * cols * samples_per_ray, 3)`` along the rays of the rows ``flat_index``.

        Remembers each sample's step (mm) for :meth:`integrate`; training draws (gradients enabled) are
        jittered within their stratum, evaluations use the strata's midpoints.
        """
        rows = self.row_ids(flat_index)
        ids = (rows[:, None] * self.cols + torch.arange(self.cols, device=rows.device)).reshape(-1)
        source, direction = self.rays(ids)
        with torch.no_grad():
            safe = torch.where(direction.abs() < 1e-12, torch.full_like(direction, 1e-12), direction)
            t1 = (-self.half_box - source) / safe
            t2 = (self.half_box - source) / safe
            near = torch.minimum(t1, t2).amax(-1)
            length = (torch.maximum(t1, t2).amin(-1) - near).clamp(min=0.0)
        s = self.samples_per_ray
        if torch.is_grad_enabled():
            if self._generator.device != near.device:  # draws where the rays are (seeded once per device)
                self._generator = torch.Generator(device=near.device).manual_seed(self.seed)
            jitter = torch.rand((len(near), s), generator=self._generator, dtype=torch.float64, device=near.device)
        else:
            jitter = torch.full((len(near), s), 0.5, dtype=torch.float64, device=near.device)
        t = near[:, None] + (torch.arange(s, device=near.device, dtype=torch.float64) + jitter) / s * length[:, None]
        points = source[:, None, :] + t[..., None] * direction[:, None, :]  # (N * cols, S, 3) world x, y, z
        self._weights = (length / s).to(torch.float32).reshape(len(rows), self.cols, 1).expand(-1, -1, s)
        coords = torch.stack((points[..., 2], -points[..., 1], points[..., 0]), -1) * self.k  # (z, row, col)
        return coords.reshape(-1, 3).to(torch.float32)

    def integrate(self, values: torch.Tensor) -> torch.Tensor:
        """Line integrals ``(N, cols)`` / ``scale`` of network values at the last :meth:`coordinates` samples."""
        if self._weights is None or values.numel() != self._weights.numel():
            raise ValueError("ConeRayOperator.integrate needs the values at the points of its last coordinates() "
                             f"call ({0 if self._weights is None else self._weights.numel()}); got {values.shape[0]}")
        return (values.reshape(self._weights.shape) * self._weights.to(values)).sum(-1) / self.scale

    def project_field(self, f: torch.Tensor) -> torch.Tensor:
        """The whole scan of a field on the grid ``(Z, H, W, 1)`` by :class:`ConeBeam3D`, in point order."""
        return self.measurement(self.geometry(f[..., 0])) / self.scale

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """A field on the grid: :meth:`project_field`; network values at sampled points: :meth:`integrate`."""
        if values.ndim == len(self.signal_shape) + 1 and tuple(values.shape[:-1]) == self.signal_shape:
            return self.project_field(values)
        return self.integrate(values)

    def _filter(self, rows: torch.Tensor) -> torch.Tensor:
        # iradon's scale along the detector row, as the stacks' data term
        return rows if self.data_filter is None else ramp_filter(rows, 0.5, self.data_filter)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self._filter(self.integrate(pred)), self._filter(target))

    def extra_repr(self) -> str:
        return (f"rows={self.num_points}, cols={self.cols}, samples_per_ray={self.samples_per_ray}, "
                f"render_subsamples={self.render_subsamples}")


def trilinear_field(volume: torch.Tensor, spacing: Sequence[float]) -> Any:
    """A network-like module: INR coordinates -> ``volume`` sampled trilinearly (zero outside), as the projectors.

    Used to compare the ray-batch forward with :class:`ConeBeam3D` on the same field.
    """
    return _Trilinear(volume, spacing)


class _Trilinear(torch.nn.Module):
    def __init__(self, volume: torch.Tensor, spacing: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("volume", volume.float()[None, None])
        shape = tuple(volume.shape)
        k = inr_scale(shape, spacing)
        # INR coordinate c (array order) -> grid_sample's normalised (x, y, z): c / k / (n s / 2)
        self.factor = [1.0 / (k * n * s / 2.0) for n, s in zip(shape, spacing)]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        g = torch.stack([coords[..., i] * self.factor[i] for i in (2, 1, 0)], -1).reshape(1, -1, 1, 1, 3)
        out = F.grid_sample(self.volume, g.to(self.volume), mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out.reshape(-1, 1)
