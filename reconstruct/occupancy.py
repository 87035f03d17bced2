"""Occupancy volumes: voxelise a mesh, fit a coordinate network to it, and mesh the fitted surface.

Conventions (the same as napari's and ITK's array order):

* a volume is ``(D, H, W)`` indexed ``[z, y, x]``: axis 0 is the mesh's z, axis 2 its x;
* voxel ``[i, j, k]`` is the cell centred at ``origin + (i, j, k) * spacing`` (both in array order,
  the mesh's units) — see :class:`VoxelGrid`;
* surfaces from :func:`extract_surface` have vertices in that same array order and physical units,
  ready for a napari ``Surface`` layer; :func:`export_surface` turns them back to the mesh's
  ``(x, y, z)`` order when writing a file.

Inside/outside is decided by ray parity with trimesh's embree engine (``embreex``): one ray per
column of voxels along each of the three axes, a voxel is inside where an odd number of surface
hits lie below its centre, and the three axes vote (2 of 3), which absorbs the rare column a ray
miscounts on an edge or a small hole.  trimesh's default ``contains`` is never used (hours and tens
of GB at 128³ without embree).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .fit import FitResult, StepInfo, fit
from .operators import OccupancyOperator

__all__ = [
    "VoxelGrid",
    "voxelize",
    "fit_occupancy",
    "extract_surface",
    "export_surface",
    "check_occupancy_volume",
    "MESH_FORMATS",
    "DEFAULT_STEPS",
    "DEFAULT_BATCH_SIZE",
]

#: File suffixes :func:`export_surface` writes (and trimesh reads).
MESH_FORMATS = (".obj", ".ply", ".stl")
#: Default optimisation steps of :func:`fit_occupancy`.
DEFAULT_STEPS = 500
#: Default random voxels per step; smaller volumes are fitted full-batch.
DEFAULT_BATCH_SIZE = 2**16


@dataclass(frozen=True)
class VoxelGrid:
    """Where a voxelised volume sits in the mesh's space (all tuples in array order ``(z, y, x)``).

    Attributes:
        shape: ``(D, H, W)``.
        spacing: cell size per axis, in the mesh's units.
        origin: centre of voxel ``[0, 0, 0]``.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def centres(self, axis: int) -> np.ndarray:
        """Cell-centre coordinates along array ``axis`` (0 = z, 1 = y, 2 = x)."""
        return self.origin[axis] + self.spacing[axis] * np.arange(self.shape[axis], dtype=np.float64)

    @property
    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(low, high)`` corners of the box the cells tile, array order."""
        low = tuple(o - s / 2 for o, s in zip(self.origin, self.spacing))
        high = tuple(o + (n - 0.5) * s for o, n, s in zip(self.origin, self.shape, self.spacing))
        return low, high


# --------------------------------------------------------------------------- voxelising


def _load_mesh(mesh: Any):
    import trimesh

    if isinstance(mesh, trimesh.Trimesh):
        return _geometry_only(mesh)
    if not isinstance(mesh, (str, os.PathLike)):
        raise TypeError(f"mesh must be a file path or a trimesh.Trimesh, got {type(mesh).__name__}")
    path = Path(mesh).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a mesh file (.obj, .ply, .stl, .off, .glb)")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        # process=True merges duplicate vertices by position: scans with texture seams become watertight.
        loaded = trimesh.load(str(path), process=True, force="mesh")
    except Exception as exc:  # trimesh raises many kinds for bad files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"cannot read {path} as a mesh: {reason[:200]}; check the file is a complete "
                         "triangle mesh (.obj, .ply, .stl, .off, .glb)") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{path} holds no triangles; give a triangle mesh")
    return _geometry_only(loaded)


def _geometry_only(mesh):
    """The mesh's triangles with vertices merged by position alone.

    Loaders keep vertices split along texture (UV) seams, which leaves scans such as spot.obj open
    along the seams; inside/outside only needs the geometry.
    """
    import trimesh

    if len(mesh.faces) == 0:
        raise ValueError("the mesh holds no triangles; give a triangle mesh")
    return trimesh.Trimesh(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces), process=True)


def _grid_for(bounds_xyz: np.ndarray, resolution: int | Sequence[int], padding: int) -> VoxelGrid:
    low = bounds_xyz[0][::-1].astype(np.float64)  # array order (z, y, x)
    high = bounds_xyz[1][::-1].astype(np.float64)
    extent = high - low
    if not np.all(extent > 0):
        flat = "zyx"[int(np.argmin(extent))]
        raise ValueError(f"the mesh is flat along {flat} (zero extent); it encloses no volume to voxelise")
    if isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool):
        if resolution < 2:
            raise ValueError(f"resolution must be >= 2 cells, got {resolution}")
        # Cubic cells: the longest side gets `resolution` cells, the others as many as cover them.
        cell = float(extent.max()) / int(resolution)
        counts = np.maximum(np.ceil(extent / cell - 1e-6), 1).astype(int)
        spacing = np.full(3, cell)
    else:
        try:
            counts = np.array([int(r) for r in resolution])  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise TypeError(
                f"resolution must be an int or three ints (D, H, W), got {resolution!r}"
            ) from None
        if counts.shape != (3,) or np.any(counts < 2):
            raise ValueError(
                f"resolution must be an int >= 2 or three ints >= 2 (D, H, W), got {resolution!r}"
            )
        # Given counts tile the tight box exactly: cells are anisotropic where the box is.
        spacing = extent / counts
    counts = counts + 2 * padding
    centre = (low + high) / 2
    origin = centre - (counts - 1) / 2 * spacing
    return VoxelGrid(tuple(int(c) for c in counts), tuple(float(s) for s in spacing),
                     tuple(float(o) for o in origin))


def _parity_along(intersector, grid: VoxelGrid, axis: int) -> np.ndarray:
    """Inside (odd number of hits below the centre) for every voxel, from rays cast along ``axis``."""
    others = [a for a in range(3) if a != axis]
    cb, cc = grid.centres(others[0]), grid.centres(others[1])
    bb, cc2 = np.meshgrid(cb, cc, indexing="ij")
    n_rays = bb.size
    origins_zyx = np.empty((n_rays, 3))
    origins_zyx[:, others[0]] = bb.ravel()
    origins_zyx[:, others[1]] = cc2.ravel()
    origins_zyx[:, axis] = grid.origin[axis] - grid.spacing[axis]  # outside the box
    directions_zyx = np.zeros((n_rays, 3))
    directions_zyx[:, axis] = 1.0
    locations, index_ray, _ = intersector.intersects_location(
        origins_zyx[:, ::-1].copy(), directions_zyx[:, ::-1].copy(), multiple_hits=True
    )
    n = grid.shape[axis]
    counts = np.zeros((n_rays, n + 1), dtype=np.uint8)
    if len(index_ray):
        hit = locations[:, 2 - axis]  # xyz column of this array axis
        first_above = np.searchsorted(grid.centres(axis), hit, side="right")
        # uint8 wraps at 256, which keeps the parity.
        np.add.at(counts, (index_ray, first_above), 1)
    parity = (np.cumsum(counts[:, :n], axis=1, dtype=np.uint8) & 1).astype(bool)
    parity = parity.reshape(len(cb), len(cc), n)
    # Back to (D, H, W): the ray axis was moved last.
    return np.moveaxis(parity, -1, axis)


def voxelize(
    mesh_path: str | os.PathLike | Any,
    resolution: int | Sequence[int] = 128,
    *,
    padding: int = 0,
    return_grid: bool = False,
) -> np.ndarray | tuple[np.ndarray, VoxelGrid]:
    """Boolean occupancy ``(D, H, W)`` of a closed triangle mesh over its tight bounding box.

    The box maps to the grid as follows.  ``resolution=N`` (int): cubic cells of side
    ``longest extent / N``; the longest axis gets ``N`` cells and every other axis the fewest cells
    that cover it, the cells centred on the box (so the grid may overhang a short side by under
    half a cell).  ``resolution=(D, H, W)``: exactly those counts tiling the tight box, cells
    anisotropic where the box is (the protocol of ``data/meshes/README.md``).  ``padding`` adds that
    many empty cells on every side (a margin of outside space for the fit to see).  Array axes are
    ``(z, y, x)`` of the mesh.

    Args:
        mesh_path: mesh file (anything ``trimesh.load`` reads) or a ``trimesh.Trimesh``.
        resolution: ``N`` or ``(D, H, W)``, each at least 2.
        padding: empty cells added on every side (>= 0).
        return_grid: also return the :class:`VoxelGrid` (spacing and origin, array order).

    Returns:
        The volume, or ``(volume, grid)`` with ``return_grid=True``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, no triangles, a flat mesh, resolution below 2.

    A mesh that is not watertight gets a warning: parity is then undefined near its holes (the
    three-axis vote repairs isolated columns, not large gaps).
    """
    import trimesh

    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer (cells), got {padding!r}")
    mesh = _load_mesh(mesh_path)
    grid = _grid_for(np.asarray(mesh.bounds), resolution, int(padding))
    if not mesh.is_watertight:
        warnings.warn(
            f"mesh is not watertight ({len(mesh.faces)} faces); inside/outside by ray parity may be wrong "
            "near its holes — repair it (e.g. trimesh.repair.fill_holes) for a reliable volume",
            stacklevel=2,
        )
    if not trimesh.ray.has_embree:
        raise RuntimeError("voxelize needs trimesh's embree ray engine: pip install embreex")
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    intersector = RayMeshIntersector(mesh)
    votes = np.zeros(grid.shape, dtype=np.uint8)
    for axis in range(3):
        votes += _parity_along(intersector, grid, axis)
    volume = votes >= 2
    return (volume, grid) if return_grid else volume


# --------------------------------------------------------------------------- fitting


def check_occupancy_volume(volume: np.ndarray | torch.Tensor, name: str = "volume") -> np.ndarray:
    """Validate a binary ``(D, H, W)`` occupancy volume; returns it as float32 0/1 (a new array).

    Raises ``TypeError``/``ValueError`` naming the problem: not 3-D, not numeric, NaN/Inf, values
    other than 0 and 1, no voxel set, every voxel set.
    """
    if isinstance(volume, torch.Tensor):
        arr = volume.detach().cpu().numpy()
    elif isinstance(volume, np.ndarray):
        arr = volume
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(volume).__name__}")
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-D (D, H, W) occupancy volume, got shape {arr.shape}")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be boolean or numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass a non-empty volume")
    if arr.dtype != np.bool_:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or Inf; an occupancy volume holds only 0 and 1")
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0/1 or bool); threshold it first, e.g. volume > 0.5")
    out = arr.astype(np.float32)  # a copy: the input is never modified
    occupied = int(np.count_nonzero(out))
    if occupied == 0:
        raise ValueError(f"{name} has no voxels set; there is no shape to fit")
    if occupied == out.size:
        raise ValueError(
            f"{name} has all voxels set; there is no surface to fit — pad it or crop less tightly"
        )
    return out


def _check_spacing(spacing: Sequence[float] | None, ndim: int = 3) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise TypeError(f"spacing must be {ndim} positive numbers (array order), got {spacing!r}") from None
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be {ndim} positive finite numbers (array order), got {spacing!r}")
    return values


def _default_lr(model: str, task: str) -> float | None:
    """The tasks module's per-model rate when it exists (imported lazily: tasks imports this module)."""
    try:
        from .tasks import default_lr
    except ImportError:
        return None
    try:
        return float(default_lr(model, task))
    except (KeyError, ValueError, TypeError):
        return None


