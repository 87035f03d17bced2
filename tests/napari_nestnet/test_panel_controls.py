"""The panel's controls around a run: remembered settings, Restore defaults, Replace previous, Save,
tooltips everywhere, the progress line (rate, ETA, compile notice) and the verdict on a bad fit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from magicgui.widgets import Container, Label

from napari_nestnet._progress import RunMeter, summary, verdict
from napari_nestnet._widgets import PANELS, CTReconstructionPanel, DenoisePanel, FitImagePanel

pytestmark = pytest.mark.gui


def _leaves(widget):
    if isinstance(widget, Container):
        for child in widget:
            yield from _leaves(child)
    else:
        yield widget


def test_every_field_and_button_of_every_panel_has_a_tooltip(viewer):
    for cls in PANELS.values():
        panel = cls(viewer)
        leaves = list(_leaves(panel))
        missing = [w.label or w.name or type(w).__name__ for w in leaves if not (w.tooltip or "").strip()]
        assert not missing, f"{panel.title}: no tooltip on {missing}"
        assert any(isinstance(w, Label) and w.name == "device_indicator" for w in leaves)


def test_settings_are_remembered_and_restore_defaults_forgets_them(viewer, _settings_file):
    first = DenoisePanel(viewer)
    viewer.window.add_dock_widget(first, name="first")
    defaults = first.settings()
    first.field("lr_decay").value = 0.5
    first.field("seed").value = 7
    first.field("hidden_width").value = 64
    first.field("replace_previous").value = False
    first.remember_settings()  # (a Run does this too)
    stored = json.loads(_settings_file.read_text())
    assert stored["denoise"]["lr_decay"] == 0.5 and stored["denoise"]["hidden_width"] == 64

    second = DenoisePanel(viewer)  # the next session's panel
    assert second.field("lr_decay").value == 0.5 and second.field("seed").value == 7
    assert second.field("hidden_width").value == 64 and second.field("replace_previous").value is False
    assert CTReconstructionPanel(viewer).field("seed").value == 0  # per panel

    second.restore_defaults()
    assert second.settings() == defaults
    assert "denoise" not in json.loads(_settings_file.read_text())
    assert DenoisePanel(viewer).settings() == defaults


def test_a_remembered_value_this_machine_cannot_take_is_skipped(viewer, _settings_file):
    _settings_file.write_text(json.dumps({"fit_image": {"device": "cuda:7", "seed": 3, "steps": "many"}}))
    panel = FitImagePanel(viewer)
    assert panel.field("device").value == "auto" and panel.field("seed").value == 3
    assert panel.field("steps").value == FitImagePanel.default_steps()
    _settings_file.write_text("{not json")
    assert FitImagePanel(viewer).field("seed").value == 0  # an unreadable file: the defaults


def test_replace_previous_result_and_the_save_button(viewer, dock, run_panel, image, tmp_path, monkeypatch, notes):
    from reconstruct.io import read_image

    viewer.add_image(image(16), name="picture")
    panel = dock(FitImagePanel, steps=3)
    assert not panel._save_button.enabled
    run_panel(panel)
    first = panel.last_layers[0]
    run_panel(panel)
    assert first not in viewer.layers and panel.last_layers[0] in viewer.layers  # replaced
    panel.field("replace_previous").value = False
    run_panel(panel)
    results = [layer for layer in viewer.layers if layer.name.startswith("fit_image [nestnet]")]
    assert len(results) == 2  # kept beside the new one

    assert panel._save_button.enabled
    target = tmp_path / "fit.nii.gz"
    monkeypatch.setattr("qtpy.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), ""))
    panel._save_button.native.click()  # the dialog (answered above), then napari's writer of the plugin
    data, meta = read_image(target)
    np.testing.assert_allclose(np.squeeze(data), panel.last_layers[0].data, rtol=1e-6)
    assert any("saved" in m for m in notes.messages("info"))
    with pytest.warns(UserWarning, match="not a valid writer"):  # napari's own word on a .png
        assert panel.save_result(tmp_path / "fit.png") == []
    assert notes.errors()  # and one line from the panel


def test_progress_line_rate_eta_live_metric_and_compile_notice():
    meter = RunMeter(steps=100)
    assert "compiles NestNet's kernels" in meter.waiting_text(compile_hint=True)
    info = SimpleNamespace(step=1, steps=100, loss=0.5, metrics={"psnr": 12.0}, seconds=9.0)
    meter.update(info)
    assert "first step 9 s (kernel compile)" in meter.text()
    meter.update(SimpleNamespace(step=51, steps=100, loss=0.01, metrics={}, seconds=19.0))  # 5 steps/s after it
    text = meter.text()
    assert text.startswith("step 51/100") and "5 steps/s" in text and "ETA 0:10" in text
    assert "PSNR 12.00 dB" in text  # the last value seen stays on the line
    budget = RunMeter(steps=1000, time_budget_s=20.0)
    budget.update(SimpleNamespace(step=1, steps=1000, loss=1.0, metrics={}, seconds=1.0))
    budget.update(SimpleNamespace(step=11, steps=1000, loss=1.0, metrics={}, seconds=3.0))
    assert budget.eta_s == pytest.approx(17.0)  # the budget ends it before the steps


def _result(psnr, best_psnr=None, losses=(1.0, 0.5, 0.1), stopped="steps"):
    best = None if best_psnr is None else SimpleNamespace(step=3, metrics={"psnr": best_psnr})
    return SimpleNamespace(metrics={"psnr": psnr}, best=best, history=[{"loss": v} for v in losses],
                           stopped_by=stopped, steps=len(losses), seconds=1.0)


def test_the_verdict_on_diverged_and_worse_than_input_fits():
    assert verdict(_result(30.0, 30.5), {"FBP": {"psnr": 28.0}}) == ""
    assert "worse than noisy input (18.00 dB)" in verdict(_result(15.0), {"noisy input": {"psnr": 18.0}})
    assert verdict(_result(-43.7, 25.0)).startswith("diverged")
    assert "loss diverged" in verdict(_result(20.0, losses=(1.0, 0.01, 5.0)))
    assert "loss diverged" in verdict(_result(20.0, losses=(1.0, float("nan"))))
    assert summary(_result(31.2), {"FBP": {"psnr": 29.3}}).endswith("PSNR 31.20 dB · FBP 29.30 dB")


def test_a_diverging_run_says_so(viewer, dock, run_panel, image, notes):
    viewer.add_image(image(16), name="picture")
    panel = dock(FitImagePanel, steps=30, lr=1.0)  # far too large a learning rate
    run_panel(panel)
    assert "⚠" in panel.status and ("diverged" in panel.status or "lower the learning rate" in panel.status)
    assert notes.messages("warning") or notes.errors()
    if panel.last_layers:
        assert panel.last_layers[0].name.endswith("⚠")


def test_a_reference_on_another_value_scale_is_refused(viewer, dock, notes, image):
    clean = image(16)
    viewer.add_image((clean * 255).astype(np.uint8), name="noisy 8-bit")
    ref = viewer.add_image(clean, name="clean 0-1")
    panel = dock(DenoisePanel)
    panel._image.value = viewer.layers["noisy 8-bit"]
    panel._ref.value = ref
    panel.run()
    [message] = notes.errors()
    assert "different value scales" in message and not panel.running


def test_ct_angles_reach_the_task_in_the_unit_asked_for_and_classical_methods_are_named(viewer, run_panel):
    _, panel = viewer.window.add_plugin_dock_widget("napari-nestnet", "CT reconstruction")
    viewer.open_sample("napari-nestnet", "ct_sinogram", size=16, n_angles=8)
    angles = viewer.layers["ct_sinogram"].metadata["angles_deg"]
    panel.field("angle_unit").value = "radians"  # the panel's angles are degrees: it converts them
    panel.field("steps").value = 2
    run_panel(panel)
    recon = panel.last_layers[0]
    np.testing.assert_allclose(recon.metadata["parameters"]["angles_deg"], angles)
    assert recon.metadata["parameters"]["angle_unit"] == "radians"
    panel.field("method").value = "fbp"
    run_panel(panel)
    assert panel.last_layers[0].name.startswith("ct_reconstruction [fbp]")
