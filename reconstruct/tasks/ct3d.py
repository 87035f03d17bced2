"""3-D CT: one INR for a whole volume, from a stack of 2-D sinograms or from cone-beam projections.

``geometry="parallel"`` / ``"fan"``: the input is a stack ``(Z, n_angles, n_det)`` of sinograms, one per
z slice, fitted jointly by one 3-D INR over ``(z, y, x)`` (so the volume is continuous across slices,
``slice_spacing`` mm apart): every step renders the INR on the ``(Z, H, W)`` grid and projects every
slice (:class:`~reconstruct.operators_3d.SliceStackOperator`). ``slice_model="batched"`` fits the stack as
``Z`` independent 2-D INRs instead, one per slice, trained together as one batched model
(:class:`SliceINRs` over :class:`monai_nets.batched.BatchedNetwork`) by the same loop, operator and data
term, with the in-plane TV of the 2-D task: every copy starts from the initialisation ``ct_reconstruct``
would give its slice and minimises what that task would on it. ``geometry="cone"``: the input is
``(n_views, rows, cols)`` flat-panel projections on a circular orbit (distances in mm), fitted NAF-style
with random ray batches (:class:`~reconstruct.operators_3d.ConeRayOperator`); the volume is rendered
on the grid at the end. ``method`` ``fbp``/``fdk``, ``sirt``, ``sart``, ``cgls``, ``tv`` run the
classical solvers on the same projectors. The output is ``(Z, H, W)`` with ``extras["spacing"]``
``(sz, sy, sx)`` mm and ``extras["origin"]`` (the first voxel's centre, the volume centred on the
rotation axis), so the command line writes it with that geometry.

Measured on a 2-core CPU (tests/reconstruct/test_ct3d.py; 3-D Shepp–Logan 16³, 1 % noise, PSNR over the
phantom's range): parallel stack, 30 views — NestNet 2 × 64, 100 steps: 35.1 dB in 9 s; FBP 26.3, SIRT
35.9, OS-SART 35.7, TV 31.8, CGLS 29.2. Cone beam, 20 views over 360°, 16² panel, the ellipsoids' exact
line integrals — NestNet 2 × 32 with 8 frequencies, lr 0.02, 150 steps of 1,024 rays × 16 samples: 22.7 dB
in 20 s against FDK 20.9. The cone fit's output voxel is the INR's mean over 2³ points inside it
(``render_subsamples``): the rays constrain the INR along lines between the voxel centres, and its value at
the centres alone scored 20.4 dB there (24³, 60 views, 2 × 256: 22.1 at the centres, 25.1 averaged, FDK
24.8; 3³ and 4³ points add 0.06 / 0.12 dB). On the projector's own projections of the rasterised volume
(an inverse crime) the centres score higher (25.8 against 24.2 averaged).
The same 16³ stack as 16 batched 2-D INRs (``slice_model="batched"``, tests/reconstruct/test_ct3d_batched.py):
36.7 dB in 4 s. At 32 slices of 64², 45 views (benchmarks/bench_slice_models.py, NestNet 2 × 256, 100 steps,
one thread): batched 35.9 dB in 182 s, 32 separate ``ct_reconstruct`` fits 35.8 dB in 314 s, one 3-D INR
34.7 dB in 182 s (FBP 26.7).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from monai_nets.batched import BatchedNetwork

from ..fit import FitResult, compute_metrics
from ..grid import axis_extents
from ..operators_3d import (
    CONE_RENDER_SUBSAMPLES,
    ConeRayOperator,
    SliceStackOperator,
    StackProjector,
    default_samples_per_ray,
)
from ..projectors import ConeBeam3D, FanBeam2D, ParallelBeam2D
from ..projectors.solvers import SOLVERS, make_solver
from ..radon import FILTER_NAMES
from ..stopping import estimate_noise_sigma
from .common import as_array, normalisation, stop_plan
from .ct import ANGLE_UNITS, check_angle_unit, held_out_projections, total_variation
from .runner import build_network, run_fit, run_parameters, task_function
from .spec import DataInput, FitSettings, Param, TaskSpec, stop_params

__all__ = ["CT_RECONSTRUCT_3D", "ct_reconstruct_3d", "METHODS_3D", "GEOMETRIES_3D", "SLICE_MODELS",
           "MAX_HELD_OUT_POINTS", "SliceINRs"]

#: Reconstruction methods: the INR fit, the analytic one (``fbp`` and ``fdk`` are the same: FBP for
#: stacks, FDK for the cone) and the iterative solvers.
METHODS_3D = ("inr", "fdk", *SOLVERS)
GEOMETRIES_3D = ("parallel", "fan", "cone")
#: How an INR fit models a sinogram stack: one 3-D INR for the volume, or one 2-D INR per slice.
SLICE_MODELS = ("joint", "batched")
#: Ray samples the held-out error of a cone-beam fit evaluates at most (a random subset of the held-out
#: views' rays, fixed for the run): bounds the memory and time of every held-out check.
MAX_HELD_OUT_POINTS = 1 << 21

_DOORS_NOT_GUI = frozenset({"cli", "batch", "monai", "bench"})

CT_RECONSTRUCT_3D = TaskSpec(
    name="ct_reconstruct_3d", command="ct3d", title="CT reconstruction 3-D",
    summary="3-D CT: one INR for a volume from a sinogram stack (parallel/fan) or cone-beam projections",
    inputs=(DataInput("projections", "(Z, n_angles, n_det) sinogram stack (parallel, fan) or (n_views, rows, cols) "
                                     "cone-beam projections"),
            DataInput("angles", "projection angles (angle_unit: degrees by default), one per projection",
                      per_item=True)),
    params=(
        Param("geometry", str, "parallel", "parallel or fan: a stack of 2-D sinograms, one per z slice; cone: "
              "flat-panel projections on a circular orbit", choices=GEOMETRIES_3D),
        Param("method", str, "inr", "inr fits one network to the volume; fbp/fdk (analytic), sirt, sart, cgls, tv "
              "are the classical solvers on the same projector", choices=METHODS_3D),
        Param("slice_model", str, "joint", "sinogram stacks, inr: joint = one 3-D INR for the volume; batched = one "
              "2-D INR per slice, fitted together in one batched model", choices=SLICE_MODELS),
        Param("angle_unit", str, "degrees", "unit of the angles", choices=ANGLE_UNITS),
        Param("source_distance", float, None, "fan and cone beam: source to rotation centre", low=0.0, low_open=True,
              optional=True, units="mm", gui_high=1e5),
        Param("source_detector_distance", float, None, "fan and cone beam: source to detector centre", low=0.0,
              low_open=True, optional=True, units="mm", gui_high=1e5),
        Param("det_spacing", float, 1.0, "detector element pitch (cone: square pixels)", low=0.0, low_open=True,
              units="mm", gui_high=100.0),
        Param("voxel_size", float, None, "in-plane voxel size (None: parallel the detector pitch, fan/cone the pitch "
              "at the isocentre)", low=0.0, low_open=True, optional=True, units="mm", gui_high=100.0),
        Param("slice_spacing", float, None, "distance between z slices (stacks: between the sinograms; None: the "
              "in-plane voxel size)", low=0.0, low_open=True, optional=True, units="mm", gui_high=100.0),
        Param("output_size", int, None, "in-plane side of the volume (None: the detector count / columns)", low=2,
              optional=True, units="voxels", gui_high=4096),
        Param("output_slices", int, None, "cone beam: slices of the volume (None: the detector rows; stacks have one "
              "per sinogram)", low=1, optional=True, units="voxels", gui_high=4096),
        Param("filter_name", str, "ramp", "filter of the FBP/FDK baseline", choices=FILTER_NAMES, flag="--filter"),
        Param("tv_weight", float, 1e-3, "3-D total-variation weight on the normalised volume (inr on stacks, and "
              "tv; 0 = off)", low=0.0, gui_high=10.0),
        Param("data_filter", str, "ramp", "inr: fit FBP-filtered sinograms (cone: detector rows) with this filter; "
              "None fits the data themselves (plain least squares)", choices=FILTER_NAMES, optional=True),
        # 1, not the 2-D task's 0.5: the joint 3-D fit converges slower with 0.5 (16³ stack, 100 steps:
        # 27.8 dB against 35.1 with 1; FBP 26.3).
        Param("data_filter_power", float, 1.0, "inr on stacks: power of the data filter's response (1 = the FBP "
              "filter; 0.5 = a ramp-weighted term, slower here; cone rows keep 1)", low=0.0, low_open=True,
              gui_high=1.0),
        Param("circle", bool, True, "zero the volume outside the cylinder inscribed in the in-plane grid"),
        Param("batch_size", int, 4096, "cone beam, inr: rays per step (whole detector rows of random views)", low=1,
              gui_high=1_000_000),
        Param("samples_per_ray", int, None, "cone beam, inr: points per ray inside the volume (None: one per voxel "
              "along the volume's diagonal)", low=2, optional=True, gui_high=10_000),
        Param("render_subsamples", int, CONE_RENDER_SUBSAMPLES, "cone beam, inr: each output voxel is the INR's mean "
              "over this many points per axis inside it (1 = its value at the centre, which aliases: the rays "
              "sample the INR anywhere)", low=1, gui_high=8),
        Param("iterations", int, None, "iterations of sirt/sart/cgls/tv (None: the solver's default)", low=1,
              optional=True, gui_high=10000),
        *stop_params(stop="auto", held_out=0.0, what="projections (inr; spread over the arc)", patience=40,
                     sigma_none="estimated from the projections' finest wavelet scale"),
    ),
    metrics=("psnr", "ssim"),
    default_steps=300,
    output_grid="own",
)


@dataclasses.dataclass
class _Scan:
    """A 3-D scan: the projector, the volume's grid and how the data maps onto it."""

    cone: bool
    projector: Any  # a 2-D projector (stacks, batched over z) or ConeBeam3D
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # (sz, sy, sx) mm

    def origin(self) -> tuple[float, float, float]:
        """Centre of the first voxel (z, y, x mm) with the volume centred on the rotation axis."""
        return tuple(-(n - 1) / 2.0 * s for n, s in zip(self.shape, self.spacing))