def _build_network(model: str, spatial_dims: int, model_kwargs: Mapping[str, Any] | None, seed: int):
    from monai_nets import get_network

    if not isinstance(model, str):
        raise TypeError(f"model must be a registry name (str), got {type(model).__name__}")
    kwargs = {} if model_kwargs is None else dict(model_kwargs)
    for reserved in ("spatial_dims", "out_channels"):
        if reserved in kwargs:
            raise ValueError(f"model_kwargs must not set {reserved!r}; the task fixes it")
    # Seeded initialisation without disturbing the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_network(model, spatial_dims=spatial_dims, out_channels=1, **kwargs)


def fit_occupancy(
    volume: np.ndarray | torch.Tensor,
    *,
    model: str = "nestnet",
    model_kwargs: Mapping[str, Any] | None = None,
    steps: int | None = DEFAULT_STEPS,
    lr: float | None = None,
    lr_decay: float = 0.1,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = "auto",
    seed: int = 0,
    on_step: Callable[[StepInfo], bool | None] | None = None,
    reference: np.ndarray | torch.Tensor | None = None,
    time_budget_s: float | None = None,
    preview_every: int | None = None,
    spacing: Sequence[float] | None = None,
    eval_every: int | None = None,
) -> FitResult:
    """Fit a coordinate network to a binary occupancy volume (binary cross-entropy on voxel batches).

    The network maps voxel coordinates in [−1, 1] (the physically longest axis spans [−1, 1] when
    ``spacing`` is given, so anisotropic volumes keep their aspect) to an inside/outside logit.

    Args:
        volume: ``(D, H, W)`` bool or 0/1 array (numpy or torch); never modified.
        model: registry name (:func:`monai_nets.available_networks`).
        model_kwargs: constructor arguments of that network.
        steps: Adam steps (``None``: :data:`DEFAULT_STEPS`).
        lr: learning rate (default: the tasks module's per-model rate, else the model's ``recommended_lr``).
        lr_decay: factor the learning rate reaches at the last step.
        batch_size: random voxels per step; volumes with no more voxels than this (or ``None``) are
            fitted full-batch.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: seeds the network's initialisation and the batch draws.
        on_step: progress callback (see :func:`reconstruct.fit.fit`); return False to cancel.
        reference: binary volume the IoU is measured against.  Default: ``volume`` itself — fitting
            a given volume, the IoU says how faithfully the network represents it (the WIRE
            occupancy protocol).
        time_budget_s: stop after this many seconds.
        preview_every: steps between renderings handed to ``on_step``.
        spacing: voxel size in array order (e.g. a :class:`VoxelGrid`'s), for anisotropic volumes.
        eval_every: steps between IoU evaluations, each a rendering of the whole volume (default
            ``steps // 20``; on small batches these renderings can cost more than the training).

    Returns:
        :class:`~reconstruct.fit.FitResult`: ``output`` the occupancy probability ``(D, H, W)``
        float32, ``metrics["iou"]`` at threshold 0.5, ``extras["spacing"]`` (or ``None``),
        ``extras["threshold"]`` (0.5), ``extras["occupied_fraction"]`` of the input,
        ``extras["parameters"]`` (the exact settings, JSON-able).
    """
    target = check_occupancy_volume(volume)
    ref = target if reference is None else check_occupancy_volume(reference, "reference")
    if ref.shape != target.shape:
        raise ValueError(f"reference shape {ref.shape} differs from the volume's {target.shape}")
    spacing_t = _check_spacing(spacing)
    if steps is None:
        steps = DEFAULT_STEPS
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(
                f"batch_size must be a positive integer or None (full batch), got {batch_size!r}"
            )
        batch_size = None if batch_size >= target.size else int(batch_size)
    net = _build_network(model, 3, model_kwargs, seed)
    if lr is None:
        lr = _default_lr(model, "fit_occupancy")
        if lr is None:
            lr = float(getattr(net, "recommended_lr", 1e-3))
    operator = OccupancyOperator(target.shape, 1, spacing_t)
    result = fit(
        net, operator, target[..., None], steps=steps, lr=lr, lr_decay=lr_decay, batch_size=batch_size,
        seed=seed, device=device, on_step=on_step, time_budget_s=time_budget_s, reference=ref,
        preview_every=preview_every, eval_every=eval_every,
    )
    result.output = result.output.astype(np.float32, copy=False)
    result.extras.update(spacing=spacing_t, threshold=0.5, occupied_fraction=float(target.mean()))
    result.extras["parameters"] = {
        "task": "fit_occupancy", "model": model,
        "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in (model_kwargs or {}).items()},
        "steps": steps, "lr": float(lr), "lr_decay": lr_decay, "device": result.device, "seed": seed,
        "time_budget_s": time_budget_s, "batch_size": batch_size, "eval_every": eval_every,
        "spacing": None if spacing_t is None else list(spacing_t), "shape": list(target.shape),
    }
    return result


