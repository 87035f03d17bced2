"""Oriented anisotropic volumes through the reader and writers: world coordinates, no ``plugin=``, several layers.

What napari allows (see ``napari_nestnet/_reader.py``): npe2 has no reader priority, and
``viewer.open(path)`` defaults to napari's built-in reader; *File → Open*, drag and drop and
``viewer.open(path, plugin=None)`` follow napari's ``extension2reader`` preference, which
``prefer_this_reader`` sets (or napari's reader dialog, when there is none).  Saving needs no
preference: napari's built-in writers do not claim these extensions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from reconstruct.io import ImageMeta, read_image, write_image

# napari says so when a rotation mixes the sliced axis into the displayed ones (2-D view of an oblique volume)
pytestmark = pytest.mark.filterwarnings("ignore:Non-orthogonal slicing")

SPACING = (0.5, 1.25, 2.0)  # x, y, z: anisotropic, exactly representable in float32 (NIfTI)
ORIGIN = (-10.5, 3.25, 7.0)
ROT_Z = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # 90° about z: NIfTI's quaternion keeps it exactly
FLIP_X = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # a reflection (determinant -1)


def _oblique() -> tuple[float, ...]:
    """A rotation by 30° about the axis (1, 1, 1)/√3: it mixes every pair of axes."""
    axis = np.ones(3) / math.sqrt(3)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(30)
    return tuple((np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k).ravel())


def _volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)  # (z, y, x)


def _itk_world(path: Path, index_xyz) -> np.ndarray:
    """SimpleITK's physical point of a voxel (x, y, z), the ground truth of a file's geometry."""
    return np.asarray(sitk.ReadImage(str(path)).TransformContinuousIndexToPhysicalPoint([float(i) for i in index_xyz]))


def _napari_image(path: Path):
    from napari.layers import Layer

    from napari_nestnet._reader import read_volume

    [(data, kwargs, kind)] = read_volume(str(path))
    return Layer.create(data, kwargs, kind)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
@pytest.mark.parametrize("direction", [ROT_Z, FLIP_X, _oblique()], ids=["rot90", "reflection", "oblique"])
def test_reader_places_voxels_at_their_world_positions(tmp_path, suffix, direction):
    path = write_image(tmp_path / f"vol{suffix}", _volume(), ImageMeta(SPACING, ORIGIN, direction))
    layer = _napari_image(path)
    for index_zyx in [(0, 0, 0), (4, 5, 6), (1, 2, 3), (2.5, 0.5, 4.0)]:
        world_zyx = np.asarray(layer.data_to_world(index_zyx))
        np.testing.assert_allclose(world_zyx[::-1], _itk_world(path, index_zyx[::-1]), atol=1e-5)
    assert tuple(layer.scale) == pytest.approx(SPACING[::-1]) and tuple(layer.translate) == pytest.approx(ORIGIN[::-1])


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])  # text headers: the oblique rotation to full precision
def test_layer_written_back_keeps_an_oblique_direction(tmp_path, suffix):
    from napari_nestnet._writer import write_image_layer

    src = write_image(tmp_path / "in.mha", _volume(), ImageMeta(SPACING, ORIGIN, _oblique()))
    layer = _napari_image(src)
    data, attributes, _ = layer.as_layer_data_tuple()
    [out] = write_image_layer(str(tmp_path / f"out{suffix}"), data, attributes)
    back, meta = read_image(out)
    np.testing.assert_array_equal(back, _volume())
    np.testing.assert_allclose(meta.direction, _oblique(), atol=1e-12)
    np.testing.assert_allclose(meta.spacing, SPACING, atol=1e-12)
    np.testing.assert_allclose(meta.origin, ORIGIN, atol=1e-12)


def test_writer_takes_the_rotation_the_viewer_shows(tmp_path):
    from napari.layers import Image

    from napari_nestnet._writer import layer_image_meta, write_image_layer

    rotate_zyx = np.asarray(ROT_Z).reshape(3, 3)[::-1, ::-1]
    layer = Image(_volume(), scale=SPACING[::-1], translate=ORIGIN[::-1], rotate=rotate_zyx)  # no metadata
    data, attributes, _ = layer.as_layer_data_tuple()
    [path] = write_image_layer(str(tmp_path / "r.nii.gz"), data, attributes)
    _, meta = read_image(path)
    assert meta.direction == ROT_Z and meta.spacing == SPACING and meta.origin == ORIGIN
    # the same geometry given as napari's affine only (scale 1, no translate): decomposed
    matrix = np.eye(4)
    matrix[:3, :3] = rotate_zyx @ np.diag(SPACING[::-1])
    matrix[:3, 3] = ORIGIN[::-1]
    meta = layer_image_meta(_volume(), Image(_volume(), affine=matrix).as_layer_data_tuple()[1])
    np.testing.assert_allclose(meta.direction, ROT_Z, atol=1e-12)
    np.testing.assert_allclose(meta.spacing, SPACING) and np.testing.assert_allclose(meta.origin, ORIGIN)
    # a sheared layer has no orthonormal direction: refused, with the reason
    sheared = Image(_volume(), shear=[0.3, 0.0, 0.0]).as_layer_data_tuple()[1]
    with pytest.raises(ValueError, match="sheared"):
        write_image_layer(str(tmp_path / "s.nii.gz"), _volume(), sheared)
    assert not (tmp_path / "s.nii.gz").exists()


def test_unrotated_layers_keep_the_stored_direction(tmp_path):
    """A panel's result carries the source's image_meta but shows no rotation: the file gets the direction."""
    from napari_nestnet._writer import layer_image_meta

    stored = ImageMeta(SPACING, ORIGIN, ROT_Z, format="nifti").to_dict()
    meta = layer_image_meta(_volume(), {"scale": SPACING[::-1], "translate": ORIGIN[::-1],
                                        "metadata": {"image_meta": stored}})
    assert meta.direction == ROT_Z and meta.format == "nifti"


def test_prefer_this_reader_sets_only_our_patterns():
    from napari.settings import NapariSettings

    from napari_nestnet._reader import READER_PATTERNS, prefer_this_reader

    settings = NapariSettings(config_path=None)  # in memory: never touches the user's napari settings
    settings.plugins.extension2reader = {"*.tif": "some-plugin", "*.nii.gz": "other-plugin"}
    table = prefer_this_reader(settings)
    assert table == {"*.tif": "some-plugin", **{p: "napari-nestnet" for p in READER_PATTERNS}}
    assert set(READER_PATTERNS) == {"*.nii", "*.nii.gz", "*.mha", "*.mhd", "*.nrrd"}


def test_multi_layer_writer_names_files_per_layer_and_cleans_up_on_failure(tmp_path):
    from napari.layers import Image, Labels

    from napari_nestnet._writer import write_layers

    img = Image(_volume(), name="ct scan", scale=SPACING[::-1], translate=ORIGIN[::-1])
    lab = Labels((_volume() > 0).astype(np.uint8), name="ct scan", scale=SPACING[::-1])
    written = write_layers(str(tmp_path / "study.mha"), [img.as_layer_data_tuple(), lab.as_layer_data_tuple()])
    assert [Path(p).name for p in written] == ["study_ct_scan.mha", "study_ct_scan_2.mha"]
    assert read_image(written[1])[1].spacing == SPACING
    bad = Image(_volume(), name="bad", shear=[0.3, 0.0, 0.0])
    with pytest.raises(ValueError, match="sheared"):
        write_layers(str(tmp_path / "other.nii.gz"), [img.as_layer_data_tuple(), bad.as_layer_data_tuple()])
    assert not list(tmp_path.glob("other_*"))


# --------------------------------------------------------------------------------------------- in the viewer


@pytest.fixture
def prefer_reader():
    """napari's reader preference for our patterns, as ``prefer_this_reader()`` sets it, kept in memory."""
    from napari.settings import get_settings

    from napari_nestnet._reader import prefer_this_reader

    settings = get_settings()
    saving, before = settings._save_on_change, dict(settings.plugins.extension2reader)
    settings._save_on_change = False  # never write the user's napari settings file
    yield lambda: prefer_this_reader(settings)
    settings.plugins.extension2reader = before
    settings._save_on_change = saving