class SliceINRs(torch.nn.Module):
    """One 2-D INR per z slice, seen by the fit loop as one 3-D coordinate network.

    ``forward`` takes INR coordinates ``(..., 3)`` of the volume's grid (:func:`reconstruct.grid.make_grid`
    with the volume's spacing), finds each point's slice from its ``z``, groups the points by slice and
    evaluates each group with that slice's copy of ``networks`` at its in-plane coordinates rescaled to
    ``[-1, 1]`` (the 2-D task's grid); a chunk touching a few slices evaluates only those copies.

    Args:
        networks: a :class:`~monai_nets.batched.BatchedNetwork` of ``Z`` 2-D networks.
        shape: the volume ``(Z, H, W)``.
        spacing: ``(sz, sy, sx)`` mm, as the operator's (it sets the grid's coordinate extents).
    """

    def __init__(self, networks: BatchedNetwork, shape: Sequence[int], spacing: Sequence[float]) -> None:
        super().__init__()
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3 or networks.spatial_dims != 2 or networks.copies != shape[0]:
            raise ValueError(f"SliceINRs needs {shape[0] if shape else '?'} 2-D networks for a (Z, H, W) volume; got "
                             f"{networks.copies} of {networks.spatial_dims}-D for shape {shape}")
        self.networks = networks
        self.shape = shape
        extents = axis_extents(shape, spacing)
        self.z_extent = float(extents[0])
        self.register_buffer("plane_scale", torch.tensor([1.0 / extents[1], 1.0 / extents[2]]), persistent=False)
        self.recommended_lr = networks.recommended_lr
        self.spatial_dims, self.out_channels = 3, networks.out_channels

    def slice_index(self, z: torch.Tensor) -> torch.Tensor:
        """The slice (0..Z-1) of INR ``z`` coordinates: the nearest grid slice."""
        slices = self.shape[0]
        if slices == 1:
            return torch.zeros(z.shape, dtype=torch.long, device=z.device)
        position = (z + self.z_extent) * ((slices - 1) / (2.0 * self.z_extent))
        return torch.round(position).long().clamp_(0, slices - 1)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if not isinstance(coords, torch.Tensor) or coords.ndim < 1 or coords.shape[-1] != 3:
            raise ValueError(f"SliceINRs: coordinates must be a tensor of shape (..., 3), got "
                             f"{getattr(coords, 'shape', type(coords).__name__)}")
        lead = coords.shape[:-1]
        points = coords.reshape(-1, 3)
        n = points.shape[0]
        slice_of = self.slice_index(points[:, 0])
        plane = points[:, 1:] * self.plane_scale.to(points.dtype)
        order = torch.argsort(slice_of, stable=True)
        present, counts = torch.unique_consecutive(slice_of[order], return_counts=True)
        width = int(counts.max()) if n else 0
        if n and bool((counts == width).all()):  # every slice the same number of points: the whole grid
            values = self.networks(plane[order].reshape(len(present), width, 2), copies=present).reshape(n, -1)
        else:  # pad the groups to one width
            row = torch.repeat_interleave(torch.arange(len(present), device=points.device), counts)
            col = torch.arange(n, device=points.device) - (torch.cumsum(counts, 0) - counts)[row]
            grouped = plane.new_zeros(len(present), max(width, 1), 2)
            grouped[row, col] = plane[order]
            values = self.networks(grouped, copies=present)[row, col]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n, device=order.device)
        return values[inverse].reshape(*lead, -1)

    def num_real_parameters(self) -> int:
        """Trainable parameters of all the slices' networks."""
        return self.networks.num_real_parameters()


