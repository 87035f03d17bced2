"""Tests for reconstruct.io: real files in tmp_path, tiny arrays."""

from __future__ import annotations

import gzip
import json
import os

import imageio.v3 as iio
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from reconstruct.io import (
    CHECKPOINT_FORMAT_VERSION,
    ImageMeta,
    SimpleITKReader,
    atomic_write_text,
    check_output_path,
    image_format,
    load_checkpoint,
    load_model,
    read_image,
    save_checkpoint,
    write_image,
    write_json,
)

RNG = np.random.default_rng(0)


def rotation_direction(theta: float = 0.3) -> tuple[float, ...]:
    c, s = np.cos(theta), np.sin(theta)
    # a rotation about z followed by one about x: no axis stays aligned
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    return tuple((rz @ rx).ravel())


META3 = ImageMeta(spacing=(0.7, 1.3, 2.1), origin=(-10.5, 3.25, 7.1), direction=rotation_direction())


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------ ImageMeta


def test_image_meta_orders_dict_round_trip_and_default():
    assert META3.spacing_zyx == (2.1, 1.3, 0.7)
    assert META3.origin_zyx == (7.1, 3.25, -10.5)
    np.testing.assert_allclose(META3.direction_matrix @ META3.direction_matrix.T, np.eye(3), atol=1e-12)
    meta = ImageMeta(META3.spacing, META3.origin, META3.direction, "nifti", {"dtype": np.dtype("int16"),
                                                                             "n": np.int64(3)})
    d = json.loads(json.dumps(meta.to_dict()))  # must be JSON-able as is
    back = ImageMeta.from_dict(d)
    assert back.spacing == META3.spacing and back.origin == META3.origin and back.direction == META3.direction
    assert back.format == "nifti" and back.extra == {"dtype": "int16", "n": 3}
    default = ImageMeta.default(2)
    assert default.spacing == (1.0, 1.0) and default.origin == (0.0, 0.0)
    assert default.direction == (1.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="direction needs 9"):
        ImageMeta((1, 1, 1), (0, 0, 0), (1, 0, 0, 1))
    with pytest.raises(ValueError, match="positive"):
        ImageMeta((1, 0), (0, 0), (1, 0, 0, 1))


# ---------------------------------------------------------------------------------- medical formats

# tolerances per suffix: MetaImage stores geometry as text at full precision; NRRD stores
# direction*spacing and re-derives both (~1e-16); NIfTI stores float32.
MEDICAL = {".mha": 0.0, ".mhd": 0.0, ".nrrd": 1e-12, ".nhdr": 1e-12, ".nii": 1e-6, ".nii.gz": 1e-6}


@pytest.mark.parametrize("suffix", list(MEDICAL))
def test_medical_round_trip_keeps_data_and_geometry(tmp_path, suffix):
    tol = MEDICAL[suffix]
    data = RNG.random((3, 4, 5)).astype(np.float32)
    path = write_image(tmp_path / f"vol{suffix}", data, META3)
    arr, meta = read_image(path)
    assert arr.shape == (3, 4, 5) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr, data)
    for got, want in ((meta.spacing, META3.spacing), (meta.origin, META3.origin),
                      (meta.direction, META3.direction)):
        if tol == 0:
            assert got == want
        else:
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert meta.format == image_format(path)
    # nothing but the image (and its data file for detached headers) is left in the folder
    expected = {".mhd": ["vol.mhd", "vol.raw"], ".nhdr": ["vol.nhdr", "vol.raw"]}.get(suffix, [path.name])
    assert files_in(tmp_path) == sorted(expected)


