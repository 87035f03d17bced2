"""Every task panel driven in a real viewer: layers, names, metadata, preview, cancel and error paths."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nestnet._results import RECENT_FITS
from napari_nestnet._widgets import (
    CTReconstructionPanel,
    DenoisePanel,
    FitImagePanel,
    MultiFrameSuperResolvePanel,
    OccupancyPanel,
    PinnConvectionPanel,
    SuperResolvePanel,
)

pytestmark = pytest.mark.gui


def _names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


def _record_inserted(viewer) -> list[str]:
    inserted: list[str] = []
    viewer.layers.events.inserted.connect(lambda e: inserted.append(e.value.name))
    return inserted


# ----------------------------------------------------------------------------------- image panels
def test_fit_image_adds_result_with_metrics_and_live_preview(viewer, dock, run_panel, image):
    data = image(32)
    src = viewer.add_image(data, name="picture", scale=(0.5, 0.5), translate=(2.0, 3.0))
    before = src.data.copy()
    panel = dock(FitImagePanel, steps=30, preview_every=10)
    assert panel._image.value is src
    inserted = _record_inserted(viewer)

    run_panel(panel)

    result = panel.last_layers[0]
    assert result.name.startswith("fit_image [nestnet] ") and result.name.endswith(" dB")  # its PSNR
    assert result.data.shape == (32, 32)
    assert tuple(result.scale) == (0.5, 0.5) and tuple(result.translate) == (2.0, 3.0)
    md = result.metadata
    assert md["task"] == "fit_image" and md["model"] == "nestnet" and md["source_layer"] == "picture"
    assert md["parameters"]["steps"] == 30 and md["parameters"]["model_kwargs"]["hidden_channels"] == [32, 32]
    assert md["steps"] == 30 and md["stopped_by"] == "steps" and len(md["loss_history"]) == 30
    assert np.isfinite(md["metrics"]["psnr"]) and md["metrics"]["psnr"] > 10
    # the preview was a separate layer, updated in place and removed when the result arrived
    assert inserted.count("fit_image [nestnet] (preview)") == 1  # added once, then updated in place
    assert not any("(preview)" in n for n in _names(viewer))
    assert panel.progress_updates >= 3 and panel.status.startswith("done")
    np.testing.assert_array_equal(src.data, before)
    assert RECENT_FITS.latest().label == "fit_image [nestnet]"


def test_denoise_rgb_with_reference_reports_psnr_and_ssim(viewer, dock, run_panel, image):
    clean = image(32, rgb=True)
    rng = np.random.default_rng(1)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    noisy_layer = viewer.add_image(noisy, name="noisy", rgb=True)
    ref_layer = viewer.add_image(clean, name="clean", rgb=True)
    before = noisy.copy()
    panel = dock(DenoisePanel, steps=25)
    panel._image.value = noisy_layer
    panel._ref.value = ref_layer

    run_panel(panel)

    result = panel.last_layers[0]
    assert result.rgb and result.data.shape == (32, 32, 3)
    assert set(result.metadata["metrics"]) >= {"psnr", "ssim"}
    assert result.metadata["inputs"] == {"noisy": "noisy", "reference": "clean"}
    np.testing.assert_array_equal(noisy_layer.data, before)


def test_super_resolve_output_is_finer_and_aligned(viewer, dock, run_panel, image):
    hr = image(32)
    lr = hr.reshape(16, 2, 16, 2).mean(axis=(1, 3))
    lr_layer = viewer.add_image(lr, name="lowres", scale=(2.0, 2.0), translate=(0.5, 0.5),
                                metadata={"scale": 2})
    viewer.add_image(hr, name="truth")
    panel = dock(SuperResolvePanel, steps=20)
    panel._image.value = lr_layer
    panel._ref.value = viewer.layers["truth"]
    assert panel.field("scale").value == 2  # read from the layer's metadata

    run_panel(panel)

    result = panel.last_layers[0]
    assert result.name.startswith("super_resolved_x2 [nestnet]") and "bicubic" in result.name
    assert result.data.shape == (32, 32)
    # the fine pixels tile the coarse ones: same world extent, half the spacing
    assert tuple(result.scale) == (1.0, 1.0) and tuple(result.translate) == (0.0, 0.0)
    assert "psnr" in result.metadata["metrics"]


def test_multi_frame_panel_reads_motion_from_metadata(viewer, dock, run_panel):
    rng = np.random.default_rng(0)
    frames = rng.uniform(size=(3, 8, 8)).astype(np.float32)
    shifts = [[0.0, 0.0], [0.5, -1.0], [1.5, 0.25]]
    rotations = [0.0, 0.01, -0.02]
    layer = viewer.add_image(frames, name="frames",
                             metadata={"shifts": shifts, "rotations": rotations, "scale": 4})
    panel = dock(MultiFrameSuperResolvePanel, steps=15)
    panel._frames.value = layer
    assert panel.field("scale").value == 4
    assert panel._shifts.value == "0, 0; 0.5, -1; 1.5, 0.25"
    np.testing.assert_allclose(np.deg2rad([float(v) for v in panel._rotations.value.split(",")]), rotations,
                               atol=1e-6)

    run_panel(panel)

    [result] = panel.last_layers
    assert result.name == "super_resolved_multi_x4 [nestnet]"  # no reference: no metric
    assert result.data.shape == (32, 32)
    params = result.metadata["parameters"]
    np.testing.assert_allclose(params["shifts"], shifts)
    np.testing.assert_allclose(params["rotations"], rotations, atol=1e-6)


def test_multi_frame_panel_rejects_a_shift_count_that_does_not_match(viewer, dock, notes):
    viewer.add_image(np.zeros((3, 8, 8), np.float32), name="frames")
    panel = dock(MultiFrameSuperResolvePanel)
    panel._shifts.value = "0, 0; 1, 1"
    n_layers = len(viewer.layers)
    panel.run()
    assert not panel.running and len(viewer.layers) == n_layers
    [message] = notes.errors()
    assert "3 frames but 2 shifts" in message


# ----------------------------------------------------------------------------------- CT
def _sinogram(size: int = 32, n_angles: int = 24):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, resize

    phantom = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True).astype(np.float32)
    offset = np.arange(size) - size // 2
    phantom[offset[:, None] ** 2 + offset[None, :] ** 2 > (size // 2) ** 2] = 0.0  # radon(circle=True)
    angles = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    return phantom, radon(phantom, theta=angles, circle=True).astype(np.float32), angles


def test_ct_panel_uses_metadata_angles_and_adds_fbp(viewer, dock, run_panel):
    phantom, sino, angles = _sinogram()
    sino_layer = viewer.add_image(sino, name="sino", metadata={"angles_deg": angles.tolist(), "layout": "skimage"})
    viewer.add_image(phantom, name="phantom")
    before = sino.copy()
    panel = dock(CTReconstructionPanel, steps=20)
    panel._sinogram.value = sino_layer
    panel._ref.value = viewer.layers["phantom"]
    assert panel._angles_from_metadata.value and panel._angles_from_metadata.enabled
    assert not panel._angle_count.enabled
    np.testing.assert_array_equal(panel.angles_deg(), angles)

    run_panel(panel)

    recon, fbp = panel.last_layers
    assert recon.name.startswith("ct_reconstruction [nestnet] ") and "FBP" in recon.name
    assert fbp.name.startswith("ct_fbp [ramp] ")
    assert recon.data.shape == fbp.data.shape == (32, 32)
    assert "psnr" in recon.metadata["metrics"]
    assert recon.metadata["parameters"]["angles_deg"] == angles.tolist()
    assert fbp.metadata["filter_name"] == "ramp" and fbp.metadata["source_layer"] == "sino"
    np.testing.assert_array_equal(sino_layer.data, before)


def test_ct_panel_without_metadata_takes_the_count_from_the_sinogram(viewer, dock):
    _, sino, _ = _sinogram(n_angles=18)
    viewer.add_image(sino, name="sino")
    panel = dock(CTReconstructionPanel)
    assert not panel._angles_from_metadata.value and not panel._angles_from_metadata.enabled
    assert panel._angle_count.value == 18 and panel._angle_count.enabled
    np.testing.assert_allclose(panel.angles_deg(), np.linspace(0, 180, 18, endpoint=False))
    panel.field("layout").value = "torch"  # angles × detectors: the rows are the angles
    assert panel._angle_count.value == sino.shape[0]


def test_ct_panel_reports_angles_that_do_not_match_the_sinogram(viewer, dock, notes):
    _, sino, angles = _sinogram(n_angles=24)
    viewer.add_image(sino, name="sino", metadata={"angles_deg": angles[:20].tolist()})
    panel = dock(CTReconstructionPanel)
    n_layers = len(viewer.layers)
    panel.run()
    assert not panel.running and len(viewer.layers) == n_layers
    [message] = notes.errors()
    assert "24" in message and "20 angles" in message and "\n" not in message


# ----------------------------------------------------------------------------------- occupancy
def test_occupancy_adds_probability_labels_and_surface(viewer, dock, run_panel):
    n = 16
    z, y, x = np.mgrid[0:n, 0:n, 0:n]
    sphere = ((z - 7.5) ** 2 + (y - 7.5) ** 2 + (x - 7.5) ** 2 <= 5.0**2).astype(np.uint8)
    src = viewer.add_labels(sphere, name="ball", scale=(2.0, 1.0, 1.0))
    panel = dock(OccupancyPanel, steps=60, lr=0.01)  # enough for the field to cross 0.5 everywhere inside
    panel._volume.value = src

    run_panel(panel)

    prob, labels, surface = panel.last_layers
    assert type(labels).__name__ == "Labels" and type(surface).__name__ == "Surface"
    assert prob.data.shape == labels.data.shape == (n, n, n)
    np.testing.assert_array_equal(labels.data, (prob.data >= 0.5).astype(np.uint8))
    assert tuple(surface.scale) == tuple(prob.scale) == (2.0, 1.0, 1.0)
    verts, faces = surface.data[0], surface.data[1]
    assert len(verts) > 0 and len(faces) > 0
    assert "iou" in prob.metadata["metrics"] and labels.metadata["level"] == 0.5
    np.testing.assert_array_equal(src.data, sphere)


def test_occupancy_rejects_wrong_layer_types_and_2d_data(viewer, dock, notes):
    panel = dock(OccupancyPanel)
    viewer.add_points(np.zeros((3, 3)), name="pts")
    panel.reset_choices()
    panel._volume.value = viewer.layers["pts"]
    panel.run()
    viewer.add_image(np.ones((8, 8), np.float32), name="flat")
    panel.reset_choices()
    panel._volume.value = viewer.layers["flat"]
    panel.run()
    first, second = notes.errors()
    assert "Labels or Image" in first and "Points" in first
    assert "3-D" in second and "(8, 8)" in second
    assert not panel.running


# ----------------------------------------------------------------------------------- PINN
def test_pinn_adds_prediction_exact_error_and_profile_plot(viewer, dock, run_panel):
    from napari_nestnet._plots import PinnProfileViewer

    panel = dock(PinnConvectionPanel, steps=30, beta=1.0, nx=32, nt=16)

    run_panel(panel)

    pred, exact, error = panel.last_layers
    assert pred.name.startswith("pinn_prediction [nestnet] rel. L2 ")
    assert exact.name == "pinn_exact β=1" and error.name.startswith("pinn_error [nestnet] max=")
    assert pred.data.shape == exact.data.shape == error.data.shape == (32, 16)
    # the physical grid: x in [0, 2π] down the rows, t in [0, 1] across the columns, labelled
    np.testing.assert_allclose(pred.scale, (2 * np.pi / 31, 1 / 15))
    assert tuple(pred.scale) == tuple(exact.scale) == tuple(error.scale)
    assert tuple(pred.axis_labels) == ("x", "t") and pred.colorbar.visible
    np.testing.assert_allclose(error.data, np.abs(pred.data - exact.data), rtol=1e-6)
    rel = pred.metadata["metrics"]["rel_l2"]
    assert f"rel. L2 {rel:.3g}" in pred.name and pred.metadata["parameters"]["beta"] == 1.0
    # the u(x) plot was docked and shows this fit's column j against the exact one
    profile = panel._profile
    assert isinstance(profile, PinnProfileViewer) and profile.current.result is panel.last_result
    profile.set_time_index(5)
    x, u, u_exact, t = profile.profiles()
    np.testing.assert_array_equal(u, pred.data[:, 5])
    np.testing.assert_array_equal(u_exact, exact.data[:, 5])
    assert x.shape == (32,) and np.isfinite(t)
    assert len(profile.figure.axes[0].lines) == 2


# ----------------------------------------------------------------------------------- cancel, refusal, errors
def test_cancel_keeps_the_result_so_far_and_a_second_run_is_refused(viewer, dock, qtbot, notes, image):
    viewer.add_image(image(32), name="picture")
    panel = dock(FitImagePanel, steps=100_000)
    panel.run()
    assert panel.running
    qtbot.waitUntil(lambda: panel.progress_updates >= 3, timeout=30_000)
    worker = panel._worker

    panel.run()  # refused politely: the same worker keeps going
    assert panel._worker is worker
    assert any("already running" in m for m in notes.messages("info"))

    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)  # stops within a step or so
    result = panel.last_layers[0]
    assert result.metadata["stopped_by"] == "cancelled" and 1 <= result.metadata["steps"] < 100_000
    assert panel.last_result.cancelled and "cancelled" in panel.status
    assert any("cancelled" in m for m in notes.messages("info"))
    assert not notes.errors()


def test_nan_input_is_one_error_line_and_nothing_runs(viewer, dock, notes, image):
    data = image(16)
    data[3, 4] = np.nan
    viewer.add_image(data, name="holes")
    panel = dock(DenoisePanel)
    panel.run()
    assert not panel.running
    [message] = notes.errors()
    assert "NaN" in message and "holes" in message and "\n" not in message


def test_cuda_is_offered_only_where_there_is_one_and_the_indicator_says_what_runs(viewer, dock):
    import torch

    panel = dock(FitImagePanel)
    choices = list(panel.field("device").choices)
    indicator = panel._indicator.value
    if torch.cuda.is_available():
        assert "cuda" in choices and indicator.startswith("GPU")
    else:
        assert choices == ["auto", "cpu"] and indicator.startswith("CPU")
    assert panel._indicator.tooltip


def test_a_task_error_in_the_worker_becomes_one_line(viewer, dock, run_panel, notes, image):
    viewer.add_image(image(16), name="noisy")
    viewer.add_image(image(20), name="wrong size")
    panel = dock(DenoisePanel)
    panel._image.value = viewer.layers["noisy"]
    panel._ref.value = viewer.layers["wrong size"]
    n_layers = len(viewer.layers)

    run_panel(panel)

    [message] = notes.errors()
    assert message.startswith("Denoise: ") and "\n" not in message and "Traceback" not in message
    assert len(viewer.layers) == n_layers and panel.status.startswith("failed")


def test_no_layer_chosen_is_an_error_not_a_crash(viewer, dock, notes):
    panel = dock(FitImagePanel)
    panel.run()
    [message] = notes.errors()
    assert "choose an image layer first" in message


def test_progress_is_handled_on_the_main_thread_while_the_task_runs_off_it(viewer, dock, run_panel, image,
                                                                         monkeypatch):
    import threading

    from napari_nestnet._panel import TaskPanel

    seen: list[tuple[bool, bool]] = []
    original = TaskPanel._on_progress

    def probe(self, info):
        seen.append((threading.current_thread() is threading.main_thread(), self.running))
        return original(self, info)

    monkeypatch.setattr(TaskPanel, "_on_progress", probe)
    viewer.add_image(image(16), name="picture")
    panel = dock(FitImagePanel, steps=20, preview_every=5)
    run_panel(panel)
    assert seen and all(on_main for on_main, _ in seen)  # layers and widgets are touched only there
    assert any(running for _, running in seen)  # ... while the fit ran in the worker thread