def _slice_networks(settings: FitSettings, scan: _Scan) -> tuple[SliceINRs, dict[str, Any]]:
    """``Z`` copies of the 2-D network ``ct_reconstruct`` would build for one slice (same seed, same init)."""
    one, kwargs = build_network(CT_RECONSTRUCT_3D, settings, 2, 1, scan.shape[1:])
    networks = BatchedNetwork([copy.deepcopy(one) for _ in range(scan.shape[0])])
    return SliceINRs(networks, scan.shape, scan.spacing), kwargs


def _check_count(data: np.ndarray, n_angles: int, axis: int, what: str, layout: str) -> None:
    if data.shape[axis] == n_angles:
        return
    others = [a for a in range(3) if a != axis and data.shape[a] == n_angles]
    hint = f"; axis {others[0]} has {n_angles} entries: reorder the array to {layout}" if others else \
        "; give one angle per projection"
    raise ValueError(f"{what} of shape {tuple(data.shape)} holds {data.shape[axis]} projections (axis {axis}) but "
                     f"{n_angles} angles were given{hint}")


def _check_coverage(projector: Any, size: int, voxel: float) -> None:
    """One line when the detector's field of view misses much of the in-plane grid."""
    fov = float(projector.field_of_view_radius())
    radius = size / 2.0 * voxel
    if radius > 1.1 * fov + voxel:
        raise ValueError(f"the detector covers a radius of {fov:.4g} mm at the isocentre but the volume reaches "
                         f"{radius:.4g} mm ({size} voxels of {voxel:.4g} mm); lower voxel_size or output_size")


