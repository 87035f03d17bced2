"""MONAI dictionary transforms: a real LoadImaged -> CTReconstructd -> SaveImaged pipeline, every task, geometry."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from monai_nets import NestNet, Siren
from reconstruct.app.meta import sr_meta
from reconstruct.batch import write_phantom_sinograms
from reconstruct.io import ImageMeta, SimpleITKReader, read_image, write_image
from reconstruct.metrics import psnr
from reconstruct.tasks import SPECS
from reconstruct.tasks.spec import FIT_PARAMS
from reconstruct.transforms import (
    TRANSFORMS,
    CTReconstruct3Dd,
    CTReconstructd,
    Denoised,
    FitImaged,
    FitOccupancyd,
    MultiFrameSuperResolved,
    NestNetTaskd,
    SolveConvectiond,
    SuperResolved,
    network_spec,
)

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
    # CT's default ground-truth-free stop: a held-out run of at most 100 steps, then the refit for the chosen count
    stop = d["fit"]["stop"]
    assert stop["rule"] == "held_out" and stop["refit_steps"] == stop["step"] and d["fit"]["steps"] <= 200
    assert d["fit"]["tv_search"]["chosen"] in [t["tv_weight"] for t in d["fit"]["tv_search"]["weights"]]


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


# ------------------------------------------------------------------------------------------------
# every task, its keyword arguments from the spec
# ------------------------------------------------------------------------------------------------

ALL = (FitImaged, Denoised, SuperResolved, MultiFrameSuperResolved, CTReconstructd, CTReconstruct3Dd, FitOccupancyd,
       SolveConvectiond)
TINY = {"steps": 2, "device": "cpu", "model_kwargs": {"hidden_channels": [16, 16]}}


def test_one_transform_per_task_with_the_specs_arguments():
    assert {cls.task_name for cls in ALL} == set(SPECS) and TRANSFORMS == {cls.task_name: cls for cls in ALL}
    fit = {p.name for p in FIT_PARAMS if "monai" in p.doors} - {"model", "model_kwargs"}
    for cls in ALL:
        spec = SPECS[cls.task_name]
        names = set(cls.accepted_params())
        assert {p.name for p in spec.params_for("monai")} | fit <= names
        assert not {p.name for p in spec.params if "monai" not in p.doors} & names
        signature = inspect.signature(cls)
        assert list(signature.parameters)[:2] == ["keys", "output_key"]
        for p in spec.params_for("monai"):
            assert signature.parameters[p.name].default == p.default
        with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) got unexpected keyword argument\(s\) 'bogus'"):
            cls(keys="x", bogus=1)
    assert "angles_key" in CTReconstructd.accepted_params() and "fbp_key" in CTReconstructd.accepted_params()
    assert {"shifts", "shifts_key", "rotations", "rotations_key"} <= set(MultiFrameSuperResolved.accepted_params())
    with pytest.raises(TypeError, match="scale"):
        CTReconstructd(keys="s", scale=2)  # another task's parameter
    with pytest.raises(TypeError, match="base class"):
        NestNetTaskd(keys="x")


def test_arguments_are_validated_by_the_spec_when_built():
    for cls, bad, message in ((CTReconstructd, {"tv_weight": -1.0}, "tv_weight must be"),
                              (CTReconstructd, {"data_filter": "box"}, "data_filter must be"),
                              (CTReconstructd, {"circle": "yes"}, "circle must be"),
                              (SuperResolved, {"scale": 2.5}, "scale must be"),
                              (SolveConvectiond, {"features": "wavelets"}, "features must be"),
                              (FitOccupancyd, {"spacing": (1.0, 2.0)}, "spacing must be"),
                              (FitImaged, {"steps": 0}, "steps must be"),
                              (Denoised, {"model": "resnet"}, "resnet"),
                              (FitImaged, {"model_kwargs": {"width": 3}}, "no argument 'width'"),
                              (MultiFrameSuperResolved, {"shifts": [[0.0, float("nan")]]}, "finite")):
        with pytest.raises((TypeError, ValueError), match=message):
            cls(keys="x", **bad)


def test_colour_volume_and_missing_keys():
    colour = MetaTensor(torch.from_numpy(_image(8, 6, channels=3)))
    d = Denoised(keys="img", **TINY)({"img": colour})
    assert tuple(d["img"].shape) == (3, 8, 6) and d["img"].meta["nestnet_task"] == "denoise"
    volume = torch.from_numpy(np.stack([_image(6, 5)] * 4))[None]  # (1, X, Y, Z)
    d = FitImaged(keys="vol", output_key="fit", result_key="r", **TINY)({"vol": volume})
    assert tuple(d["fit"].shape) == (1, 4, 6, 5) and d["r"]["steps"] == 2
    assert d["r"]["parameters"]["task"] == "fit_image" and d["r"]["parameters"]["steps"] == 2
    # allow_missing_keys: absent keys are skipped, as for any MapTransform
    assert FitImaged(keys=["a", "b"], allow_missing_keys=True, **TINY)({"a": _image(6, 6)})["a"].shape == (6, 6)
    with pytest.raises(KeyError):
        FitImaged(keys=["a", "b"], **TINY)({"a": _image(6, 6)})


def test_multi_frame_super_resolution_on_the_frames_finer_grid():
    affine = torch.tensor([[2.0, 0.0, 10.0], [0.0, 3.0, 20.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    frames = MetaTensor(torch.from_numpy(np.stack([_image(6, 6), _image(6, 6).T.copy()])), affine=affine)
    shifts = np.array([[0.0, 0.0], [1.0, 0.0]])
    t = MultiFrameSuperResolved(keys="f", output_key="hr", scale=2, result_key="r", bicubic_key="bicubic", **TINY)
    d = t({"f": frames, "shifts": shifts})  # per item, from shifts_key
    assert tuple(d["hr"].shape) == (1, 12, 12) and tuple(d["bicubic"].shape) == (1, 12, 12)
    expected = torch.tensor([[1.0, 0.0, 9.5], [0.0, 1.5, 19.25], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(d["hr"].affine, expected)  # the same rule as SuperResolved
    assert d["r"]["parameters"]["rotations"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="shifts"):
        MultiFrameSuperResolved(keys="f", **TINY)({"f": frames})


def test_occupancy_and_pinn_transforms():
    volume = np.zeros((1, 6, 6, 6), np.float32)
    volume[0, 1:5, 2:5, 1:4] = 1.0
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    d = FitOccupancyd(keys="v", output_key="p", result_key="r", **TINY)({"v": MetaTensor(torch.from_numpy(volume),
                                                                                         affine=affine)})
    assert tuple(d["p"].shape) == (1, 6, 6, 6) and torch.equal(d["p"].affine, affine)
    assert 0.0 <= d["r"]["metrics"]["iou"] <= 1.0

    t = SolveConvectiond(keys="beta", output_key="u", nx=10, nt=6, n_collocation=32, result_key="r", **TINY)
    d = t({"beta": 3.0})
    assert tuple(d["u"].shape) == (1, 6, 10)  # ITK index order: (t, x), so read_image gives (nx, nt)
    assert d["r"]["parameters"]["beta"] == 3.0 and "rel_l2" in d["r"]["metrics"]
    steps = torch.diagonal(d["u"].affine)[:2]
    assert steps.tolist() == pytest.approx([1 / 5, 2 * np.pi / 9])  # the task's own (t, x) grid
    numpy_order = SolveConvectiond(keys="beta", nx=10, nt=6, index_order="numpy", n_collocation=32, **TINY)
    assert tuple(numpy_order({"beta": None})["beta"].shape) == (1, 10, 6)  # None: the beta argument (5)
    with pytest.raises(ValueError, match="one number"):
        t({"beta": np.ones(2)})


def test_super_resolved_file_geometry_matches_the_shared_rule(tmp_path):
    """LoadImaged -> SuperResolved -> SaveImaged writes the geometry nestnet batch writes (sr_meta)."""
    meta = ImageMeta((0.8, 0.5), (4.0, -3.0), (0.0, 1.0, 1.0, 0.0))
    write_image(tmp_path / "low.nii.gz", _image(6, 5), meta)
    pipeline = Compose([
        LoadImaged(keys="lr", reader=SimpleITKReader(), image_only=True),
        EnsureChannelFirstd(keys="lr"),
        SuperResolved(keys="lr", output_key="hr", scale=2, **TINY),
        SaveImaged(keys="hr", output_dir=str(tmp_path), output_postfix="sr", separate_folder=False, print_log=False),
    ])
    pipeline({"lr": str(tmp_path / "low.nii.gz")})
    saved, saved_meta = read_image(tmp_path / "low_sr.nii.gz")
    expected = sr_meta(meta, 2)
    assert saved.shape == (12, 10)
    assert saved_meta.spacing == pytest.approx(expected.spacing, abs=1e-5)
    assert saved_meta.origin == pytest.approx(expected.origin, abs=1e-5)
    assert saved_meta.direction == pytest.approx(expected.direction, abs=1e-6)


def test_a_new_parameter_reaches_the_transform_with_one_edit(monkeypatch):
    import dataclasses

    from reconstruct.tasks import Param

    extra = Param("new_knob", float, 0.25, "a parameter added in one place", low=0.0)
    monkeypatch.setitem(SPECS, "denoise", dataclasses.replace(SPECS["denoise"], params=(*SPECS["denoise"].params,
                                                                                        extra)))
    assert "new_knob" in Denoised.accepted_params()
    assert inspect.signature(Denoised).parameters["new_knob"].default == 0.25
    assert Denoised(keys="x", new_knob=0.5).task_kwargs == {"new_knob": 0.5}
    with pytest.raises(ValueError, match="new_knob must be"):
        Denoised(keys="x", new_knob=-1.0)
