"""Dock widgets with matplotlib plots: the learned NestNet activations and the PINN profile u(x) at t.

Both follow :data:`napari_nestnet._results.RECENT_FITS`: they redraw when a panel finishes a fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ._results import RECENT_FITS, RecentFit

if TYPE_CHECKING:
    import napari

__all__ = ["ActivationsViewer", "PinnProfileViewer", "has_nested_activations", "nested_network"]


def has_nested_activations(model: Any) -> bool:
    """Whether ``model`` has NestNet's learned activations (``model.activations[i].curve``)."""
    acts = getattr(model, "activations", None)
    return acts is not None and len(acts) > 0 and all(hasattr(a, "curve") for a in acts)


def nested_network(model: Any) -> Any | None:
    """``model`` or the first of its submodules with learned activations (tasks may wrap the network)."""
    if has_nested_activations(model):
        return model
    modules = getattr(model, "modules", None)
    if modules is None:
        return None
    return next((m for m in modules() if has_nested_activations(m)), None)


def _theme_colors(viewer: Any) -> tuple[str, str]:
    """(background, foreground) of the viewer's theme, so the plot does not glare in the dark theme."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return theme.canvas.as_hex(), theme.text.as_hex()
    except Exception:  # an unknown theme name: plain matplotlib colours are fine
        return "#ffffff", "#000000"


class _PlotWidget(QWidget):
    """A QWidget with a themed matplotlib figure that listens to the recent-fits registry."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._bg, self._fg = _theme_colors(viewer)
        self.figure = Figure(figsize=(4, 3), facecolor=self._bg, tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)
        layout = QVBoxLayout(self)
        self.form = QFormLayout()
        layout.addLayout(self.form)
        layout.addWidget(self.canvas)
        RECENT_FITS.changed.connect(self._registry_changed)

    def _registry_changed(self) -> None:
        try:
            self.refresh()
        except RuntimeError:  # the Qt side was deleted (dock closed): stop listening
            RECENT_FITS.changed.disconnect(self._registry_changed)

    def refresh(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _style(self, ax: Any) -> None:
        ax.set_facecolor(self._bg)
        for spine in ax.spines.values():
            spine.set_color(self._fg)
        ax.tick_params(colors=self._fg, labelsize=8)
        ax.xaxis.label.set_color(self._fg)
        ax.yaxis.label.set_color(self._fg)
        ax.title.set_color(self._fg)

    def _message(self, text: str) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        ax.set_axis_off()
        ax.text(0.5, 0.5, text, ha="center", va="center", color=self._fg, fontsize=9, wrap=True)
        self.canvas.draw_idle()


class ActivationsViewer(_PlotWidget):
    """Plots the learned activation curves ϱ of a fitted NestNet (the paper's figure of them).

    One panel per distinct activation module (one when the subnetworks are shared across layers), one
    curve per subnetwork, and the prescribed initial curve dashed for comparison.  The newest NestNet
    fit is shown when a fit finishes; older ones can be picked in the list.

    Args:
        viewer: the napari viewer (for its theme).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.fit_choice = QComboBox()
        self.half_range = QDoubleSpinBox()
        self.half_range.setRange(0.1, 100.0)
        self.half_range.setSingleStep(0.5)
        self.half_range.setValue(2.0)
        self.half_range.setToolTip("curves are drawn for z in [-r, r]")
        self.form.addRow("fit", self.fit_choice)
        self.form.addRow("z range ±", self.half_range)
        self.fit_choice.currentIndexChanged.connect(lambda _: self.draw())
        self.half_range.valueChanged.connect(lambda _: self.draw())
        #: The fit currently plotted (``None`` when there is none).
        self.current: RecentFit | None = None
        self.refresh()

    def _fits(self) -> list[RecentFit]:
        return RECENT_FITS.fits(lambda f: nested_network(getattr(f.result, "model", None)) is not None)

    def refresh(self) -> None:
        """Re-list the NestNet fits and show the newest."""
        fits = self._fits()
        self.fit_choice.blockSignals(True)
        self.fit_choice.clear()
        for fit in fits:
            self.fit_choice.addItem(f"{fit.label} ({fit.task})")
        self.fit_choice.setCurrentIndex(len(fits) - 1)
        self.fit_choice.blockSignals(False)
        self.draw()

    def draw(self) -> None:
        """Plot the chosen fit's curves."""
        fits = self._fits()
        index = self.fit_choice.currentIndex()
        if not fits or not 0 <= index < len(fits):
            self.current = None
            self._message("No fitted NestNet yet.\nRun a panel with model 'nestnet'.")
            return
        self.current = fits[index]
        self.plot_model(nested_network(self.current.result.model), title=self.current.label)

    def plot_model(self, model: Any, title: str = "") -> None:
        """Plot ``model.activations[i].curve()`` for every activation module of ``model``."""
        from monai_nets.activations import NestedActivation

        r = float(self.half_range.value())
        acts = list(model.activations)
        self.figure.clear()
        axes = self.figure.subplots(1, len(acts), squeeze=False)[0]
        for i, (ax, act) in enumerate(zip(axes, acts)):
            x, y = act.curve(-r, r, 201)
            x, y = x.numpy(), y.numpy()
            if getattr(act, "init", "prescribed") == "prescribed":
                fresh = NestedActivation(act.height, act.num_subnets)
                _, y0 = fresh.curve(-r, r, 201)
                ax.plot(x, y0.numpy()[0], "--", color=self._fg, alpha=0.45, lw=1, label="initial")
            for k in range(y.shape[0]):
                ax.plot(x, y[k], lw=1.6, label=f"ϱ{k + 1}")
            name = "shared" if len(acts) == 1 else f"layer {i + 1}"
            ax.set_title(f"{name} (height {getattr(act, 'height', '?')})", fontsize=9)
            ax.set_xlabel("z (pre-activation)", fontsize=8)
            if i == 0:
                ax.set_ylabel("ϱ(z) (learned activation)", fontsize=8)
            self._style(ax)
            ax.legend(fontsize=7, facecolor=self._bg, labelcolor=self._fg, edgecolor=self._fg)
        if title:
            self.figure.suptitle(title, color=self._fg, fontsize=9)
        self.canvas.draw_idle()


class PinnProfileViewer(_PlotWidget):
    """u(x) at a chosen t of the newest PINN fit, against the exact solution.

    Args:
        viewer: the napari viewer (for its theme).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.time_slider = QSlider(Qt.Orientation.Horizontal)
        self.time_label = QLabel("t = –")
        self.form.addRow("t", self.time_slider)
        self.form.addRow("", self.time_label)
        self.time_slider.valueChanged.connect(lambda _: self.draw())
        #: The PINN fit currently plotted (``None`` when there is none).
        self.current: RecentFit | None = None
        self.refresh()

    def refresh(self) -> None:
        """Follow the newest PINN fit (keeps the relative position of the t slider)."""
        fit = RECENT_FITS.latest(lambda f: f.task == "solve_convection")
        if fit is not self.current:
            old_max = max(self.time_slider.maximum(), 1)
            fraction = self.time_slider.value() / old_max if self.current is not None else 0.5
            self.current = fit
            if fit is not None:
                nt = np.asarray(fit.result.output).shape[1]
                self.time_slider.blockSignals(True)
                self.time_slider.setRange(0, nt - 1)
                self.time_slider.setValue(round(fraction * (nt - 1)))
                self.time_slider.blockSignals(False)
        self.draw()

    def set_time_index(self, index: int) -> None:
        """Show the profile at column ``index`` of the (x, t) grid."""
        self.time_slider.setValue(int(index))
        self.draw()

    def profiles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        """``(x, u_predicted, u_exact, t)`` at the chosen time, or ``None`` without a PINN fit."""
        if self.current is None:
            return None
        result = self.current.result
        pred = np.asarray(result.output)
        exact = np.asarray(result.extras["exact"])
        j = min(max(self.time_slider.value(), 0), pred.shape[1] - 1)
        x = np.asarray(result.extras.get("x", np.arange(pred.shape[0]))).ravel()
        t = np.asarray(result.extras.get("t", np.arange(pred.shape[1]))).ravel()
        if x.size != pred.shape[0]:  # a meshgrid was stored: take the x of one column
            x = np.asarray(result.extras["x"]).reshape(pred.shape)[:, j]
        if t.size != pred.shape[1]:
            t = np.asarray(result.extras["t"]).reshape(pred.shape)[0]
        t_j = float(t[j])
        return x, pred[:, j], exact[:, j], t_j

    def draw(self) -> None:
        """Redraw the two curves."""
        data = self.profiles()
        if data is None:
            self.time_label.setText("t = –")
            self._message("No PINN fit yet.\nRun the 'PINN convection' panel.")
            return
        x, u, u_exact, t = data
        beta = self.current.parameters.get("beta")
        rel = self.current.result.metrics.get("rel_l2")
        self.time_label.setText(f"t = {t:.3g}")
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        ax.plot(x, u, color="#ff7f0e", lw=2.2, label=f"{self.current.model_name}")
        ax.plot(x, u_exact, "--", color=self._fg, lw=1.2, label="exact")  # on top: visible where they agree
        ax.set_xlabel("x", fontsize=8)
        ax.set_ylabel(f"u(x, t={t:.3g})", fontsize=8)
        title = f"β = {beta:g}" if beta is not None else ""
        if rel is not None:
            title += f"   rel. L2 = {rel:.3g}"
        ax.set_title(title, fontsize=9)
        self._style(ax)
        ax.legend(fontsize=7, facecolor=self._bg, labelcolor=self._fg, edgecolor=self._fg)
        self.canvas.draw_idle()
