"""The fan-beam and cone-beam samples: they open in a real viewer, carry the geometry under the task's own
parameter names, the CT panels pick them up and fill their geometry fields from that metadata (skipping, with
a status line, values a field refuses), and their metadata alone reconstructs them (FBP / FDK), in the task
and from the panels' filled fields."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-nestnet"
# PSNR (dB, over the phantom's range) the analytic reconstruction must reach from the metadata alone
# (measured: fan FBP 28.1 dB, cone FDK 28.3 dB); a zero image scores 13.5 and 17.1 dB.
MIN_PSNR = 20.0


def _open(viewer, key: str) -> tuple:
    viewer.open_sample(PLUGIN, key)
    truth = [layer for layer in viewer.layers if layer.metadata.get("role") == "ground_truth"]
    data = [layer for layer in viewer.layers if layer.metadata.get("role") != "ground_truth"]
    assert len(truth) == 1 and len(data) == 1, [layer.name for layer in viewer.layers]
    return data[0], truth[0]


def _task_kwargs(task: str, metadata: dict) -> dict:
    """The task parameters the metadata gives, by the task's own parameter names."""
    from reconstruct.tasks import SPECS

    names = {p.name for p in SPECS[task].params}
    return {k: v for k, v in metadata.items() if k in names}


def _psnr(image: np.ndarray, truth: np.ndarray) -> float:
    from reconstruct.metrics import psnr

    return float(psnr(image, truth, data_range=float(truth.max() - truth.min())))


def _check_truth(truth) -> None:
    from napari_nestnet._pickers import is_ground_truth

    assert not truth.visible and is_ground_truth(truth) and "ground truth" in truth.name
    assert truth.data.dtype == np.float32 and float(truth.data.max()) > 0.5 and float(truth.data.min()) >= 0.0


def test_fan_sample_opens_with_the_fan_geometry_in_its_metadata(viewer):
    sino, truth = _open(viewer, "ct_fan_sinogram")
    _check_truth(truth)
    md = sino.metadata
    angles = np.asarray(md["angles_deg"])
    assert sino.name == "ct_fan_sinogram" and sino.data.dtype == np.float32
    assert md["layout"] == "skimage" and sino.data.shape == (128, angles.size) == (128, 120)
    assert np.allclose(angles, np.arange(120) * 3.0)  # 360° in degrees, endpoint excluded
    assert md["geometry"] == "fan" and md["detector_shape"] == "flat" and md["det_offset"] == 0.0
    assert md["source_distance"] == 400.0 and md["source_detector_distance"] == 800.0 and md["det_spacing"] == 2.0
    assert truth.data.shape == (128, 128) and md["voxel_size"] == 1.0
    noise = md["noise"]
    assert noise["kind"] == "gaussian" and noise["relative"] == 0.01
    assert 0.005 < noise["sigma"] / float(np.abs(sino.data).max()) < 0.011  # ~1 % of the largest line integral
    # the task accepts every geometry value the metadata gives, by name
    from reconstruct.tasks import SPECS

    kwargs = _task_kwargs("ct_reconstruct", md)
    assert {"layout", "geometry", "source_distance", "source_detector_distance", "det_spacing", "det_offset",
            "detector_shape"} <= set(kwargs)
    SPECS["ct_reconstruct"].check_params({**{p.name: p.default for p in SPECS["ct_reconstruct"].params}, **kwargs})


def test_fan_sample_metadata_reconstructs_it_with_fbp(viewer):
    from reconstruct.tasks import ct_reconstruct

    sino, truth = _open(viewer, "ct_fan_sinogram")
    md = sino.metadata
    result = ct_reconstruct(np.asarray(sino.data), md["angles_deg"], method="fbp", device="cpu",
                            reference=np.asarray(truth.data), **_task_kwargs("ct_reconstruct", md))
    assert result.output.shape == truth.data.shape
    got, zero = _psnr(result.output, truth.data), _psnr(np.zeros_like(truth.data), truth.data)
    assert got > MIN_PSNR and got > zero + 10.0, (got, zero)
    assert result.metrics["psnr"] == pytest.approx(got, abs=0.5)
    # the distances matter, not only their ratio: the same magnification at twice the distances is
    # far worse (measured 19.2 dB), and so are reversed angles (15.7 dB)
    wrong = ct_reconstruct(np.asarray(sino.data), md["angles_deg"], method="fbp", device="cpu",
                           **{**_task_kwargs("ct_reconstruct", md), "source_distance": 2 * md["source_distance"],
                              "source_detector_distance": 2 * md["source_detector_distance"],
                              "det_spacing": 2 * md["det_spacing"]})
    assert _psnr(wrong.output, truth.data) < got - 5.0


