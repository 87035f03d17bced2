"""The learned-activations viewer follows the fits the panels finish."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nestnet._plots import ActivationsViewer, PinnProfileViewer
from napari_nestnet._widgets import FitImagePanel

pytestmark = pytest.mark.gui


def _texts(figure) -> str:
    return " ".join(t.get_text() for ax in figure.axes for t in ax.texts)


def test_activations_viewer_shows_the_newest_nestnet_fit(viewer, dock, run_panel, image):
    plot = ActivationsViewer(viewer)
    viewer.window.add_dock_widget(plot, name="Learned activations")
    assert plot.current is None and "No fitted NestNet" in _texts(plot.figure)

    viewer.add_image(image(16), name="picture")
    panel = dock(FitImagePanel, steps=10)
    run_panel(panel)

    assert plot.current is not None and plot.current.label == "fit_image [nestnet]"
    model = panel.last_result.model
    acts = list(model.activations)
    assert len(plot.figure.axes) == len(acts)
    for ax, act in zip(plot.figure.axes, acts):
        x, y = act.curve(-2.0, 2.0, 201)
        learned = [line for line in ax.lines if line.get_label().startswith("ϱ")]
        assert len(learned) == act.num_subnets
        for k, line in enumerate(learned):
            np.testing.assert_allclose(line.get_ydata(), y[k].numpy(), rtol=1e-6)
        assert any(line.get_label() == "initial" for line in ax.lines)

    # a SIREN fit has no learned activations: the list keeps only the NestNet fit
    panel._model.value = "siren"
    run_panel(panel)
    assert plot.fit_choice.count() == 1 and plot.current.label == "fit_image [nestnet]"

    # a narrower z range redraws the same fit
    plot.half_range.setValue(0.5)
    x_drawn = plot.figure.axes[0].lines[-1].get_xdata()
    assert x_drawn.min() == pytest.approx(-0.5) and x_drawn.max() == pytest.approx(0.5)


def test_pinn_profile_viewer_without_a_fit_says_so(viewer):
    plot = PinnProfileViewer(viewer)
    assert plot.profiles() is None and "No PINN fit" in _texts(plot.figure)