def test_medical_dtypes_2d_vector_and_header_keys(tmp_path):
    ints = RNG.integers(-500, 500, (2, 3, 4)).astype(np.int16)
    arr, meta = read_image(write_image(tmp_path / "i.nii.gz", ints))
    assert arr.dtype == np.int16 and meta.extra["dtype"] == "int16"
    np.testing.assert_array_equal(arr, ints)
    assert meta.spacing == (1.0, 1.0, 1.0)

    f64 = RNG.random((2, 3, 4))
    arr, _ = read_image(write_image(tmp_path / "f.mha", f64))
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, f64.astype(np.float32))

    meta2 = ImageMeta((0.5, 0.25), (1.0, -2.0), (0.0, -1.0, 1.0, 0.0))
    img2 = RNG.random((4, 6)).astype(np.float32)
    arr, meta = read_image(write_image(tmp_path / "two.mha", img2, meta2))
    assert arr.shape == (4, 6) and (meta.spacing, meta.origin, meta.direction) == (
        meta2.spacing, meta2.origin, meta2.direction)

    vec = RNG.random((2, 3, 4, 3)).astype(np.float32)  # (z, y, x, C) with 3-D meta: vector pixels
    arr, meta = read_image(write_image(tmp_path / "vec.nrrd", vec, META3))
    np.testing.assert_array_equal(arr, vec)
    assert meta.extra["components"] == 3

    # custom header keys survive a MetaImage -> MetaImage round trip
    keyed = ImageMeta(META3.spacing, META3.origin, META3.direction, "mha", {"metadata": {"Study": "phantom"}})
    _, meta = read_image(write_image(tmp_path / "k.mha", ints, keyed))
    assert meta.extra["metadata"]["Study"] == "phantom"
    _, meta = read_image(write_image(tmp_path / "k2.mha", ints, meta))  # read meta written back again
    assert meta.extra["metadata"]["Study"] == "phantom"

    with pytest.raises(ValueError, match="does not fit"):
        write_image(tmp_path / "bad.nii.gz", np.zeros((2, 3)), META3)


# ------------------------------------------------------------------------------ pictures, TIFF, numpy


def test_png_grey_rgb_float_and_16bit(tmp_path):
    grey = RNG.integers(0, 256, (5, 7)).astype(np.uint8)
    arr, meta = read_image(write_image(tmp_path / "g.png", grey))
    np.testing.assert_array_equal(arr, grey)
    assert meta.format == "png" and meta.spacing == (1.0, 1.0) and meta.extra["rgb"] is False

    rgb = RNG.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    arr, meta = read_image(write_image(tmp_path / "c.png", rgb))
    np.testing.assert_array_equal(arr, rgb)
    assert meta.extra["rgb"] is True and meta.spacing_zyx == (1.0, 1.0)

    flt = np.array([[-0.5, 0.0, 0.5], [1.0, 1.7, 0.25]])
    arr, _ = read_image(write_image(tmp_path / "f.png", flt))
    assert arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, [[0, 0, 128], [255, 255, 64]])  # clipped to [0, 1], rounded

    sixteen = ImageMeta.default(2, "png")
    sixteen.extra["dtype"] = "uint16"
    arr, meta = read_image(write_image(tmp_path / "f16.png", flt, sixteen))
    assert arr.dtype == np.uint16 and meta.extra["dtype"] == "uint16"
    np.testing.assert_array_equal(arr, [[0, 0, 32768], [65535, 65535, 16384]])

    with pytest.raises(ValueError, match="PNG holds"):
        write_image(tmp_path / "v.png", np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"\.jpg.*not supported|JPEG output is not supported"):
        write_image(tmp_path / "x.jpg", grey)


def test_reads_jpeg_and_bmp(tmp_path):
    img = np.tile(np.linspace(0, 255, 8).astype(np.uint8), (6, 1))
    iio.imwrite(tmp_path / "a.bmp", img)
    iio.imwrite(tmp_path / "a.jpg", img, quality=95)
    arr, meta = read_image(tmp_path / "a.bmp")
    np.testing.assert_array_equal(arr, img)
    assert meta.format == "bmp"
    arr, meta = read_image(tmp_path / "a.jpg")
    assert arr.shape == (6, 8) and meta.format == "jpeg"
    assert np.abs(arr.astype(int) - img).max() <= 8  # lossy


