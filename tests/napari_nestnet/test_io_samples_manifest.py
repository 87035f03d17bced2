"""Reader/writer round trips, sample data and the npe2 manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reconstruct.io import ImageMeta, read_image, write_image

ROOT = Path(__file__).resolve().parents[2]

# Values exactly representable in float32, so NIfTI (float32 header) must keep them bit for bit.
SPACING = (0.5, 1.25, 2.0)  # x, y, z
ORIGIN = (-10.5, 3.25, 7.0)
# A 90° rotation about z: a proper rotation that NIfTI's quaternion stores exactly.
DIRECTION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def _volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 6, 7)).astype(np.float32)


def test_reader_claims_only_medical_volumes(tmp_path):
    from napari_nestnet._reader import napari_get_reader

    for name in ("a.nii", "a.nii.gz", "a.mha", "a.mhd", "a.NRRD"):
        assert napari_get_reader(str(tmp_path / name)) is not None, name
    for name in ("a.png", "a.tif", "a.npy", "a.gz"):
        assert napari_get_reader(str(tmp_path / name)) is None, name
    assert napari_get_reader([str(tmp_path / "a.nii"), str(tmp_path / "b.png")]) is None


def test_reader_sets_scale_translate_and_keeps_meta(tmp_path):
    from napari_nestnet._reader import napari_get_reader

    path = tmp_path / "vol.nii.gz"
    write_image(path, _volume(), ImageMeta(SPACING, ORIGIN, DIRECTION))
    [(data, kwargs, kind)] = napari_get_reader(str(path))(str(path))
    assert kind == "image" and kwargs["name"] == "vol"
    np.testing.assert_array_equal(data, _volume())
    assert tuple(kwargs["scale"]) == SPACING[::-1]
    assert tuple(kwargs["translate"]) == ORIGIN[::-1]
    # the direction in numpy order: napari shows the volume in world coordinates
    np.testing.assert_array_equal(kwargs["rotate"], np.reshape(DIRECTION, (3, 3))[::-1, ::-1])
    meta = ImageMeta.from_dict(kwargs["metadata"]["image_meta"])
    assert meta.direction == DIRECTION and meta.format == "nifti"
    header = kwargs["metadata"]["header"]  # typed as MONAI's NibabelReader gives them
    assert header["pixdim[1]"] == SPACING[0] and list(header["dim"][:4]) == [3, 7, 6, 5]


def test_reader_opens_integer_masks_as_labels(tmp_path):
    from napari_nestnet._reader import read_volume

    path = tmp_path / "liver_mask.nrrd"
    write_image(path, (_volume() > 0).astype(np.uint8), ImageMeta(SPACING, ORIGIN, DIRECTION))
    [(data, _, kind)] = read_volume(str(path))
    assert kind == "labels" and data.dtype == np.uint8


@pytest.mark.gui
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_nifti_round_trip_through_the_viewer_keeps_geometry_exactly(viewer, tmp_path, suffix):
    src = tmp_path / "in.nii.gz"
    write_image(src, _volume(), ImageMeta(SPACING, ORIGIN, DIRECTION))
    [layer] = viewer.open(str(src), plugin="napari-nestnet")
    assert tuple(layer.scale) == SPACING[::-1] and tuple(layer.translate) == ORIGIN[::-1]
    np.testing.assert_array_equal(layer.rotate, np.reshape(DIRECTION, (3, 3))[::-1, ::-1])

    out = tmp_path / f"out{suffix}"
    written = viewer.layers.save(str(out), selected=False, plugin="napari-nestnet")
    assert [Path(p) for p in written] == [out]
    data, meta = read_image(out)
    np.testing.assert_array_equal(data, _volume())
    assert meta.spacing == SPACING and meta.origin == ORIGIN and meta.direction == DIRECTION


@pytest.mark.gui
def test_writer_uses_scale_and_translate_of_layers_without_metadata(viewer, tmp_path):
    from napari_nestnet._writer import write_labels_layer

    mask = np.zeros((4, 5, 6), dtype=np.uint8)
    mask[1:3, 1:4, 2:5] = 1
    layer = viewer.add_labels(mask, scale=(3.0, 2.0, 0.5), translate=(1.0, -2.0, 4.5))
    data, attributes, _ = layer.as_layer_data_tuple()
    [path] = write_labels_layer(str(tmp_path / "mask.nii.gz"), data, attributes)
    back, meta = read_image(path)
    np.testing.assert_array_equal(back, mask)
    assert meta.spacing == (0.5, 2.0, 3.0) and meta.origin == (4.5, -2.0, 1.0)
    assert meta.direction == tuple(np.eye(3).ravel())


def test_writer_output_is_not_left_half_written_on_error(tmp_path):
    from napari_nestnet._writer import write_image_layer

    with pytest.raises(ValueError):
        write_image_layer(str(tmp_path / "bad.nii.gz"), np.array(["a", "b"]), {})
    assert not list(tmp_path.iterdir())


@pytest.mark.gui
def test_sample_data_loads_with_the_metadata_panels_read(viewer):
    keys = ["ct_sinogram", "noisy_photo", "low_resolution", "multi_frame", "occupancy_volume"]
    for key in keys:
        viewer.open_sample("napari-nestnet", key)
    layers = {layer.name: layer for layer in viewer.layers}

    sino = layers["ct_sinogram"]
    angles = np.asarray(sino.metadata["angles_deg"])
    assert sino.data.shape[1] == angles.size and sino.metadata["layout"] == "skimage"
    phantom = layers["shepp_logan_phantom (ground truth)"]
    assert phantom.data.shape == (sino.data.shape[0],) * 2 and not phantom.visible

    noisy, clean = layers["astronaut_noisy"], layers["astronaut (ground truth)"]
    assert noisy.rgb and noisy.data.shape == clean.data.shape
    assert 0.01 < float(np.abs(noisy.data - clean.data).mean()) < 0.2  # noisy, but the same picture

    lowres = layers["camera_lowres"]
    factor = lowres.metadata["scale"]
    assert lowres.data.shape[0] * factor == layers["camera (ground truth)"].data.shape[0]

    frames = layers["camera_frames"]
    k = frames.data.shape[0]
    assert k > 1 and np.asarray(frames.metadata["shifts"]).shape == (k, 2)
    assert np.asarray(frames.metadata["rotations"]).shape == (k,)
    assert frames.data.shape[1] * frames.metadata["scale"] == layers["camera (ground truth)"].data.shape[0]

    torus = layers["torus_occupancy"]
    assert torus.data.ndim == 3 and set(np.unique(torus.data)) == {0, 1}


def test_manifest_is_valid_per_npe2():
    npe2 = Path(sys.executable).with_name("npe2")
    cmd = [str(npe2)] if npe2.exists() else [sys.executable, "-m", "npe2"]
    proc = subprocess.run([*cmd, "validate", str(ROOT / "napari.yaml")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_manifest_lists_every_panel_and_the_packaged_copy_is_current():
    import importlib.resources

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    writers = {(w.command, tuple(w.layer_types)) for w in manifest.contributions.writers}
    assert {("napari-nestnet.write_image", ("image",)), ("napari-nestnet.write_labels", ("labels",)),
            ("napari-nestnet.write_layers", ("image*", "labels*"))} <= writers
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert {"Fit image", "Denoise", "Super-resolve (single image)", "Super-resolve (multi-frame)",
            "CT reconstruction", "Occupancy volume", "PINN convection", "Learned activations"} <= widgets
    # every command resolves to a real object
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert hasattr(__import__(module, fromlist=[attr]), attr), command.python_name
    packaged = importlib.resources.files("napari_nestnet") / "napari.yaml"
    assert packaged.read_text() == (ROOT / "napari.yaml").read_text(), (
        "napari_nestnet/napari.yaml is stale: run `pip install -e .` (scripts/hatch_build.py copies it)")
