"""Occupancy volumes: voxelise a mesh and mesh a fitted surface (the fit is :func:`reconstruct.tasks.fit_occupancy`).

Conventions (the same as napari's and ITK's array order):

* a volume is ``(D, H, W)`` indexed ``[z, y, x]``: axis 0 is the mesh's z, axis 2 its x;
* voxel ``[i, j, k]`` is the cell centred at ``origin + (i, j, k) * spacing`` (both in array order,
  the mesh's units) — see :class:`VoxelGrid`;
* surfaces from :func:`extract_surface` have vertices in that same array order and physical units,
  ready for a napari ``Surface`` layer; :func:`reconstruct.app.meshes.export_surface` turns them back
  to the mesh's ``(x, y, z)`` order when writing a file.

Meshes are taken in memory only (a ``trimesh.Trimesh``/``Scene`` or ``(vertices, faces)`` arrays):
files are read by :func:`reconstruct.app.meshes.read_mesh` in the application floor.

Inside/outside is decided by ray parity with trimesh's embree engine (``embreex``): one ray per
column of voxels along each of the three axes, a voxel is inside where an odd number of surface
hits lie below its centre, and the three axes vote (2 of 3), which absorbs the rare column a ray
miscounts on an edge or a small hole.  trimesh's default ``contains`` is never used (hours and tens
of GB at 128³ without embree).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .fit import FitResult
from .grid import check_spacing

__all__ = [
    "VoxelGrid",
    "voxelize",
    "extract_surface",
    "check_occupancy_volume",
    "DEFAULT_BATCH_SIZE",
]

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
    """The triangles of an in-memory mesh: a ``trimesh.Trimesh``/``Scene`` or a ``(vertices, faces)`` pair."""
    import trimesh

    if isinstance(mesh, (str, os.PathLike)):
        raise TypeError(f"voxelize takes a mesh in memory, not the path {os.fspath(mesh)!r}; read the file "
                        "with reconstruct.app.meshes.read_mesh first")
    if isinstance(mesh, trimesh.Trimesh):
        return _geometry_only(mesh)
    if isinstance(mesh, trimesh.Scene):
        return _geometry_only(mesh.to_mesh())
    if isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        vertices, faces = (np.asarray(part) for part in mesh)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.dtype.kind not in "iuf":
            raise ValueError(f"mesh vertices must be a (V, 3) array of numbers, got shape {vertices.shape} "
                             f"dtype {vertices.dtype}")
        if not np.isfinite(vertices).all():
            raise ValueError("mesh vertices contain NaN or Inf")
        if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and faces.dtype.kind not in "iu"):
            raise ValueError(f"mesh faces must be an (F, 3) integer array, got shape {faces.shape} "
                             f"dtype {faces.dtype}")
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError(f"mesh faces index vertices outside 0..{len(vertices) - 1}")
        return _geometry_only(trimesh.Trimesh(vertices=vertices, faces=faces, process=False))
    raise TypeError("mesh must be a trimesh.Trimesh, a trimesh.Scene or a (vertices, faces) pair of arrays, "
                    f"got {type(mesh).__name__}")


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
    mesh: Any,
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
        mesh: a ``trimesh.Trimesh`` or ``trimesh.Scene``, or a ``(vertices, faces)`` pair of ``(V, 3)``
            coordinates (x, y, z) and ``(F, 3)`` vertex indices; read a file with
            :func:`reconstruct.app.meshes.read_mesh` first.
        resolution: ``N`` or ``(D, H, W)``, each at least 2.
        padding: empty cells added on every side (>= 0).
        return_grid: also return the :class:`VoxelGrid` (spacing and origin, array order).

    Returns:
        The volume, or ``(volume, grid)`` with ``return_grid=True``.

    Raises:
        TypeError: ``mesh`` is a path or another kind of object.
        ValueError: malformed arrays, no triangles, a flat mesh, resolution below 2.

    A mesh that is not watertight gets a warning: parity is then undefined near its holes (the
    three-axis vote repairs isolated columns, not large gaps).
    """
    import trimesh

    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer (cells), got {padding!r}")
    mesh = _load_mesh(mesh)
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
        right-handed frame; :func:`reconstruct.app.meshes.export_surface` keeps them outward when it
        reorders to x, y, z.
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
    spacing_t = check_spacing(spacing, 3) or (1.0, 1.0, 1.0)
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