def test_tiff_round_trip_keeps_geometry_and_reads_imagej_spacing(tmp_path):
    data = RNG.random((3, 4, 5)).astype(np.float64)
    arr, meta = read_image(write_image(tmp_path / "v.tif", data, META3))
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, data.astype(np.float32))
    assert (meta.spacing, meta.origin, meta.direction) == (META3.spacing, META3.origin, META3.direction)
    assert meta.format == "tiff"

    rgb = RNG.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    arr, meta = read_image(write_image(tmp_path / "c.tiff", rgb, ImageMeta.default(2)))
    np.testing.assert_array_equal(arr, rgb)
    assert meta.extra["rgb"] is True and meta.ndim == 2

    # a file from ImageJ/Fiji: x/y spacing from the resolution tags, z from "spacing"
    tifffile.imwrite(tmp_path / "ij.tif", data.astype(np.float32)[:, None], imagej=True,
                     resolution=(2.0, 4.0), metadata={"spacing": 3.0, "unit": "um", "axes": "ZCYX"})
    arr, meta = read_image(tmp_path / "ij.tif")
    assert arr.shape == (3, 4, 5)
    assert meta.spacing == (0.5, 0.25, 3.0) and meta.extra["unit"] == "um"


def test_numpy_formats(tmp_path):
    data = RNG.random((3, 4, 5))  # float64 stays float64 in .npy
    arr, meta = read_image(write_image(tmp_path / "a.npy", data))
    assert arr.dtype == np.float64 and meta.format == "npy" and meta.ndim == 3
    np.testing.assert_array_equal(arr, data)

    arr, meta = read_image(write_image(tmp_path / "a.npz", data, META3))
    np.testing.assert_array_equal(arr, data)
    assert (meta.spacing, meta.origin, meta.direction) == (META3.spacing, META3.origin, META3.direction)

    np.savez(tmp_path / "single.npz", data)
    np.testing.assert_array_equal(read_image(tmp_path / "single.npz")[0], data)
    np.savez(tmp_path / "two.npz", arr_0=data, other=data[0])
    np.testing.assert_array_equal(read_image(tmp_path / "two.npz")[0], data)
    np.savez(tmp_path / "many.npz", a=data, b=data)
    with pytest.raises(ValueError, match="'image'"):
        read_image(tmp_path / "many.npz")


# --------------------------------------------------------------------------------- errors & atomicity


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: .*nope.nii.gz"):
        read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "x.xyz").write_bytes(b"123")
    with pytest.raises(ValueError, match=r"supported suffixes: .*\.nii\.gz"):
        read_image(tmp_path / "x.xyz")
    with pytest.raises(ValueError, match="supported suffixes"):
        write_image(tmp_path / "new" / "y.xyz", np.zeros((2, 2)))
    assert not (tmp_path / "new").exists()


