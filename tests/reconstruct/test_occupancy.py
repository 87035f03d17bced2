"""Occupancy volumes: voxelising meshes, fitting a network to a volume, marching cubes and export."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from monai_nets import get_fused_backend, set_fused_backend  # noqa: E402
from reconstruct.app.meshes import export_surface, read_mesh  # noqa: E402
from reconstruct.fit import FitResult  # noqa: E402
from reconstruct.metrics import iou  # noqa: E402
from reconstruct.occupancy import (  # noqa: E402
    VoxelGrid,
    check_occupancy_volume,
    extract_surface,
    voxelize,
)
from reconstruct.tasks import fit_occupancy  # noqa: E402

_REPO = Path(__file__).resolve().parents[2]
# The benchmark data live beside the checkout (../shared) or inside it (shared/), never in git.
_CANDIDATES = [root / "data" / "meshes" / "spot.obj" for root in (_REPO.parent / "shared", _REPO / "shared")]
SPOT = next((p for p in _CANDIDATES if p.is_file()), _CANDIDATES[0])
SPOT_README_OCCUPANCY = 0.262  # data/meshes/README.md: 128³ grid over spot's tight bounding box


@pytest.fixture(autouse=True)
def eager_activation():
    """Run NestNet's fused activation eagerly: compiling it costs tens of seconds, once per process."""
    previous = get_fused_backend()
    set_fused_backend("eager")
    yield
    set_fused_backend(previous)


def torus_volume(n: int = 32, major: float = 0.55, minor: float = 0.25) -> np.ndarray:
    """A solid torus around the z axis (array axis 0) sampled at cell centres of [-1, 1]³."""
    c = (np.arange(n) + 0.5) / n * 2 - 1
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return (np.sqrt(x**2 + y**2) - major) ** 2 + z**2 <= minor**2


def sphere_volume(n: int = 24, radius: float = 0.7) -> np.ndarray:
    c = (np.arange(n) + 0.5) / n * 2 - 1
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return x**2 + y**2 + z**2 <= radius**2


# --------------------------------------------------------------------------- voxelize


def test_voxelize_icosphere_matches_its_volume_fraction(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    path = tmp_path / "sphere.obj"
    mesh.export(path)
    volume, grid = voxelize(read_mesh(path), 32, return_grid=True)
    assert volume.dtype == np.bool_ and volume.shape == (32, 32, 32)
    assert grid == VoxelGrid((32, 32, 32), (0.0625,) * 3, (-1 + 0.03125,) * 3)
    expected = mesh.volume / 8.0  # the polyhedron's volume over its 2×2×2 bounding box
    assert volume.mean() == pytest.approx(expected, rel=0.03)
    # A ball: the centre is inside, the corners outside, and it is symmetric under axis flips.
    assert volume[16, 16, 16] and not volume[0, 0, 0]
    assert np.mean(volume != volume[::-1]) < 0.01


def test_voxelize_box_axis_order_and_padding(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))  # x, y, z
    path = tmp_path / "box.stl"
    box.export(path)
    volume, grid = voxelize(read_mesh(str(path)), 30, padding=2, return_grid=True)
    # Array order is (z, y, x); cubic cells of 3/30 = 0.1, two empty cells on every side.
    assert volume.shape == (34, 24, 14)
    assert grid.spacing == pytest.approx((0.1, 0.1, 0.1))
    assert grid.centres(2)[2] == pytest.approx(-0.45) and grid.centres(0)[2] == pytest.approx(-1.45)
    expected = np.zeros((34, 24, 14), dtype=bool)
    expected[2:32, 2:22, 2:12] = True
    np.testing.assert_array_equal(volume, expected)


def test_voxelize_counts_tile_the_tight_box(tmp_path):
    path = tmp_path / "box.ply"
    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).export(path)
    volume, grid = voxelize(read_mesh(path), (10, 20, 40), return_grid=True)
    assert volume.shape == (10, 20, 40)
    assert grid.spacing == pytest.approx((0.3, 0.1, 0.025))
    low, high = grid.bounds
    assert low == pytest.approx((-1.5, -1.0, -0.5)) and high == pytest.approx((1.5, 1.0, 0.5))
    assert volume.all()  # the box fills its own tight bounding box


def test_voxelize_accepts_meshes_in_memory_and_rejects_bad_input(tmp_path):
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    assert voxelize(mesh, 4, padding=1).sum() == 4**3
    assert voxelize(trimesh.Scene([mesh]), 4, padding=1).sum() == 4**3
    assert voxelize((np.asarray(mesh.vertices), np.asarray(mesh.faces)), 4, padding=1).sum() == 4**3
    path = tmp_path / "box.obj"
    mesh.export(path)
    for as_path in (path, str(path)):
        with pytest.raises(TypeError, match="read_mesh") as info:
            voxelize(as_path, 8)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="vertices"):
        voxelize((np.zeros((4, 2)), np.zeros((1, 3), dtype=int)), 8)
    with pytest.raises(ValueError, match="faces"):
        voxelize((np.asarray(mesh.vertices), np.asarray(mesh.faces) + 100), 8)
    with pytest.raises(ValueError, match="no triangles"):
        voxelize(trimesh.Scene(), 8)
    with pytest.raises(ValueError, match="resolution"):
        voxelize(mesh, 1)
    with pytest.raises(ValueError, match="resolution"):
        voxelize(mesh, (8, 8))
    with pytest.raises(ValueError, match="resolution"):
        voxelize(mesh, (8, 1, 8))
    with pytest.raises(ValueError, match="padding"):
        voxelize(mesh, 8, padding=-1)
    with pytest.raises(TypeError, match="mesh"):
        voxelize(42, 8)