# --------------------------------------------------------------------------- surfaces


def extract_surface(
    volume_or_probability: np.ndarray | torch.Tensor | FitResult,
    level: float = 0.5,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    *,
    closed: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangle surface of a volume at ``level`` by marching cubes (scikit-image).

    Args:
        volume_or_probability: ``(D, H, W)`` occupancy, probability or any scalar field, or a
            :class:`~reconstruct.fit.FitResult` of :func:`fit_occupancy` (its ``output``, and its
            ``extras["spacing"]`` when ``spacing`` is not given).
        level: iso-value; must lie strictly between the volume's minimum and maximum.
        spacing: voxel size, array order (default 1).
        origin: physical position of voxel ``[0, 0, 0]``'s centre, array order (default 0), e.g. a
            :class:`VoxelGrid`'s, so the surface lands on the original mesh.
        closed: pad the volume by one "outside" voxel (its minimum, or 0 when every voxel is at or
            above ``level``) so shapes touching the border give closed surfaces (coordinates are
            unaffected).

    Returns:
        ``verts`` ``(V, 3)`` float32 in array-order physical coordinates and ``faces`` ``(F, 3)``
        int64, wound to face outwards (towards smaller values) with the array axes read as a
        right-handed frame; :func:`export_surface` keeps them outward when it reorders to x, y, z.
    """
    from skimage.measure import marching_cubes

    if isinstance(volume_or_probability, FitResult):
        if spacing is None:
            spacing = volume_or_probability.extras.get("spacing")
        arr = np.asarray(volume_or_probability.output)
    elif isinstance(volume_or_probability, torch.Tensor):
        arr = volume_or_probability.detach().cpu().numpy()
    elif isinstance(volume_or_probability, np.ndarray):
        arr = volume_or_probability
    else:
        kind = type(volume_or_probability).__name__
        raise TypeError(f"expected a numpy array, torch tensor or FitResult, got {kind}")
    if arr.ndim != 3:
        raise ValueError(f"surface extraction needs a 3-D (D, H, W) volume, got shape {arr.shape}")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"volume must be boolean or real-valued, got dtype {arr.dtype}")
    field_ = arr.astype(np.float32)
    if not np.isfinite(field_).all():
        raise ValueError("volume contains NaN or Inf; replace them before extracting a surface")
    if not (isinstance(level, (int, float, np.floating)) and math.isfinite(level)):
        raise ValueError(f"level must be a finite number, got {level!r}")
    low, high = float(field_.min()), float(field_.max())
    # The border value that closes the surface: "outside" — 0 for occupancy/probability volumes (so a
    # shape filling the whole box is closed half a cell beyond its outer voxel centres).
    border = low if low < level else (0.0 if level > 0 else level - 1.0)
    if not (min(low, border) if closed else low) < level < high:
        raise ValueError(f"no surface at level {level}: the volume's values span [{low:g}, {high:g}]; "
                         "choose a level strictly inside that range")
    spacing_t = _check_spacing(spacing) or (1.0, 1.0, 1.0)
    if origin is None:
        origin_t = np.zeros(3)
    else:
        origin_t = np.asarray(origin, dtype=np.float64)
        if origin_t.shape != (3,) or not np.isfinite(origin_t).all():
            raise ValueError(f"origin must be three finite numbers (array order), got {origin!r}")
    if closed:
        field_ = np.pad(field_, 1, mode="constant", constant_values=border)
    # "ascent": triangles wound so their normals point from larger to smaller values (outwards for an
    # occupancy) with the array-order axes taken as a right-handed frame.
    verts, faces, _, _ = marching_cubes(
        field_, level=float(level), spacing=spacing_t, gradient_direction="ascent", allow_degenerate=False
    )
    if closed:
        verts = verts - np.asarray(spacing_t)
    verts = verts + origin_t
    return verts.astype(np.float32), faces.astype(np.int64)


def export_surface(
    path: str | os.PathLike,
    verts: np.ndarray,
    faces: np.ndarray,
    *,
    overwrite: bool = False,
    array_order: bool = True,
) -> Path:
    """Write a triangle surface to ``.obj``, ``.ply`` or ``.stl`` atomically (temp file + rename).

    Args:
        path: output file; its suffix picks the format.
        verts: ``(V, 3)`` vertex coordinates.
        faces: ``(F, 3)`` vertex indices.
        overwrite: replace an existing file (refused otherwise).
        array_order: ``verts`` are in array order ``(z, y, x)`` as :func:`extract_surface` returns
            them; they are written as ``(x, y, z)`` (and the triangles' winding reversed so normals
            still face out), so the file overlays the mesh that was voxelised.  ``False`` writes
            the coordinates as given.

    Returns:
        The path written.
    """
    import trimesh

    target = Path(path).expanduser()
    suffix = target.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise ValueError(f"cannot write a surface as {suffix or 'a file without suffix'!r}; "
                         f"use one of {', '.join(MESH_FORMATS)}")
    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"verts must be a non-empty (V, 3) array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("verts contain NaN or Inf")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(
            f"faces must be a non-empty (F, 3) integer array, got shape {f.shape} dtype {f.dtype}"
        )
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"faces index vertices outside 0..{len(v) - 1}")
    if target.is_dir():
        raise ValueError(f"{target} is a folder; give a file name ending in {', '.join(MESH_FORMATS)}")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {target.parent} does not exist; create it first")
    if array_order:
        v, f = v[:, ::-1], f[:, ::-1]
    mesh = trimesh.Trimesh(vertices=np.ascontiguousarray(v), faces=np.ascontiguousarray(f), process=False)
    data = mesh.export(file_type=suffix[1:])
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