def _distances(params: dict[str, Any]) -> tuple[float, float]:
    d, dsd = params["source_distance"], params["source_detector_distance"]
    if d is None or dsd is None:
        raise ValueError(f"geometry={params['geometry']!r} needs source_distance and source_detector_distance (mm)")
    return d, dsd


def _scan(data: np.ndarray, angles_rad: np.ndarray, params: dict[str, Any]) -> _Scan:
    ds, n = params["det_spacing"], len(angles_rad)
    if params["geometry"] == "cone":
        _check_count(data, n, 0, "cone-beam projections", "(n_views, rows, cols)")
        _, rows, cols = data.shape
        d, dsd = _distances(params)
        voxel = params["voxel_size"] or ds * d / dsd
        size = params["output_size"] or cols
        sz = params["slice_spacing"] or voxel
        shape = (params["output_slices"] or rows, size, size)
        geom = ConeBeam3D(shape, angles_rad, (rows, cols), d, dsd, ds, (sz, voxel, voxel))
        _check_coverage(geom, size, voxel)
        reach = rows * ds / 2.0 * d / dsd
        if shape[0] * sz / 2.0 > 1.1 * reach + sz:
            raise ValueError(f"the detector's {rows} rows cover {2 * reach:.4g} mm along z at the isocentre but the "
                             f"volume is {shape[0] * sz:.4g} mm high ({shape[0]} slices of {sz:.4g} mm); lower "
                             "slice_spacing or output_slices")
        return _Scan(True, geom, shape, (sz, voxel, voxel))
    if params["output_slices"] is not None and params["output_slices"] != data.shape[0]:
        raise ValueError(f"a sinogram stack gives one slice per sinogram ({data.shape[0]}); output_slices is for "
                         "cone beam (leave it unset)")
    _check_count(data, n, 1, "sinogram stack", "(Z, n_angles, n_det)")
    z, _, n_det = data.shape
    size = params["output_size"] or n_det
    if params["geometry"] == "parallel":
        voxel = params["voxel_size"] or ds
        proj = ParallelBeam2D((size, size), angles_rad, n_det, ds, voxel, clip_to_circle=params["circle"])
    else:
        d, dsd = _distances(params)
        voxel = params["voxel_size"] or ds * d / dsd
        proj = FanBeam2D((size, size), angles_rad, n_det, d, dsd, ds, voxel)
    _check_coverage(proj, size, voxel)
    return _Scan(False, proj, (z, size, size), (params["slice_spacing"] or voxel, voxel, voxel))


