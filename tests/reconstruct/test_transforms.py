"""MONAI dictionary transforms: a real LoadImaged -> CTReconstructd -> SaveImaged pipeline, and geometry."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from monai_nets import NestNet, Siren
from reconstruct.batch import write_phantom_sinograms
from reconstruct.io import SimpleITKReader, read_image
from reconstruct.metrics import psnr
from reconstruct.transforms import CTReconstructd, Denoised, FitImaged, SuperResolved, network_spec

SMALL = functools.partial(NestNet, hidden_channels=[64, 64])
PIXEL = 0.7


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: the 2 shared cores are badly oversubscribed otherwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_network_spec_forms():
    assert network_spec("siren", {"omega_0": 20.0}) == ("siren", {"omega_0": 20.0})
    assert network_spec(Siren) == ("siren", {})
    # a bundle's "_mode_": "callable" partial: spatial_dims/out_channels come from the data
    bundle_style = functools.partial(NestNet, spatial_dims=2, out_channels=1, hidden_channels=[8, 8])
    assert network_spec(bundle_style, {"height": 3}) == ("nestnet", {"hidden_channels": [8, 8], "height": 3})
    with pytest.raises(TypeError, match="instance"):
        network_spec(NestNet(2, 1, hidden_channels=[4, 4]))
    with pytest.raises(TypeError, match="network name"):
        network_spec(torch.nn.Linear)
    with pytest.raises(TypeError, match="keyword"):
        network_spec(functools.partial(NestNet, 2))


def test_ct_pipeline_loads_reconstructs_and_saves(tmp_path):
    data = tmp_path / "data"
    write_phantom_sinograms(data, count=1, size=32, n_angles=45, pixel_size=PIXEL, seed=3)
    out = tmp_path / "out"
    pipeline = Compose([
        LoadImaged(keys=["sinogram", "reference"], reader=SimpleITKReader(), image_only=True),
        EnsureChannelFirstd(keys=["sinogram", "reference"]),
        CTReconstructd(keys="sinogram", output_key="image", model=SMALL, steps=100, device="cpu",
                       reference_key="reference", result_key="fit", fbp_key="fbp"),
        SaveImaged(keys="image", output_dir=str(out), output_postfix="recon", separate_folder=False, print_log=False),
    ])
    d = pipeline({"sinogram": str(data / "sino_000.nii.gz"), "reference": str(data / "phantom_000.nii.gz"),
                  "angles": "0:180:45"})

    image = d["image"]
    assert isinstance(image, MetaTensor) and tuple(image.shape) == (1, 32, 32)
    # pixels as wide as the detector bins; the sinogram's origin kept
    spacing = torch.linalg.norm(image.affine[:2, :2], dim=0)
    assert spacing.tolist() == pytest.approx([PIXEL, PIXEL], rel=1e-6)
    assert torch.allclose(image.affine[:2, -1], d["sinogram"].affine[:2, -1].to(image.affine.dtype))
    assert tuple(d["fbp"].shape) == (1, 32, 32)

    saved, meta = read_image(out / "sino_000_recon.nii.gz")
    phantom, _ = read_image(data / "phantom_000.nii.gz")
    assert saved.shape == phantom.shape
    assert meta.spacing == pytest.approx((PIXEL, PIXEL), rel=1e-5)
    # read back in numpy order, the saved file lines up with the phantom (axes not swapped) ...
    value = psnr(saved, phantom, data_range=1.0)
    assert value > 20.0
    assert value > psnr(saved.T, phantom, data_range=1.0) + 3.0
    # ... and the metrics the transform computed against the MONAI-loaded reference are the same
    assert d["fit"]["metrics"]["psnr"] == pytest.approx(value, abs=0.05)
    assert d["fit"]["steps"] == 100


def test_ct_transform_arguments():
    with pytest.raises(ValueError, match="layout"):
        CTReconstructd(keys="s", layout="matlab")
    with pytest.raises(ValueError, match="start:stop:count"):
        CTReconstructd(keys="s", angles="0:180:many")
    with pytest.raises(ValueError, match="index_order"):
        CTReconstructd(keys="s", index_order="fortran")
    with pytest.raises(ValueError, match="one output key per input key"):
        CTReconstructd(keys=["a", "b"], output_key="image")
    with pytest.raises(ValueError, match=r"\(1, H, W\) or \(H, W\)"):
        CTReconstructd(keys="s", steps=1)({"s": np.zeros((3, 8, 8), np.float32)})


def _image(h: int = 16, w: int = 12, channels: int | None = None) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    grey = (0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0)).astype(np.float32)
    return grey if channels is None else np.stack([grey * (0.5 + 0.2 * c) for c in range(channels)])


def test_same_grid_transforms_keep_meta_and_layout():
    affine = torch.tensor([[0.0, 2.0, 5.0], [3.0, 0.0, -4.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    grey = MetaTensor(torch.from_numpy(_image()[None]), affine=affine, meta={"filename_or_obj": "a.nii.gz"})
    d = Denoised(keys="img", output_key="clean", steps=3, device="cpu", model="siren",
                 model_kwargs={"hidden_channels": [16, 16]})({"img": grey})
    assert tuple(d["clean"].shape) == (1, 16, 12)
    assert torch.equal(d["clean"].affine, affine)
    assert d["clean"].meta["filename_or_obj"] == "a.nii.gz" and d["img"] is grey

    colour = _image(channels=3)
    out = FitImaged(keys="img", steps=3, device="cpu", model_kwargs={"hidden_channels": [16, 16]})({"img": colour})
    assert tuple(out["img"].shape) == (3, 16, 12)  # channel-first kept, replaced in place

    # index order: the same fit on a transposed array gives the transposed result
    plain = _image()
    a = FitImaged(keys="x", steps=3, device="cpu", index_order="numpy", model_kwargs={"hidden_channels": [16, 16]})
    b = FitImaged(keys="x", steps=3, device="cpu", index_order="itk", model_kwargs={"hidden_channels": [16, 16]})
    ra, rb = a({"x": plain})["x"], b({"x": plain.T.copy()})["x"]
    assert tuple(ra.shape) == (16, 12) and tuple(rb.shape) == (12, 16)
    np.testing.assert_allclose(ra.numpy(), rb.numpy().T, atol=1e-5)


def test_super_resolved_affine_covers_the_same_area():
    affine = torch.tensor([[2.0, 0.0, 10.0], [0.0, 3.0, 20.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    low = MetaTensor(torch.from_numpy(_image(8, 8)[None]), affine=affine)
    d = SuperResolved(keys="lr", output_key="hr", scale=2, steps=3, device="cpu",
                      model_kwargs={"hidden_channels": [16, 16]})({"lr": low})
    hr = d["hr"]
    assert tuple(hr.shape) == (1, 16, 16)
    # spacing halves; the first fine pixel centre sits a quarter coarse pixel before the coarse one
    expected = torch.tensor([[1.0, 0.0, 9.5], [0.0, 1.5, 19.25], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(hr.affine, expected)
    # both grids span the same world interval: first edge and last edge agree
    for axis, n_low in ((0, 8), (1, 8)):
        low_edges = (affine[axis, -1] - affine[axis, axis] / 2, affine[axis, -1] + affine[axis, axis] * (n_low - 0.5))
        high_edges = (hr.affine[axis, -1] - hr.affine[axis, axis] / 2,
                      hr.affine[axis, -1] + hr.affine[axis, axis] * (2 * n_low - 0.5))
        assert torch.allclose(torch.stack(low_edges), torch.stack(high_edges))
    with pytest.raises(ValueError, match="scale"):
        SuperResolved(keys="lr", scale=0)