def test_read_mesh_reads_files_and_gives_one_line_errors(tmp_path):
    path = tmp_path / "box.ply"
    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).export(path)
    mesh = read_mesh(path)
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) == 12
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_mesh(tmp_path / "missing.obj")
    bad = tmp_path / "broken.stl"
    bad.write_bytes(b"\x00\x01 not a mesh at all")
    with pytest.raises(ValueError, match="broken.stl") as info:
        read_mesh(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="folder"):
        read_mesh(tmp_path)


def test_voxelize_warns_on_open_mesh():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    opened = trimesh.Trimesh(sphere.vertices, sphere.faces[:-10], process=False)
    with pytest.warns(UserWarning, match="not watertight"):
        volume = voxelize(opened, 16)
    # The three-axis vote keeps the small hole from emptying the ball.
    assert 0.4 < volume.mean() < 0.6


def test_voxelize_spot_occupancy():
    if not SPOT.is_file():
        pytest.skip(f"benchmark mesh not present: {SPOT} (see data/meshes/README.md)")
    spot = read_mesh(SPOT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # watertight once vertices are merged by position: no warning
        volume, grid = voxelize(spot, (32, 32, 32), return_grid=True)
    assert volume.shape == (32, 32, 32)
    assert volume.mean() == pytest.approx(SPOT_README_OCCUPANCY, abs=0.02)
    cubic = voxelize(spot, 32)
    assert max(cubic.shape) == 32 and 0.2 < cubic.mean() < 0.3


# --------------------------------------------------------------------------- fit_occupancy


def test_fit_occupancy_torus_reaches_iou():
    volume = torus_volume(32)
    before = volume.copy()
    result = fit_occupancy(volume, steps=40, batch_size=4096, eval_every=20, device="cpu", seed=0)
    assert isinstance(result, FitResult)
    assert result.output.shape == (32, 32, 32) and result.output.dtype == np.float32
    assert 0.0 <= result.output.min() and result.output.max() <= 1.0
    assert result.metrics["iou"] >= 0.9
    # The reported IoU is the IoU of the returned probability volume against the input at 0.5.
    assert result.metrics["iou"] == pytest.approx(iou(result.output, volume))
    assert result.extras["occupied_fraction"] == pytest.approx(volume.mean())
    np.testing.assert_array_equal(volume, before)  # input untouched
    assert len(result.history) == 40


def test_fit_occupancy_deterministic_and_spacing_aware():
    volume = sphere_volume(12)
    kwargs = dict(steps=4, model_kwargs={"hidden_channels": (16, 16)}, device="cpu", seed=3)
    a = fit_occupancy(volume, **kwargs)
    b = fit_occupancy(volume, **kwargs)
    np.testing.assert_array_equal(a.output, b.output)
    c = fit_occupancy(volume, spacing=(2.0, 1.0, 1.0), **kwargs)
    assert c.extras["spacing"] == (2.0, 1.0, 1.0)
    assert not np.array_equal(a.output, c.output)  # the grid, hence the fit, changed


def test_fit_occupancy_reference_and_full_batch():
    volume = sphere_volume(12)
    other = np.zeros_like(volume)
    other[:6] = True
    result = fit_occupancy(volume, steps=3, model_kwargs={"hidden_channels": (16, 16)}, device="cpu",
                           reference=other, batch_size=None)
    assert result.metrics["iou"] == pytest.approx(iou(result.output, other))
    params = json.loads(json.dumps(result.extras["parameters"]))
    assert params["batch_size"] is None and params["shape"] == [12, 12, 12] and params["lr"] > 0


@pytest.mark.parametrize(
    ("volume", "exc", "message"),
    [
        (np.zeros((8, 8, 8)), ValueError, "no voxels set"),
        (np.ones((8, 8, 8), dtype=bool), ValueError, "all voxels set"),
        (np.full((8, 8, 8), 0.5), ValueError, "binary"),
        (np.where(sphere_volume(8), np.nan, 0.0), ValueError, "NaN"),
        (np.ones((8, 8)), ValueError, "3-D"),
        (np.array([["a"]] * 2, dtype=object).reshape(2, 1, 1), TypeError, "numeric"),
        ([[[0, 1]]], TypeError, "numpy array"),
    ],
)
def test_check_occupancy_volume_errors(volume, exc, message):
    with pytest.raises(exc, match=message):
        check_occupancy_volume(volume)


def test_fit_occupancy_argument_errors():
    volume = sphere_volume(8)
    with pytest.raises(ValueError, match="reference shape"):
        fit_occupancy(volume, reference=sphere_volume(10), steps=1, device="cpu")
    with pytest.raises(ValueError, match="spacing"):
        fit_occupancy(volume, spacing=(1.0, 0.0, 1.0), steps=1, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        fit_occupancy(volume, batch_size=0, steps=1, device="cpu")
    with pytest.raises(ValueError, match="unknown network"):
        fit_occupancy(volume, model="nope", steps=1, device="cpu")
    with pytest.raises(ValueError, match="spatial_dims"):
        fit_occupancy(volume, model_kwargs={"spatial_dims": 2}, steps=1, device="cpu")
    # A torch volume is accepted too (and left on its device untouched).
    t = torch.from_numpy(volume.astype(np.float32))
    result = fit_occupancy(t, steps=1, model_kwargs={"hidden_channels": (8, 8)}, device="cpu")
    assert result.output.shape == (8, 8, 8)


# --------------------------------------------------------------------------- surfaces


def test_extract_and_export_round_trip(tmp_path):
    mesh = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    volume, grid = voxelize(mesh, 30, return_grid=True)  # tight: the box touches every face
    verts, faces = extract_surface(volume, spacing=grid.spacing, origin=grid.origin)
    assert verts.dtype == np.float32 and verts.shape[1] == 3
    assert faces.dtype == np.int64 and faces.shape[1] == 3
    # Outward-facing in the array-order frame: a positive enclosed volume of about 1 × 2 × 3.
    assert trimesh.Trimesh(verts, faces, process=False).volume == pytest.approx(6.0, rel=0.1)
    # Array order (z, y, x): z spans the box's 3 units; closed=True closes the border faces.
    assert verts.min(0) == pytest.approx((-1.5, -1.0, -0.5), abs=0.06)
    assert verts.max(0) == pytest.approx((1.5, 1.0, 0.5), abs=0.06)
    for suffix in (".obj", ".ply", ".stl"):
        path = export_surface(tmp_path / f"surface{suffix}", verts, faces)
        back = trimesh.load(path, process=True, force="mesh")
        assert back.is_watertight
        # Written as (x, y, z), outward facing: positive volume close to the box's 6.
        assert back.bounds[1] == pytest.approx((0.5, 1.0, 1.5), abs=0.06)
        assert back.volume == pytest.approx(6.0, rel=0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["surface.obj", "surface.ply", "surface.stl"]


def test_extract_surface_of_a_fit_result_and_sphere_radius():
    volume = sphere_volume(24, radius=0.7)
    result = fit_occupancy(volume, steps=1, model_kwargs={"hidden_channels": (8, 8)}, device="cpu")
    result.output = volume.astype(np.float32)  # surface of a known field through the FitResult path
    result.extras["spacing"] = (2 / 24,) * 3
    verts, faces = extract_surface(result, origin=(-1 + 1 / 24,) * 3)
    radii = np.linalg.norm(verts, axis=1)
    assert np.abs(radii - 0.7).max() < 2 / 24 + 1e-6
    assert len(faces) > 100


def test_extract_surface_errors():
    volume = sphere_volume(8).astype(np.float32)
    with pytest.raises(ValueError, match="no surface at level"):
        extract_surface(volume, level=1.5)
    with pytest.raises(ValueError, match="no surface at level"):
        extract_surface(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="no surface at level"):
        extract_surface(np.ones((4, 4, 4)), closed=False)
    with pytest.raises(ValueError, match="3-D"):
        extract_surface(volume[0])
    with pytest.raises(ValueError, match="NaN"):
        extract_surface(np.where(volume > 0, np.nan, 0.0))
    with pytest.raises(ValueError, match="spacing"):
        extract_surface(volume, spacing=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="origin"):
        extract_surface(volume, origin=(0.0, 0.0))
    with pytest.raises(TypeError, match="numpy array"):
        extract_surface("volume.npy")


def test_export_surface_refuses_overwrite_and_bad_input(tmp_path):
    verts, faces = extract_surface(sphere_volume(8).astype(np.float32))
    target = tmp_path / "s.obj"
    export_surface(target, verts, faces)
    first = target.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_surface(target, verts[:, ::-1], faces)
    assert target.read_bytes() == first
    export_surface(target, verts * 2, faces, overwrite=True)
    assert target.read_bytes() != first
    with pytest.raises(ValueError, match="use one of"):
        export_surface(tmp_path / "s.xyz", verts, faces)
    with pytest.raises(ValueError, match="faces index"):
        export_surface(tmp_path / "t.obj", verts, faces + len(verts))
    with pytest.raises(ValueError, match="verts"):
        export_surface(tmp_path / "t.obj", verts[:, :2], faces)
    with pytest.raises(ValueError, match="faces"):
        export_surface(tmp_path / "t.obj", verts, faces.astype(np.float64))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_surface(tmp_path / "no" / "t.obj", verts, faces)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.obj"]
    assert math.isfinite(float(np.asarray(trimesh.load(target, force="mesh").volume)))