def _assert_geometry(layer, direction):
    assert tuple(layer.scale) == SPACING[::-1] and tuple(layer.translate) == ORIGIN[::-1]
    np.testing.assert_array_equal(layer.rotate, np.asarray(direction).reshape(3, 3)[::-1, ::-1])


@pytest.mark.gui
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_open_and_save_without_naming_the_plugin(viewer, tmp_path, prefer_reader, suffix):
    from napari.errors import MultipleReaderError

    src = write_image(tmp_path / f"scan{suffix}", _volume(), ImageMeta(SPACING, ORIGIN, ROT_Z))
    # no preference yet: napari cannot choose between its built-in reader and ours (the GUI would ask)
    with pytest.raises(MultipleReaderError, match="napari-nestnet"):
        viewer.open(str(src), plugin=None)
    prefer_reader()
    viewer.window._qt_viewer._qt_open([str(src)], stack=False)  # File -> Open, drag and drop
    [layer] = viewer.layers
    _assert_geometry(layer, ROT_Z)
    assert layer.source.reader_plugin == "napari-nestnet"
    [again] = viewer.open(str(src), plugin=None)
    _assert_geometry(again, ROT_Z)

    out = tmp_path / f"out{suffix}"
    viewer.layers.selection = {layer}
    written = viewer.layers.save(str(out), selected=True)  # no plugin: ours is the only writer for it
    assert [Path(p) for p in written] == [out]
    data, meta = read_image(out)
    np.testing.assert_array_equal(data, _volume())
    assert meta.spacing == SPACING and meta.origin == ORIGIN and meta.direction == ROT_Z


@pytest.mark.gui
def test_save_all_layers_writes_one_file_per_layer(viewer, tmp_path):
    src = write_image(tmp_path / "scan.nii.gz", _volume(), ImageMeta(SPACING, ORIGIN, FLIP_X))
    [image] = viewer.open(str(src), plugin="napari-nestnet")
    mask = viewer.add_labels((_volume() > 0).astype(np.uint8), name="mask", scale=image.scale,
                             translate=image.translate, rotate=image.rotate)
    written = viewer.layers.save(str(tmp_path / "study.nii.gz"), selected=False)  # no plugin
    assert [Path(p).name for p in written] == ["study_scan.nii.gz", "study_mask.nii.gz"]
    for path, layer in zip(written, (image, mask)):
        data, meta = read_image(path)
        np.testing.assert_array_equal(data, np.asarray(layer.data))
        assert meta.spacing == SPACING and meta.origin == ORIGIN and meta.direction == FLIP_X
