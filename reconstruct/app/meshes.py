"""Mesh files: reading triangle meshes for :func:`reconstruct.occupancy.voxelize`, writing fitted surfaces.

The science module :mod:`reconstruct.occupancy` works on meshes in memory only; the files are read and
written here, with one-line errors that name the file.

Example::

    volume, grid = voxelize(read_mesh("spot.obj"), 128, return_grid=True)
    verts, faces = extract_surface(fit_occupancy(volume), spacing=grid.spacing, origin=grid.origin)
    export_surface("spot_fit.obj", verts, faces)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..tasks.spec import Param
from .files import PathLike, atomic_write

if TYPE_CHECKING:
    import trimesh

__all__ = ["MESH_FORMATS", "MESH_SUFFIXES", "MESH_OPTIONS", "LEVEL", "read_mesh", "export_surface"]

#: File suffixes :func:`export_surface` writes (and trimesh reads).
MESH_FORMATS = (".obj", ".ply", ".stl")
#: How a mesh input becomes an occupancy volume (``nestnet occupancy`` and ``nestnet batch occupancy``).
MESH_OPTIONS: tuple[Param, ...] = (
    Param("resolution", int, 64, "voxels along the longest side when a mesh is voxelised "
          "(reconstruct.occupancy.voxelize)", low=2, doors=frozenset({"cli", "batch"})),
    Param("padding", int, 1, "empty voxels added around a voxelised mesh (shapes that fill their bounding box "
          "keep an outside)", low=0, doors=frozenset({"cli", "batch"})),
)
#: The iso-level of a fitted surface (``nestnet occupancy --surface``): a probability strictly inside (0, 1).
LEVEL = Param("level", float, 0.5, "iso-level of the surface, a probability strictly between 0 and 1", low=0.0,
              low_open=True, high=1.0, high_open=True, doors=frozenset({"cli"}))
#: Mesh files :func:`read_mesh` reads (and inputs are recognised as meshes by).
MESH_SUFFIXES: tuple[str, ...] = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
# the mesh files named in messages about reading one (trimesh reads more)
_READABLE_HINT = ".obj, .ply, .stl, .off, .glb"


def read_mesh(path: PathLike) -> trimesh.Trimesh:
    """Read a triangle mesh file (anything ``trimesh.load`` reads) into one ``trimesh.Trimesh``.

    Vertices are merged by position (``process=True``), so scans with texture seams become watertight;
    a file holding a scene of several meshes gives them concatenated.

    Args:
        path: the mesh file (``.obj``, ``.ply``, ``.stl``, ``.off``, ``.glb``, ...).

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``path`` is a folder, the file is unreadable, or it holds no triangles.
    """
    import trimesh

    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give a mesh file ({_READABLE_HINT})")
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    try:
        loaded = trimesh.load(str(p), process=True, force="mesh")
    except Exception as exc:  # trimesh raises many kinds for bad files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"cannot read {p} as a mesh: {reason[:200]}; check the file is a complete "
                         f"triangle mesh ({_READABLE_HINT})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{p} holds no triangles; give a triangle mesh")
    return loaded


def export_surface(
    path: PathLike,
    verts: np.ndarray,
    faces: np.ndarray,
    *,
    overwrite: bool = False,
    array_order: bool = True,
) -> Path:
    """Write a triangle surface to ``.obj``, ``.ply`` or ``.stl`` atomically (temp file + rename).

    Args:
        path: output file; its suffix picks the format. Its folder must exist.
        verts: ``(V, 3)`` vertex coordinates.
        faces: ``(F, 3)`` vertex indices.
        overwrite: replace an existing file (refused otherwise).
        array_order: ``verts`` are in array order ``(z, y, x)`` as
            :func:`reconstruct.occupancy.extract_surface` returns them; they are written as
            ``(x, y, z)`` (and the triangles' winding reversed so normals still face out), so the file
            overlays the mesh that was voxelised.  ``False`` writes the coordinates as given.

    Returns:
        The path written.

    Raises:
        ValueError: unknown suffix, malformed ``verts``/``faces``, or ``path`` is a folder.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        FileNotFoundError: the folder of ``path`` does not exist.
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
    # unlike write_image, no folders are created
    if not target.parent.is_dir():
        raise FileNotFoundError(f"folder {target.parent} does not exist; create it first")
    if array_order:
        v, f = v[:, ::-1], f[:, ::-1]
    mesh = trimesh.Trimesh(vertices=np.ascontiguousarray(v), faces=np.ascontiguousarray(f), process=False)
    data = mesh.export(file_type=suffix[1:])
    if isinstance(data, str):
        data = data.encode("utf-8")
    return atomic_write(target, lambda tmp: tmp.write_bytes(data), f"{suffix[1:].upper()} mesh")