def _cylinder(shape: tuple[int, int, int]) -> np.ndarray:
    """Voxels inside the cylinder inscribed in the in-plane grid (iradon's circle, every slice)."""
    size = shape[1]
    offset = np.arange(size) - (size - 1) / 2.0
    disc = offset[:, None] ** 2 + offset[None, :] ** 2 <= (size / 2.0) ** 2
    return np.broadcast_to(disc, shape)


def _metrics(out: np.ndarray, fbp: np.ndarray, ref: np.ndarray | None, extras: dict[str, Any]) -> dict[str, float]:
    if ref is None:
        return {}
    ref_norm = normalisation(ref, "reference", allow_constant=True)
    data_range = ref_norm.scale if ref_norm.method != "constant" else float(np.abs(ref).max() or 1.0)
    ref32 = ref.astype(np.float32)
    extras["fbp_metrics"] = compute_metrics(CT_RECONSTRUCT_3D.metrics, fbp, ref32, data_range)
    extras["metric_data_range"] = data_range
    return compute_metrics(CT_RECONSTRUCT_3D.metrics, out, ref32, data_range)


def _device_dtype(settings: FitSettings) -> tuple[torch.device, torch.dtype]:
    device = torch.device(settings.device)
    return device, (torch.float64 if device.type == "cpu" else torch.float32)


