"""Forward operators y = A(f): what a measurement is, given the field f rendered on a grid.

Following deepinv's physics operators, a reconstruction problem is an operator plus a loss; every
task is fitted by the same loop (:func:`reconstruct.fit.fit`).  An operator knows

* ``signal_shape`` / ``channels`` / ``spacing``: the grid the network is evaluated on;
* ``forward(f)``: the measurement predicted from the field ``f`` of shape ``(*signal_shape, C)``;
* ``loss(pred, target)``: the data term (MSE unless stated);
* ``pointwise``: whether ``A`` acts point by point, so random coordinate batches are allowed;
* ``output_transform(f)``: how raw network output becomes the reconstruction (e.g. a sigmoid, or a
  support mask: then ``pointwise_output`` is False and it gets the whole field);
* ``metric_names``: the metrics against a reference, the first one deciding the best iterate;
* ``render_subsamples``: how the reconstruction is rendered on the grid: 1 = the network at each voxel
  centre (fits that see the network only there), ``s > 1`` = each voxel's mean over ``s ** ndim``
  points inside it (fits that sample the network in continuous space, e.g. along rays).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .grid import grid_coordinates

__all__ = [
    "Operator",
    "Identity",
    "Downsample",
    "WarpDownsample",
    "RadonOperator",
    "ProjectorOperator",
    "OccupancyOperator",
    "HIGHER_IS_BETTER",
]

#: Direction of each metric when choosing the best iterate.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "iou": True, "rel_l2": False, "loss": False}


class Operator(nn.Module):
    """Base forward operator.  Subclasses implement :meth:`forward`.

    Args:
        signal_shape: spatial shape of the field the network represents (array order).
        channels: channels of the field.
        spacing: voxel spacing in array order (keeps anisotropic volumes' aspect), or ``None``.
    """

    pointwise = False
    #: ``output_transform`` acts on each value alone (rendering applies it chunk by chunk); False: it
    #: needs the whole field ``(*signal_shape, C)`` (a support mask).
    pointwise_output = True
    metric_names: tuple[str, ...] = ("psnr", "ssim")
    #: Sub-samples per axis of each voxel when the reconstruction is rendered (see the module docstring).
    render_subsamples = 1

    def __init__(self, signal_shape: Sequence[int], channels: int = 1, spacing: Sequence[float] | None = None):
        super().__init__()
        self.signal_shape = tuple(int(s) for s in signal_shape)
        self.channels = int(channels)
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)

    @property
    def num_points(self) -> int:
        return math.prod(self.signal_shape)

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, target)

    def raw(self, f: torch.Tensor) -> torch.Tensor:
        """The measurement as it was taken, before any preconditioning the data term applies.

        Held-out errors are measured here (plain squared error on the data), so a ramp-filtered CT
        data term, which weights the noisiest frequencies most, does not decide when to stop.
        """
        return self(f)

    def output_transform(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def coordinates(self, flat_index: torch.Tensor) -> torch.Tensor:
        """Network input for the grid points ``flat_index``."""
        return grid_coordinates(self.signal_shape, flat_index, self.spacing)

    def training_loss(
        self,
        model: nn.Module,
        measurement: torch.Tensor,
        coords: torch.Tensor | None,
        batch_index: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Data loss for one step; returns ``(loss, field)``, the field only on full-grid steps.

        ``coords`` is the full grid ``(N, ndim)`` for full-batch steps; ``batch_index`` the random
        flat indices of a batch (pointwise operators only).
        """
        if batch_index is not None:
            pred = model(self.coordinates(batch_index))
            target = measurement.reshape(-1, measurement.shape[-1])[batch_index]
            return self.loss(pred, target), None
        f = model(coords).reshape(*self.signal_shape, -1)
        return self.loss(self(f), measurement), f


class Identity(Operator):
    """y = f: image fitting and denoising."""

    pointwise = True

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f


def _pool(f: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool a channel-last field ``(..., *spatial, C)`` by ``factor`` on every spatial axis."""
    ndim = f.ndim - 1
    x = torch.movedim(f, -1, 0).unsqueeze(0)  # (1, C, *spatial)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[ndim]
    return torch.movedim(pool(x, factor).squeeze(0), 0, -1)


def _check_divisible(shape: tuple[int, ...], factor: int) -> None:
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"scale factor must be a positive integer, got {factor!r}")
    bad = [s for s in shape if s % factor]
    if bad:
        raise ValueError(
            f"scale factor {factor} does not divide the high-resolution shape {shape}; "
            "crop the image so every side is a multiple of the factor"
        )


class Downsample(Operator):
    """Single-image super-resolution: y = average-pool(f, factor) on every spatial axis.

    The network is evaluated on the high-resolution grid ``signal_shape``; the loss is taken after
    pooling, so the fitted field is free between the low-resolution samples.
    """

    def __init__(self, signal_shape: Sequence[int], channels: int = 1, factor: int = 4, spacing=None):
        super().__init__(signal_shape, channels, spacing)
        _check_divisible(self.signal_shape, factor)
        self.factor = factor

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return _pool(f, self.factor)


class WarpDownsample(Operator):
    """Multi-image super-resolution: frame k = average-pool(warp_k(f), factor).

    ``warp_k`` samples ``f`` at ``R(θ_k) p + t_k`` for every high-resolution pixel ``p`` (pixel units,
    about the image centre): a rigid rotation by ``rotations[k]`` radians and a shift ``shifts[k] =
    (dy, dx)`` in high-resolution pixels.  Pixels whose source falls outside the image are excluded
    from the loss (``mask``).
    """

    def __init__(
        self,
        signal_shape: Sequence[int],
        channels: int,
        factor: int,
        shifts: Sequence[Sequence[float]],
        rotations: Sequence[float],
    ):
        super().__init__(signal_shape, channels)
        if len(self.signal_shape) != 2:
            raise ValueError(f"multi-image super-resolution needs a 2-D image grid, got {self.signal_shape}")
        _check_divisible(self.signal_shape, factor)
        shifts_t = torch.as_tensor(shifts, dtype=torch.float32)
        rot_t = torch.as_tensor(rotations, dtype=torch.float32).reshape(-1)
        if shifts_t.ndim != 2 or shifts_t.shape[1] != 2 or len(shifts_t) != len(rot_t):
            raise ValueError(
                f"shifts must be (K, 2) and rotations (K,) for K frames, got {tuple(shifts_t.shape)} and "
                f"{tuple(rot_t.shape)}"
            )
        if not (torch.isfinite(shifts_t).all() and torch.isfinite(rot_t).all()):
            raise ValueError("shifts and rotations must be finite numbers")
        self.factor = factor
        h, w = self.signal_shape
        sy, sx = max(h - 1, 1) / 2, max(w - 1, 1) / 2
        c, s = torch.cos(rot_t), torch.sin(rot_t)
        # Rigid motion in pixel units expressed in grid_sample's normalised (x, y) coordinates.
        theta = torch.stack(
            [
                torch.stack([c, -s * sy / sx, shifts_t[:, 1] / sx], -1),
                torch.stack([s * sx / sy, c, shifts_t[:, 0] / sy], -1),
            ],
            dim=1,
        )
        self.register_buffer("theta", theta)
        grid = F.affine_grid(theta, (len(rot_t), 1, h, w), align_corners=True)
        self.register_buffer("sample_grid", grid)
        ones = torch.ones(len(rot_t), 1, h, w)
        valid = F.grid_sample(ones, grid, align_corners=True, padding_mode="zeros")
        # Frames are a batch axis: pool each (C, H, W) frame on its own.
        mask = F.avg_pool2d(valid, factor).permute(0, 2, 3, 1) > 0.999
        self.register_buffer("mask", mask.expand(-1, -1, -1, channels).contiguous())

    @property
    def num_frames(self) -> int:
        return self.theta.shape[0]

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        k = self.num_frames
        x = f.permute(2, 0, 1).unsqueeze(0).expand(k, -1, -1, -1)  # (K, C, H, W)
        warped = F.grid_sample(x, self.sample_grid.to(f.dtype), align_corners=True, padding_mode="zeros")
        return F.avg_pool2d(warped, self.factor).permute(0, 2, 3, 1)  # (K, h, w, C)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        m = self.mask
        return F.mse_loss(pred[m], target[m])


class RadonOperator(Operator):
    """CT: y = Radon(f), a parallel-beam sinogram in angles-first layout ``(n_angles, det_count)``.

    Args:
        resolution: side of the square image grid.
        angles: projection angles in radians.
        det_count: detector bins (default: ``resolution``).
        scale: the measurement is divided by this (sinograms are normalised for the loss's sake).
        clip_to_circle: the object lies in the inscribed disc (scikit-image's ``circle=True``): only
            the disc is projected and the reconstruction (:meth:`output_transform`) is zero outside it.
            Without it the corners, which few rays cross, are free to take any value.
    """

    def __init__(self, resolution: int, angles, det_count: int | None = None, scale: float = 1.0,
                 clip_to_circle: bool = False):
        super().__init__((resolution, resolution), 1)
        from .radon import Radon

        self.radon = Radon(resolution, angles, det_count=det_count, clip_to_circle=clip_to_circle)
        self.scale = float(scale)
        disc = None
        if clip_to_circle:
            offset = torch.arange(resolution) - resolution // 2
            disc = ((offset[:, None] ** 2 + offset[None, :] ** 2) <= (resolution // 2) ** 2)[..., None].float()
        self.register_buffer("support", disc)
        self.pointwise_output = disc is None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.radon.forward(f[..., 0]) / self.scale

    def output_transform(self, f: torch.Tensor) -> torch.Tensor:
        return f if self.support is None else f * self.support.to(f.device, f.dtype)

    def raw(self, f: torch.Tensor) -> torch.Tensor:
        # subclasses that filter the data term (the ramp-preconditioned CT loss) keep the plain projection
        return RadonOperator.forward(self, f)


class OccupancyOperator(Identity):
    """Occupancy volumes: the network predicts logits of inside/outside at every voxel.

    Trained with binary cross-entropy on random voxel batches; the reconstruction is the sigmoid
    of the logits and quality is the IoU at 0.5.
    """

    metric_names = ("iou",)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(pred, target)

    def output_transform(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(f)


class ProjectorOperator(Operator):
    """CT through any 2-D projector of :mod:`reconstruct.projectors` (fan beam, …): ``y = P(f) / scale``.

    The data term can compare filtered projections (``data_filter``, the filter's response to
    ``data_filter_power``), the preconditioned least squares of the parallel-beam task; ``support``
    restricts the object to a mask (the inscribed disc), applied before projecting and to the output.

    Args:
        projector: a 2-D projector with ``volume_shape`` ``(H, W)``, batched over leading dimensions.
        scale: projections are divided by this (the fit's normalisation).
        data_filter: FBP filter name of the data term (None: plain least squares).
        data_filter_power: power of that filter's frequency response.
        support: boolean ``(H, W)`` mask of where the object may be (None: everywhere).
    """

    def __init__(self, projector: nn.Module, scale: float = 1.0, data_filter: str | None = None,
                 data_filter_power: float = 1.0, support: torch.Tensor | None = None) -> None:
        super().__init__(tuple(projector.volume_shape), 1)
        self.projector = projector
        self.scale = float(scale)
        self.data_filter = data_filter
        self.power = float(data_filter_power)
        mask = None if support is None else torch.as_tensor(support).bool()[..., None].float()
        self.register_buffer("support", mask)
        self.pointwise_output = mask is None

    def output_transform(self, f: torch.Tensor) -> torch.Tensor:
        return f if self.support is None else f * self.support.to(f.device, f.dtype)

    def raw(self, f: torch.Tensor) -> torch.Tensor:
        return self.projector(self.output_transform(f)[..., 0]) / self.scale

    def _filter(self, values: torch.Tensor) -> torch.Tensor:
        from .projectors.filters import ramp_filter

        # spacing 0.5: iradon's scale (twice the true ramp), as the parallel-beam data term, so TV weights agree
        return values if self.data_filter is None else ramp_filter(values, 0.5, self.data_filter, power=self.power)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self._filter(self.raw(f))

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, self._filter(target))
