"""The panels' parameter fields are generated from the task descriptions (``reconstruct.tasks.SPECS``)."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

from napari_nestnet._fields import NONE_CHOICE, ParamFields
from napari_nestnet._widgets import PANELS, CTReconstructionPanel, SuperResolvePanel

pytestmark = pytest.mark.gui


def _panel(viewer, cls):
    panel = cls(viewer)
    viewer.window.add_dock_widget(panel, name=cls.title)
    return panel


@pytest.mark.parametrize("task", list(PANELS))
def test_every_gui_param_of_the_spec_has_a_field_with_its_default_choices_and_help(viewer, task):
    from reconstruct.tasks import FIT_PARAMS, SPECS, TASKS

    spec = SPECS[task]
    panel = _panel(viewer, PANELS[task])
    assert panel.spec is spec
    signature = inspect.signature(TASKS[task]).parameters
    for param in spec.params_for("gui"):
        field = panel.field(param.name)
        assert field.name == param.name
        assert param.help in field.tooltip and (param.units in field.tooltip)
        # the value read back is the spec's default, which is the task function's default
        assert panel.params.value(param.name) == param.default == signature[param.name].default
        if param.default is not None:
            assert field.value == param.default
        if param.choices is not None:
            offered = list(field.choices)
            assert offered == ([NONE_CHOICE] if param.optional else []) + list(param.choices)
    assert set(panel.param_kwargs()) == {p.name for p in spec.params_for("gui")}
    # the parameters the GUI leaves out have no field
    for param in spec.params:
        if "gui" not in param.doors:
            with pytest.raises(KeyError):
                panel.field(param.name)
    # the common fit settings, from FIT_PARAMS; steps default to the task's own where a GPU runs them,
    # else to the panel's CPU steps (about a minute on its sample)
    from napari_nestnet._device import has_cuda

    expected_steps = spec.default_steps if has_cuda() or PANELS[task].cpu_steps is None else PANELS[task].cpu_steps
    assert panel.field("steps").value == expected_steps == PANELS[task].default_steps()
    for param in FIT_PARAMS:
        if "gui" in param.doors:
            assert param.help in panel.field(param.name).tooltip
    common = panel.common_kwargs()
    assert set(common) == {p.name for p in FIT_PARAMS if "gui" in p.doors}
    assert common["lr"] is None and common["time_budget_s"] is None  # 0 = None: the task's defaults
    width = PANELS[task].default_width()  # 256, or the panel's CPU width without a GPU
    assert common["model_kwargs"] == {"hidden_channels": (width, width)}  # the hidden-width convenience


def test_ct_panel_defaults_are_the_task_functions(viewer):
    from reconstruct.tasks import ct_reconstruct

    defaults = inspect.signature(ct_reconstruct).parameters
    panel = _panel(viewer, CTReconstructionPanel)
    assert panel.field("tv_weight").value == defaults["tv_weight"].default
    assert panel.field("data_filter").value == defaults["data_filter"].default
    assert panel.field("circle").value is defaults["circle"].default
    assert isinstance(panel.field("tv_weight"), FloatSpinBox)
    assert panel.field("tv_weight").native.decimals() >= 4  # 1e-3 is shown, not rounded to 0.00


def test_ct_fields_reach_the_task_and_its_report_is_the_layer_metadata(viewer, dock, run_panel):
    from skimage.transform import radon

    size = 24
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    phantom = ((yy**2 + xx**2) < (size / 3) ** 2).astype(np.float32)
    angles = np.linspace(0.0, 180.0, 16, endpoint=False)
    sino = radon(phantom, theta=angles, circle=True).astype(np.float32)
    viewer.add_image(sino, name="sino", metadata={"angles_deg": angles.tolist()})
    panel = dock(CTReconstructionPanel, steps=5, tv_weight=0.002, data_filter=NONE_CHOICE, circle=False,
                 filter_name="hann")
    job = panel.make_job()
    assert job.kwargs["data_filter"] is None and job.kwargs["circle"] is False
    assert job.kwargs["tv_weight"] == 0.002 and job.kwargs["steps"] == 5

    run_panel(panel)

    recon, fbp = panel.last_layers
    ran = recon.metadata["parameters"]
    assert ran["task"] == "ct_reconstruct" and ran["tv_weight"] == 0.002 and ran["data_filter"] is None
    assert ran["circle"] is False and ran["angles_deg"] == angles.tolist() and ran["output_size"] == size
    assert ran["model_kwargs"]["hidden_channels"] == [32, 32]
    assert recon.metadata["inputs"] == {"sinogram": "sino", "reference": None}
    assert recon.metadata["output"] == recon.name
    # steps run: the held-out run of the TV weight the search chose (5), then its refit on every projection
    stop = recon.metadata["stop"]
    assert stop["rule"] == "held_out" and 1 <= stop["refit_steps"] <= 5
    assert recon.metadata["steps"] == 5 + stop["refit_steps"]
    assert recon.metadata["tv_search"]["chosen"] in [w["tv_weight"] for w in recon.metadata["tv_search"]["weights"]]
    assert fbp.name == "ct_fbp [hann]" and fbp in viewer.layers  # no reference: no metrics in the names
    assert recon.name == "ct_reconstruction [nestnet]"


def test_a_bad_field_value_is_one_error_line_naming_the_parameter(viewer, dock, notes):
    viewer.add_image(np.zeros((8, 8), np.float32), name="lowres")
    panel = dock(SuperResolvePanel)
    panel.field("lr_decay").value = 0.0  # (0, 1]: 0 is excluded
    panel.run()
    [message] = notes.errors()
    assert "lr_decay" in message and "\n" not in message and not panel.running


def test_a_new_param_in_a_spec_appears_in_the_panel_without_a_panel_edit(viewer, monkeypatch):
    from reconstruct.tasks import SPECS, Param

    spec = SPECS["super_resolve"]
    extra = (Param("knob", float, 0.25, "a new knob", low=0.0, high=1.0),
             Param("mode", str, None, "a new mode", choices=("a", "b"), optional=True),
             Param("count", int, None, "a new count", low=1, optional=True, gui_high=99),
             Param("hidden", int, 3, "not for the GUI", doors=frozenset({"cli"})))
    monkeypatch.setitem(SPECS, "super_resolve", dataclasses.replace(spec, params=spec.params + extra))
    panel = _panel(viewer, SuperResolvePanel)
    assert isinstance(panel.field("knob"), FloatSpinBox) and panel.field("knob").value == 0.25
    assert list(panel.field("mode").choices) == [NONE_CHOICE, "a", "b"]
    assert isinstance(panel.field("count"), SpinBox) and panel.field("count").max == 99
    panel.field("mode").value = "b"
    panel.field("count").value = 7
    defaults = {p.name: p.default for p in spec.params_for("gui")}  # scale, the stop rule, ...
    assert panel.param_kwargs() == {**defaults, "knob": 0.25, "mode": "b", "count": 7}
    with pytest.raises(KeyError):
        panel.field("hidden")


def test_widgets_by_type_and_how_none_is_given(qtbot):
    from reconstruct.tasks import Param

    fields = ParamFields([
        Param("flag", bool, True, "a switch"),
        Param("size", int, None, "a size (None: automatic)", low=2, optional=True, gui_high=64),
        Param("weight", float, 1e-3, "a small weight", low=0.0, gui_high=10.0),
        Param("budget", float, None, "seconds (None: no limit)", low=0.0, low_open=True, optional=True, units="s"),
        Param("kind", str, "x", "a kind", choices=("x", "y"), optional=True),
        Param("weights", tuple, (1.0, 10.0), "two weights", length=2),
        Param("offset", int, None, "any integer or None", optional=True),
        Param("args", dict, None, "network arguments", optional=True),
    ])
    kinds = {name: type(widget) for name, widget in fields.widgets.items()}
    assert kinds == {"flag": CheckBox, "size": SpinBox, "weight": FloatSpinBox, "budget": FloatSpinBox,
                     "kind": ComboBox, "weights": LineEdit, "offset": LineEdit, "args": LineEdit}
    assert fields.values() == {"flag": True, "size": None, "weight": 1e-3, "budget": None, "kind": "x",
                               "weights": (1.0, 10.0), "offset": None, "args": None}
    assert "0 = None" in fields["size"].tooltip and "[s]" in fields["budget"].tooltip
    assert fields["budget"].label == "budget (s)"
    fields["size"].value, fields["budget"].value, fields["kind"].value = 16, 2.5, NONE_CHOICE
    fields["weights"].value, fields["offset"].value, fields["args"].value = "3; 4", "-5", '{"num_frequencies": 8}'
    assert fields.values() == {"flag": True, "size": 16, "weight": 1e-3, "budget": 2.5, "kind": None,
                               "weights": (3.0, 4.0), "offset": -5, "args": {"num_frequencies": 8}}
    fields["size"].value = 1  # below low: the Param's own check says so
    with pytest.raises(ValueError, match="size must be"):
        fields.values()