def _solve(scan: _Scan, data: np.ndarray, fbp: np.ndarray, ref: np.ndarray | None, params: dict[str, Any],
           settings: FitSettings, image_scale: float, mask: np.ndarray) -> FitResult:
    """A classical solver on the scan's projector, as a FitResult (no network)."""
    start = time.perf_counter()
    device, dtype = _device_dtype(settings)
    method = "fbp" if params["method"] == "fdk" else params["method"]
    kwargs: dict[str, Any] = {} if params["iterations"] is None else {"iterations": params["iterations"]}
    if method == "fbp":
        output = fbp
    else:
        op = scan.projector if scan.cone or method != "tv" else StackProjector(scan.projector, scan.shape[0])
        if method == "tv":
            scale = float(np.abs(data).max())
            kwargs["weight"] = float(params["tv_weight"]) * data.size * scale ** 2 / (
                2.0 * float(np.prod(scan.shape)) * image_scale)
        y = torch.from_numpy(data).to(device, dtype)
        output = make_solver(method, **kwargs)(op.to(device), y).cpu().numpy()
    output = (output * mask).astype(np.float32)
    extras: dict[str, Any] = {"fbp": fbp}
    metrics = _metrics(output, fbp, ref, extras)
    iterations = 1 if method == "fbp" else int(kwargs.get("iterations", SOLVERS[method]().iterations))
    return FitResult(model=scan.projector, output=output, history=[], metrics=metrics, best=None,
                     seconds=time.perf_counter() - start, steps=iterations, stopped_by="steps", device=str(device),
                     extras={**extras, "solver": kwargs})