def test_cone_sample_opens_with_the_cone_geometry_in_its_metadata(viewer):
    proj, truth = _open(viewer, "ct_cone_beam")
    _check_truth(truth)
    md = proj.metadata
    angles = np.asarray(md["angles_deg"])
    assert proj.name == "ct_cone_projections" and proj.data.dtype == np.float32
    assert proj.data.shape == (angles.size, *md["det_shape"]) == (60, 48, 48)
    assert np.allclose(angles, np.arange(60) * 6.0)
    assert md["geometry"] == "cone" and md["layout"] == "views, rows, cols"
    assert md["source_distance"] == 200.0 and md["source_detector_distance"] == 400.0 and md["det_spacing"] == 2.0
    assert md["voxel_size"] == md["slice_spacing"] == 1.0 and md["noise"]["relative"] == 0.01
    assert truth.data.shape == (48, 48, 48)
    assert tuple(truth.scale) == (1.0, 1.0, 1.0) and tuple(truth.translate) == (-23.5, -23.5, -23.5)
    kwargs = _task_kwargs("ct_reconstruct_3d", md)
    assert {"geometry", "source_distance", "source_detector_distance", "det_spacing", "voxel_size",
            "slice_spacing"} <= set(kwargs)


def test_cone_sample_metadata_reconstructs_it_with_fdk(viewer):
    from reconstruct.tasks import ct_reconstruct_3d

    proj, truth = _open(viewer, "ct_cone_beam")
    md = proj.metadata
    result = ct_reconstruct_3d(np.asarray(proj.data), md["angles_deg"], method="fdk", device="cpu",
                               reference=np.asarray(truth.data), **_task_kwargs("ct_reconstruct_3d", md))
    assert result.output.shape == truth.data.shape
    # the reconstruction lands on the ground-truth layer in world coordinates (mm)
    assert tuple(result.extras["spacing"]) == tuple(truth.scale)
    assert tuple(result.extras["origin"]) == tuple(truth.translate)
    got, zero = _psnr(result.output, truth.data), _psnr(np.zeros_like(truth.data), truth.data)
    assert got > MIN_PSNR and got > zero + 10.0, (got, zero)


def test_the_parallel_sample_names_its_geometry_as_the_task_does(viewer):
    viewer.open_sample(PLUGIN, "ct_sinogram", size=16, n_angles=8)
    md = viewer.layers["ct_sinogram"].metadata
    assert md["geometry"] == "parallel" and md["layout"] == "skimage"
    from reconstruct.tasks import SPECS

    spec = SPECS["ct_reconstruct"]
    kwargs = _task_kwargs("ct_reconstruct", md)
    assert kwargs == {"layout": "skimage", "geometry": "parallel"}
    spec.check_params({**{p.name: p.default for p in spec.params}, **kwargs})


FAN_FIELDS = {"layout": "skimage", "geometry": "fan", "source_distance": 400.0, "source_detector_distance": 800.0,
              "det_spacing": 2.0, "det_offset": 0.0, "detector_shape": "flat"}
CONE_FIELDS = {"geometry": "cone", "source_distance": 200.0, "source_detector_distance": 400.0, "det_spacing": 2.0,
               "voxel_size": 1.0, "slice_spacing": 1.0}


def _fields(panel, names) -> dict:
    return {name: panel.params.value(name) for name in names}


def test_the_ct_panels_pick_the_samples_and_fill_their_geometry_fields(viewer, dock):
    from napari_nestnet._widgets import CT3DReconstructionPanel, CTReconstructionPanel

    sino, fan_truth = _open(viewer, "ct_fan_sinogram")
    panel = dock(CTReconstructionPanel)
    assert panel._sinogram.value is sino
    assert _fields(panel, FAN_FIELDS) == FAN_FIELDS == _task_kwargs("ct_reconstruct", sino.metadata)
    assert panel.field("method").value == "inr"  # the metadata names no method: the panel's default stays
    assert "set from 'ct_fan_sinogram' metadata: " in panel.status and "geometry" in panel.status
    assert np.allclose(panel.angles_deg(), sino.metadata["angles_deg"])
    assert panel._ref.value is fan_truth  # the reference fills itself with the sample's ground truth

    viewer.open_sample(PLUGIN, "ct_cone_beam")
    cone, cone_truth = viewer.layers["ct_cone_projections"], viewer.layers["shepp_logan_3d (ground truth)"]
    panel3d = dock(CT3DReconstructionPanel)
    assert panel3d._projections.value is cone  # 3-D, with angles_deg; never the 3-D ground truth
    assert _fields(panel3d, CONE_FIELDS) == CONE_FIELDS == _task_kwargs("ct_reconstruct_3d", cone.metadata)
    assert panel3d.field("method").value == "inr"
    assert np.allclose(panel3d.angles_deg(), cone.metadata["angles_deg"])
    assert panel3d._angle_count.value == 60 and panel3d._angle_stop.value == 360.0  # views on axis 0 (cone)
    # the reference picker fills itself with the ground-truth volume of the output's shape (48³)
    assert panel3d.expected_reference_shape() == (48, 48, 48)
    assert panel3d._ref.value is cone_truth
    panel3d.field("output_slices").value = 40  # another output shape: the truth no longer fits
    assert panel3d._ref.value is None
    panel3d.field("output_slices").value = 0
    assert panel3d._ref.value is cone_truth
    assert panel.field("geometry").value == "fan"  # the 2-D panel kept its layer (the cone scan is 3-D)