def _truncated_nii_gz(folder):
    good = write_image(folder / "good.nii.gz", RNG.random((8, 9, 10)).astype(np.float32))
    raw = good.read_bytes()
    (folder / "bad.nii.gz").write_bytes(raw[: len(raw) // 2])
    return folder / "bad.nii.gz"


def _truncated_nii(folder):
    raw = write_image(folder / "good.nii", np.ones((4, 5, 6), np.float32)).read_bytes()
    (folder / "bad.nii").write_bytes(raw[:-50])
    return folder / "bad.nii"


def _random_mha(folder):
    (folder / "bad.mha").write_bytes(np.random.default_rng(1).bytes(300))
    return folder / "bad.mha"


def _truncated_nrrd(folder):
    raw = write_image(folder / "good.nrrd", np.ones((4, 5, 6), np.float32)).read_bytes()
    (folder / "bad.nrrd").write_bytes(raw[:-200])
    return folder / "bad.nrrd"


def _truncated_png(folder):
    raw = write_image(folder / "good.png", np.ones((20, 20), np.uint8)).read_bytes()
    (folder / "bad.png").write_bytes(raw[:30])
    return folder / "bad.png"


def _random_tif(folder):
    (folder / "bad.tif").write_bytes(b"II*\x00" + bytes(range(40)))
    return folder / "bad.tif"


def _random_npy(folder):
    (folder / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    return folder / "bad.npy"


def _gz_not_nifti(folder):
    (folder / "bad.nii.gz").write_bytes(gzip.compress(b"not a nifti header at all" * 30))
    return folder / "bad.nii.gz"


@pytest.mark.parametrize(
    "make, label",
    [(_truncated_nii_gz, "NIfTI"), (_truncated_nii, "NIfTI"), (_gz_not_nifti, "NIfTI"),
     (_random_mha, "MetaImage"), (_truncated_nrrd, "NRRD"), (_truncated_png, "PNG"),
     (_random_tif, "TIFF"), (_random_npy, "NumPy")],
)
def test_corrupt_files_give_one_line_value_error(tmp_path, make, label):
    bad = make(tmp_path)
    with pytest.raises(ValueError) as info:
        read_image(bad)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot read {bad} as {label}")
    assert msg.endswith("check the file is complete and not corrupted")


def test_overwrite_refused_then_allowed(tmp_path):
    target = write_image(tmp_path / "a.nii.gz", np.zeros((2, 3, 4), np.float32))
    before = target.read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite") as info:
        write_image(target, np.ones((2, 3, 4), np.float32))
    assert "\n" not in str(info.value)
    assert target.read_bytes() == before
    write_image(target, np.ones((2, 3, 4), np.float32), overwrite=True)
    np.testing.assert_array_equal(read_image(target)[0], 1.0)
    assert files_in(tmp_path) == ["a.nii.gz"]
    # the replaced file gets normal permissions, not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    fresh = write_image(tmp_path / "sub" / "dir" / "b.npy", np.zeros(3))  # parents are created
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_target_and_leaves_no_temp_file(tmp_path):
    target = write_image(tmp_path / "a.nii", np.zeros((2, 3, 4), np.float32))
    before = target.read_bytes()
    # NIfTI-1 cannot hold an axis longer than 32767: SimpleITK fails inside its writer
    with pytest.raises(ValueError, match="cannot write .*a.nii as NIfTI: .*32767") as info:
        write_image(target, np.zeros((1, 1, 40000), np.float32), overwrite=True)
    assert "\n" not in str(info.value)
    assert target.read_bytes() == before
    assert files_in(tmp_path) == ["a.nii"]

    # an object array fails inside np.save after the temporary file was opened
    npy = write_image(tmp_path / "b.npy", np.arange(3))
    with pytest.raises(ValueError, match="cannot write .*b.npy"):
        write_image(npy, np.array([{"a": 1}], dtype=object), overwrite=True)
    np.testing.assert_array_equal(np.load(npy), np.arange(3))
    assert files_in(tmp_path) == ["a.nii", "b.npy"]

    # detached header: nothing lands when the data file name is taken
    (tmp_path / "c.raw").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="c.raw"):
        write_image(tmp_path / "c.mhd", np.zeros((2, 3, 4), np.float32))
    assert (tmp_path / "c.raw").read_bytes() == b"keep"
    assert files_in(tmp_path) == ["a.nii", "b.npy", "c.raw"]


def test_check_output_path(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    image = folder / "x.nii.gz"
    image.write_bytes(b"x")
    with pytest.raises(ValueError, match="is the input"):
        check_output_path(image, [image])
    with pytest.raises(ValueError, match="is the input"):
        check_output_path(folder / "sub" / ".." / "x.nii.gz", image)
    os.link(image, tmp_path / "hard.nii.gz")
    with pytest.raises(ValueError, match="is the input"):
        check_output_path(tmp_path / "hard.nii.gz", image)
    with pytest.raises(ValueError, match="inside the input .*choose another --out") as info:
        check_output_path(folder / "deep" / "out.nii.gz", [tmp_path / "other.png", folder])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="existing folder"):
        check_output_path(tmp_path, image)
    assert check_output_path(tmp_path / "out.nii.gz", [image, folder]) == (tmp_path / "out.nii.gz").resolve()
    assert check_output_path(tmp_path / "outdir", folder, want_file=False) == (tmp_path / "outdir").resolve()


def test_json_and_text_are_atomic(tmp_path):
    record = {"psnr": np.float32(31.5), "steps": np.int64(3), "curve": np.arange(3.0), "meta": META3,
              "path": tmp_path / "x.nii.gz"}
    path = write_json(tmp_path / "rec" / "r.json", record)
    back = json.loads(path.read_text())
    assert back["psnr"] == 31.5 and back["steps"] == 3 and back["curve"] == [0.0, 1.0, 2.0]
    assert ImageMeta.from_dict(back["meta"]).spacing == META3.spacing
    assert back["path"].endswith("x.nii.gz")
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(FileExistsError):
        write_json(path, {"a": 2}, overwrite=False)
    with pytest.raises(TypeError, match="as JSON"):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    atomic_write_text(tmp_path / "rec" / "t.txt", "héllo\n")
    assert (tmp_path / "rec" / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert files_in(tmp_path / "rec") == ["r.json", "t.txt"]


# ------------------------------------------------------------------------------------------ checkpoints


def _small_net():
    from monai_nets import get_network

    kwargs = {"spatial_dims": 2, "out_channels": 1, "hidden_channels": (8, 8), "num_frequencies": 4}
    torch.manual_seed(0)
    return get_network("nestnet", **kwargs), kwargs


def test_checkpoint_round_trip_weights_only(tmp_path):
    model, kwargs = _small_net()
    extra = {"psnr": np.float64(30.0), "history": np.arange(3), "meta": META3.to_dict(), "t": torch.ones(2)}
    path = save_checkpoint(tmp_path / "ck.pt", model, network="nestnet", network_kwargs=kwargs, extra=extra)
    assert files_in(tmp_path) == ["ck.pt"]
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain types only: loads safely
    assert set(raw) == {"state_dict", "network", "network_kwargs", "extra", "format_version"}
    assert raw["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert raw["network_kwargs"]["hidden_channels"] == (8, 8)
    ckpt = load_checkpoint(path)
    assert ckpt["extra"]["psnr"] == 30.0 and ckpt["extra"]["history"] == [0, 1, 2]
    assert torch.equal(ckpt["extra"]["t"], torch.ones(2))
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["state_dict"][k], v)

    rebuilt = load_model(path)
    x = torch.rand(16, 2) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model.eval()(x), rtol=0, atol=0)
    assert not rebuilt.training

    with pytest.raises(TypeError, match=r"extra\['bad'\]"):
        save_checkpoint(tmp_path / "x.pt", model, network="nestnet", network_kwargs=kwargs,
                        extra={"bad": object()})
    assert files_in(tmp_path) == ["ck.pt"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    model, kwargs = _small_net()
    good = save_checkpoint(tmp_path / "ck.pt", model, network="nestnet", network_kwargs=kwargs)
    raw = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 10)
    for name in ("trunc.pt", "junk.pt"):
        with pytest.raises(ValueError, match="as a checkpoint: .*not corrupted") as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value)
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a nestnet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"state_dict": {}, "network": "nestnet", "network_kwargs": kwargs}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="do not fit network 'nestnet'") as info:
        load_model(tmp_path / "empty.pt")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------ MONAI reader