def _held_out_rows(held: np.ndarray, rows: int, cols: int, samples: int, seed: int) -> np.ndarray:
    """Row ids of the held-out views' detector rows, a seeded random subset when more than the budget allows."""
    ids = (np.flatnonzero(held)[:, None] * rows + np.arange(rows)[None, :]).reshape(-1)
    cap = max(16, MAX_HELD_OUT_POINTS // (samples * cols))
    if ids.size > cap:
        ids = np.sort(np.random.default_rng(seed).choice(ids, cap, replace=False))
    return ids


def _fit_cone(scan: _Scan, data: np.ndarray, params: dict[str, Any], settings: FitSettings, on_step: Any,
              proj_scale: float, image_scale: float, to_output: Any, fit_ref: Any, data_range: float) -> tuple:
    n_views, rows, cols = data.shape
    fraction = params["held_out"]
    views, extra = np.arange(n_views), None
    if fraction > 0 and params["stop"] in ("auto", "held_out"):
        held = held_out_projections(n_views, fraction)[:, 0]
        views = np.flatnonzero(~held)
        samples = params["samples_per_ray"] or default_samples_per_ray(scan.shape, scan.spacing)
        extra = _held_out_rows(held, rows, cols, samples, settings.seed)
    operator = ConeRayOperator(scan.projector, proj_scale / image_scale, views, extra, params["samples_per_ray"],
                               params["data_filter"], seed=settings.seed, render_subsamples=params["render_subsamples"])
    normalised = (data / proj_scale).astype(np.float32)
    measurement = operator.measurement(torch.from_numpy(normalised)).numpy()
    mask = np.zeros((measurement.shape[0], 1), bool)
    mask[operator.views.numel() * rows:] = True
    network, net_kwargs = build_network(CT_RECONSTRUCT_3D, settings, 3, 1, scan.shape)
    stop = stop_plan(params, scale=proj_scale, mask=lambda _: mask, estimate=lambda: estimate_noise_sigma(normalised))
    batch_rows = max(1, params["batch_size"] // cols)
    result = run_fit(settings, network, operator, measurement, on_step=on_step, to_output=to_output,
                     reference=fit_ref, data_range=data_range, batch_size=batch_rows, stop=stop)
    rays = {"rays_per_step": batch_rows * cols, "detector_rows_per_step": batch_rows,
            "samples_per_ray": operator.samples_per_ray, "held_out_rays": int(mask.sum()) * cols,
            "render_subsamples": operator.render_subsamples}
    return result, net_kwargs, rays


@task_function(CT_RECONSTRUCT_3D)
def ct_reconstruct_3d(projections: Any, angles: Any, *, params: dict[str, Any], fit: FitSettings, on_step: Any,
                      reference: Any) -> FitResult:
    """Reconstruct a CT volume with one INR (or a classical solver) from a sinogram stack or a cone-beam scan.

    Args:
        projections: ``(Z, n_angles, n_det)`` sinograms (geometry parallel or fan; angles on axis 1) or
            ``(n_views, rows, cols)`` cone-beam projections (line integrals, value × mm; detector row 0
            is the lowest z, see :mod:`reconstruct.projectors.geometry`).
        angles: one angle per projection (``angle_unit``; degrees look like radians: a one-line error).
        geometry, method, distances, spacings, sizes: see :data:`CT_RECONSTRUCT_3D` (mm throughout).
        slice_model: sinogram stacks, ``method="inr"``: ``"joint"`` (default) one 3-D INR for the volume;
            ``"batched"`` one 2-D INR per slice (:class:`SliceINRs`), all fitted at once by the same loop
            (one stop rule for all slices; TV in-plane only, the 2-D task's). Cone beam: joint only.
        tv_weight, data_filter: the stack fit's recipe (the 2-D task's: ramp-filtered data term + TV); the
            cone fit is plain least squares on random ray batches (``batch_size`` rays, ``samples_per_ray``).
        stop, held_out, patience, refit, noise_sigma, tau: the ground-truth-free stop; ``held_out`` holds
            out whole projections spread over the arc (cone: the held-out error is measured on at most
            :data:`MAX_HELD_OUT_POINTS` ray samples of them).
        reference: the ground-truth volume ``(Z, H, W)`` for metrics (never used by the fit's choices).
        Others: the common fit settings (see :mod:`reconstruct.tasks`).

    Returns:
        FitResult: ``output`` ``(Z, H, W)`` float32 (attenuation per mm); ``extras["spacing"]`` and
        ``extras["origin"]`` (z, y, x mm), ``extras["fbp"]`` the FBP/FDK volume (and
        ``extras["fbp_metrics"]`` with a reference), ``extras["stop"]`` what the stop rule chose,
        ``extras["parameters"]`` the exact settings.

    Raises:
        ValueError: one line for a projection count that disagrees with the angles, a detector that does
            not cover the volume, a source or detector inside it, missing distances, radian-looking degrees.
    """
    data = as_array(projections, "projections")
    if data.ndim != 3:
        raise ValueError(f"projections must be 3-D ((Z, n_angles, n_det) for a sinogram stack, (n_views, rows, cols) "
                         f"for cone beam); got shape {tuple(data.shape)}; use ct_reconstruct for one 2-D sinogram")
    data = data.astype(np.float64)
    given = np.asarray(angles.detach().cpu() if isinstance(angles, torch.Tensor) else angles,
                       dtype=np.float64).reshape(-1).copy()
    if given.size == 0 or not np.isfinite(given).all():
        raise ValueError("angles must be finite numbers, one per projection")
    angles_rad = check_angle_unit(given, params["angle_unit"])
    normalisation(data.astype(np.float32), "projections", what="reconstruct")  # constant data: one line
    scan = _scan(data, angles_rad, params)
    batched = params["slice_model"] == "batched" and params["method"] == "inr"
    if batched and scan.cone:
        raise ValueError("slice_model='batched' fits one 2-D INR per sinogram of a stack (geometry parallel or "
                         "fan); a cone-beam volume is fitted by one 3-D INR (slice_model='joint')")
    ref = None
    if reference is not None:
        ref = as_array(reference, "reference")
        if ref.shape != scan.shape:
            raise ValueError(f"reference shape {tuple(ref.shape)} differs from the volume's {scan.shape}; pass the "
                             "ground truth on the reconstruction grid")
    device, dtype = _device_dtype(fit)
    with torch.no_grad():
        fbp = scan.projector.to(device).fbp(torch.from_numpy(data).to(device, dtype), params["filter_name"])
    mask = _cylinder(scan.shape) if params["circle"] else np.ones(scan.shape, bool)
    fbp = (fbp.cpu().numpy() * mask).astype(np.float32)
    proj_scale = float(np.abs(data).max())
    image_scale = float(np.percentile(np.abs(fbp), 99.9)) or proj_scale / max(scan.shape)
    extras: dict[str, Any] = {"spacing": scan.spacing, "origin": scan.origin(), "geometry": params["geometry"]}
    record = {**params, "output_shape": list(scan.shape), "angles_deg": np.rad2deg(angles_rad).tolist()}

    if params["method"] != "inr":
        result = _solve(scan, data, fbp, ref, params, fit, image_scale, mask)
        result.extras.update(extras)
        result.extras["parameters"] = {"task": CT_RECONSTRUCT_3D.name, "device": result.device, **record,
                                       "solver": result.extras.pop("solver")}
        return result

    def to_output(values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float32).reshape(scan.shape) * image_scale * mask).astype(np.float32)

    fit_ref, data_range = None, 1.0
    if ref is not None:
        ref_norm = normalisation(ref, "reference", allow_constant=True)
        fit_ref = (ref / image_scale).astype(np.float32)
        data_range = (ref_norm.scale if ref_norm.method != "constant" else image_scale) / image_scale
    if scan.cone:
        result, net_kwargs, rays = _fit_cone(scan, data, params, fit, on_step, proj_scale, image_scale, to_output,
                                             fit_ref, data_range)
        extras["rays"] = rays
    else:
        n_angles = data.shape[1]
        operator = SliceStackOperator(scan.projector, scan.shape[0], scan.spacing, proj_scale / image_scale,
                                      params["data_filter"], params["data_filter_power"])
        measurement = (data / proj_scale).astype(np.float32)
        regularizer = None
        if params["tv_weight"] > 0:
            weight = float(params["tv_weight"])

            def regularizer(field: torch.Tensor) -> torch.Tensor:
                if batched:  # in-plane: the mean of the slices' 2-D TV (a z term would couple the slices)
                    return weight * (torch.diff(field, dim=1).abs().mean() + torch.diff(field, dim=2).abs().mean())
                return weight * total_variation(field)

        if batched:
            network, net_kwargs = _slice_networks(fit, scan)
            extras["slice_networks"] = {"copies": scan.shape[0], "backend": network.networks.backend,
                                        "parameters": network.num_real_parameters()}
        else:
            network, net_kwargs = build_network(CT_RECONSTRUCT_3D, fit, 3, 1, scan.shape)
        stop = stop_plan(params, scale=proj_scale,
                         mask=lambda f: held_out_projections(n_angles, f).reshape(1, n_angles, 1),
                         estimate=lambda: estimate_noise_sigma(measurement))
        result = run_fit(fit, network, operator, measurement, on_step=on_step, to_output=to_output,
                         reference=fit_ref, data_range=data_range, regularizer=regularizer, stop=stop)
    result.extras.update(extras)
    result.extras["fbp"] = fbp
    if ref is not None:  # final and best metrics on the masked volumes, the voxels FBP is scored on
        result.metrics = _metrics(result.output, fbp, ref, result.extras)
        if result.best is not None and result.best.output is not None:
            result.best.metrics = compute_metrics(CT_RECONSTRUCT_3D.metrics, result.best.output,
                                                  ref.astype(np.float32), result.extras["metric_data_range"])
    result.extras["normalisation"] = {"projection_scale": proj_scale, "image_scale": image_scale,
                                      "operator_scale": proj_scale / image_scale}
    result.extras["parameters"] = run_parameters(CT_RECONSTRUCT_3D, fit, net_kwargs, record)
    return result