def test_picking_another_layer_fills_the_fields_again_and_defaults_keep_them(viewer, dock):
    from napari_nestnet._widgets import CTReconstructionPanel

    sino, _ = _open(viewer, "ct_fan_sinogram")
    panel = dock(CTReconstructionPanel)
    assert panel.field("geometry").value == "fan"
    viewer.open_sample(PLUGIN, "ct_sinogram", size=16, n_angles=8)
    parallel = viewer.layers["ct_sinogram"]
    panel._sinogram.value = parallel  # the user picks the parallel-beam sample
    assert panel.field("geometry").value == "parallel" and panel.field("layout").value == "skimage"
    panel.field("geometry").value = "fan"  # typed by the user: kept while the layer stays
    panel.reset_choices()
    assert panel.field("geometry").value == "fan"
    panel._sinogram.value = sino
    panel.field("det_spacing").value = 5.0
    panel.restore_defaults()  # the defaults, then the chosen layer's facts again
    assert _fields(panel, FAN_FIELDS) == FAN_FIELDS and panel.field("method").value == "inr"
    assert panel.status.startswith("defaults restored; set from 'ct_fan_sinogram' metadata")


def test_metadata_values_a_field_refuses_are_skipped_with_a_status_line(viewer, dock, notes, caplog):
    from napari_nestnet._widgets import CTReconstructionPanel

    sino = np.zeros((16, 8), np.float32)
    md = {"angles_deg": np.linspace(0.0, 360.0, 8, endpoint=False).tolist(), "layout": "skimage",
          "geometry": "parallel-beam", "source_distance": -5.0, "source_detector_distance": "far",
          "det_spacing": 0.0625, "det_offset": 1e9, "detector_shape": "arc", "det_count": 16, "steps": 3}
    layer = viewer.add_image(sino, name="odd", metadata=md)
    with caplog.at_level("INFO", logger="napari_nestnet._pickers"):
        panel = dock(CTReconstructionPanel)
    assert panel._sinogram.value is layer
    # accepted values are set (0.0625 mm keeps its digits), refused ones leave the field as it was
    assert panel.params.value("det_spacing") == 0.0625 and panel.field("detector_shape").value == "arc"
    assert panel.field("geometry").value == "parallel"
    assert panel.params.value("source_distance") is None and panel.params.value("source_detector_distance") is None
    assert panel.params.value("det_offset") == 0.0
    assert "steps" not in panel.status  # not a task parameter: a fit setting is never read from metadata
    status = panel.status
    assert "skipped 'odd' metadata" in status and "geometry='parallel-beam'" in status and "\n" not in status
    for name in ("source_distance", "source_detector_distance", "det_offset"):
        assert f"{name}=" in status.split("skipped", 1)[1]
    assert "det_spacing, detector_shape" in status.split("skipped", 1)[0]
    assert not notes.errors()
    assert any(r.levelname == "WARNING" and "parallel-beam" in r.getMessage() for r in caplog.records)


def test_the_ct_panels_reconstruct_the_samples_from_their_filled_fields(viewer, dock, run_panel):
    """No geometry is set by hand: the fields the pickers filled from the metadata, and the reference they
    chose, are all a classical run (FBP / FDK) needs."""
    from napari_nestnet._widgets import CT3DReconstructionPanel, CTReconstructionPanel

    sino, fan_truth = _open(viewer, "ct_fan_sinogram")
    panel = dock(CTReconstructionPanel, method="fbp")
    assert panel._ref.value is fan_truth
    run_panel(panel)
    assert panel.last_result is not None and panel.last_result.metrics["psnr"] > MIN_PSNR
    ran = panel.last_result.extras["parameters"]
    assert {k: ran[k] for k in FAN_FIELDS} == FAN_FIELDS
    assert panel.last_layers[0].data.shape == fan_truth.data.shape

    viewer.open_sample(PLUGIN, "ct_cone_beam")
    cone_truth = viewer.layers["shepp_logan_3d (ground truth)"]
    panel3d = dock(CT3DReconstructionPanel, method="fdk")
    assert panel3d._ref.value is cone_truth
    run_panel(panel3d)
    assert panel3d.last_result is not None and panel3d.last_result.metrics["psnr"] > MIN_PSNR
    assert panel3d.last_result.extras["parameters"]["geometry"] == "cone"
    recon = panel3d.last_layers[0]
    assert tuple(recon.scale) == tuple(cone_truth.scale) and tuple(recon.translate) == tuple(cone_truth.translate)