def _hand_affine(meta: ImageMeta) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = meta.direction_matrix @ np.diag(meta.spacing)
    affine[:3, 3] = meta.origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's LPS -> RAS


def _nifti(tmp_path, name="v.nii.gz"):
    data = RNG.random((3, 4, 5)).astype(np.float32)  # (z, y, x)
    img = sitk.GetImageFromArray(data)
    img.SetSpacing(META3.spacing)
    img.SetOrigin(META3.origin)
    img.SetDirection(META3.direction)
    sitk.WriteImage(img, str(tmp_path / name))
    return tmp_path / name, data


def test_simpleitk_reader_matches_hand_affine(tmp_path):
    path, data = _nifti(tmp_path)
    img = LoadImage(reader=SimpleITKReader(), image_only=True)(path)
    assert isinstance(img, MetaTensor)
    assert img.shape == (5, 4, 3)  # ITK index order (x, y, z), like ITKReader and NibabelReader
    np.testing.assert_array_equal(img.numpy(), data.T)
    np.testing.assert_allclose(img.affine.numpy(), _hand_affine(META3), atol=1e-6)  # NIfTI: float32
    assert img.meta["space"] == "RAS"
    assert img.meta["filename_or_obj"] == str(path)
    np.testing.assert_array_equal(img.meta["spatial_shape"], [5, 4, 3])

    reader = SimpleITKReader(reverse_indexing=True, affine_lps_to_ras=False)
    arr, meta = reader.get_data(reader.read(path))
    np.testing.assert_array_equal(arr, data)  # numpy order
    assert meta["space"] == "LPS"
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _hand_affine(META3)
    np.testing.assert_allclose(meta["affine"], lps, atol=1e-6)
    assert reader.verify_suffix([path, "a.mha"]) and not reader.verify_suffix("a.txt")


def test_simpleitk_reader_matches_nibabel_reader(tmp_path):
    pytest.importorskip("nibabel", reason="nibabel not installed: the hand-computed affine test covers this")
    path, _ = _nifti(tmp_path)
    ours = LoadImage(reader=SimpleITKReader(), image_only=True)(path)
    theirs = LoadImage(reader="NibabelReader", image_only=True)(path)
    np.testing.assert_allclose(ours.affine.numpy(), theirs.affine.numpy(), atol=1e-6)  # NIfTI: float32
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert ours.shape == theirs.shape


def test_simpleitk_reader_stacks_files_and_vector_pixels(tmp_path):
    a, da = _nifti(tmp_path, "a.nii.gz")
    b, db = _nifti(tmp_path, "b.nii.gz")
    img = LoadImage(reader=SimpleITKReader(), image_only=True, ensure_channel_first=True)([a, b])
    assert img.shape == (2, 5, 4, 3)
    np.testing.assert_array_equal(img[1].numpy(), db.T)

    vec = RNG.random((3, 4, 5, 2)).astype(np.float32)
    path = write_image(tmp_path / "vec.mha", vec, META3)
    reader = SimpleITKReader()
    arr, meta = reader.get_data(reader.read(path))
    assert arr.shape == (5, 4, 3, 2) and meta["original_channel_dim"] == -1
    np.testing.assert_array_equal(arr, np.moveaxis(vec.T, 0, -1))
    np.testing.assert_allclose(meta["affine"], _hand_affine(META3), atol=0)

    with pytest.raises(FileNotFoundError):
        reader.read(tmp_path / "missing.nii.gz")


def test_simpleitk_reader_header_values_are_numbers_like_nibabel_reader(tmp_path):
    from reconstruct.app.monai_reader import typed_header

    path, _ = _nifti(tmp_path)
    meta = LoadImage(reader=SimpleITKReader(), image_only=True)(path).meta
    assert meta["pixdim[1]"] == pytest.approx(META3.spacing[0]) and isinstance(meta["dim[0]"], int)
    assert meta["qform_code"] == 1 and meta["qform_code_name"] == "NIFTI_XFORM_SCANNER_ANAT"  # text stays text
    assert not [k for k, v in meta.items() if isinstance(v, str) and v.startswith("[UNKNOWN")]
    np.testing.assert_array_equal(meta["dim"], [3, 5, 4, 3, 1, 1, 1, 1])
    nib = pytest.importorskip("nibabel", reason="nibabel not installed: the values above are checked by hand")
    theirs = LoadImage(reader="NibabelReader", image_only=True)(path).meta
    for key in ("dim", "srow_x", "srow_y", "srow_z", "qform_code", "sform_code", "quatern_d", "datatype", "bitpix"):
        np.testing.assert_allclose(np.asarray(meta[key], dtype=float), np.asarray(theirs[key], dtype=float),
                                   rtol=1e-5, atol=1e-6, err_msg=key)  # SimpleITK prints 6 significant digits
    np.testing.assert_allclose(meta["pixdim"][1:4], theirs["pixdim"][1:4], atol=1e-6)  # [0] is qfac for nibabel
    typed = typed_header({"a": "3", "b": "-0.5", "c": "1e-3", "d": "1 2.5", "i": "1,2", "e": "NIFTI_XFORM", "h": "",
                          "f[0]": "1", "f[1]": "2", "g[0]": "x", "qfac": "[UNKNOWN_PRINT_CHARACTERISTICS]\n"})
    assert (typed["a"], typed["b"], typed["c"], typed["e"], typed["h"]) == (3, -0.5, 1e-3, "NIFTI_XFORM", "")
    assert [typed["d"].tolist(), typed["i"].tolist(), typed["f"].tolist()] == [[1.0, 2.5], [1.0, 2.0], [1, 2]]
    assert isinstance(typed["a"], int) and "g" not in typed and "qfac" not in typed and nib is not None
