"""The occupancy and PINN panels: results that are not a picture on the input's grid.

Occupancy results open in 3-D showing the fitted surface (the probability volume and the mask are
added hidden: in 3-D a volume rendering hides the surface).  PINN results live on the physical
(x, t) grid of ``u_t + β u_x = 0``: their layers carry the axis labels, the physical scale and a
colorbar, and the panel states the equation, the domain and β.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Label, Widget
from napari.layers import Image, Labels, Layer, Surface
from napari.utils.notifications import show_warning

from ._output import labelled
from ._panel import Job, TaskPanel, image_array, one_line

if TYPE_CHECKING:
    import napari

__all__ = ["OccupancyPanel", "PinnConvectionPanel", "pinn_geometry", "EQUATION"]


def _volume_like(layer: Layer) -> bool:
    return isinstance(layer, (Labels, Image)) and not getattr(layer, "rgb", False) and layer.ndim == 3


# ---------------------------------------------------------------------------------------- occupancy
class OccupancyPanel(TaskPanel):
    """Fit an occupancy field to a binary volume; adds the probability, a Labels mask and a surface, in 3-D."""

    task = "fit_occupancy"
    title = "Occupancy volume"
    output_name = "occupancy"
    cpu_steps = 60  # 48³ torus, 65,536 voxels a step: ~1 s a step on 2 cores (40 steps: IoU 0.986 in 40 s)

    def _task_widgets(self) -> list[Widget]:
        self._volume = self.picker("volume", kind=Layer, accepts=_volume_like,
                                   prefers=lambda layer: isinstance(layer, Labels),
                                   tooltip="a 3-D Labels layer, or an Image layer (voxels ≥ 0.5 are inside)")
        return [self._volume.widget]

    def make_job(self) -> Job:
        layer = self._volume.value
        values = image_array(layer, "volume", kind=(Labels, Image))
        if values.ndim != 3 or (isinstance(layer, Image) and layer.rgb):
            raise ValueError(f"the volume must be 3-D (D, H, W); {layer.name!r} has shape {values.shape}")
        # Labels: any label is inside; images: a probability-like field thresholded at one half.
        volume = values > 0 if isinstance(layer, Labels) or np.issubdtype(layer.data.dtype, np.integer) \
            else values >= 0.5
        if not volume.any():
            raise ValueError(f"{layer.name!r} has no inside voxels; an occupancy fit needs some")
        geometry = self.source_geometry(layer, 3)
        # the voxel size keeps an anisotropic volume's aspect in the network's coordinates
        return self.new_job((volume,), source=layer, reference=volume.copy(), spacing=geometry["scale"],
                            layer_kwargs={**geometry, "colormap": "gray", "contrast_limits": (0.0, 1.0)},
                            context={"geometry": geometry, "image_meta": self.source_image_meta(layer),
                                     "source": layer})

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        from reconstruct.tasks import extract_surface

        self._shown_source = job.context.get("source")
        layers = super().add_results(job, result)
        layers[0].visible = False  # in 3-D the probability volume would hide the surface
        geometry = job.context["geometry"]
        metadata = self.result_metadata(job, result, level=0.5)
        inside = (np.asarray(result.output) >= 0.5).astype(np.uint8)
        layers.append(self._viewer.add_labels(inside, name=self.result_name("occupancy_labels"),
                                              metadata=metadata, visible=False, **geometry))
        try:
            # in voxel indices: the layer's scale/translate place it, like the image and labels layers
            verts, faces = extract_surface(result, level=0.5, spacing=(1.0, 1.0, 1.0))
        except ValueError as exc:  # e.g. nothing crosses the level yet (a very early cancel)
            show_warning(f"{self.title}: no surface: {one_line(exc)}")
            return layers
        verts = np.asarray(verts)
        # coloured by height (the first axis): a depth cue where the shading alone is flat
        layers.append(self._viewer.add_surface((verts, np.asarray(faces), verts[:, 0].copy()),
                                               name=labelled(self.result_name("occupancy_surface"), result.metrics),
                                               metadata=metadata, colormap="plasma", shading="smooth", **geometry))
        return layers

    def frame(self, layers: list[Layer]) -> None:
        """3-D, the surface alone in view (the input volume is hidden too: it would cover the surface)."""
        source = getattr(self, "_shown_source", None)
        if source is not None and source in self._viewer.layers and isinstance(layers[-1], Surface):
            source.visible = False
        self._viewer.layers.selection.active = layers[-1]
        self._viewer.dims.ndisplay = 3
        self._viewer.reset_view()


# ---------------------------------------------------------------------------------------- PINN
#: The problem the PINN panel solves, as it states it.
EQUATION = "u_t + β u_x = 0 · x ∈ [0, 2π] periodic · t ∈ [0, 1] · u(x, 0) = sin x · exact u = sin(x − βt)"


def pinn_geometry(nx: int, nt: int) -> dict:
    """napari keyword arguments of a layer on the PINN's (x, t) grid: physical scale, axis labels."""
    from reconstruct.pinn import T_RANGE, X_RANGE

    dx = (X_RANGE[1] - X_RANGE[0]) / max(nx - 1, 1)
    dt = (T_RANGE[1] - T_RANGE[0]) / max(nt - 1, 1)
    return {"scale": (dx, dt), "translate": (X_RANGE[0], T_RANGE[0]), "axis_labels": ("x", "t")}


class PinnConvectionPanel(TaskPanel):
    """Physics-informed solve of u_t + β u_x = 0; prediction, exact solution and error over (x, t).

    Rows of the images are x, columns are t, on the physical grid (x in [0, 2π], t in [0, 1]).  A
    plot of u(x) at a chosen t against the exact curve is docked beside the viewer (the "PINN
    profile" widget).
    """

    task = "solve_convection"
    title = "PINN convection"
    output_name = "pinn_prediction"
    preview_every = 50
    # On two CPU cores width 256 costs ~0.5-1 s a step (second derivatives through the nested
    # activations); width 64 runs the task's 1,000 steps in ~25 s to rel. L2 0.006 at β = 5.
    cpu_width = 64

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._profile: Any = None
        super().__init__(viewer)
        self.field("beta").changed.connect(self._describe)
        self._describe()

    def _task_widgets(self) -> list[Widget]:
        self._equation = Label(name="equation", label="solves", value=EQUATION,
                               tooltip="the 1-D convection equation with a periodic boundary; the network is "
                                       "trained on its residual, the initial condition and the boundary only")
        self._equation.native.setWordWrap(True)
        return [self._equation]

    def _describe(self, *_: Any) -> None:
        beta = self.field("beta").value
        self._equation.value = f"{EQUATION} · β = {beta:g}"

    def make_job(self) -> Job:
        grid = self.param_kwargs()
        return self.new_job((), layer_kwargs={"colormap": "viridis", **pinn_geometry(grid["nx"], grid["nt"])})

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        ran = self.reported_parameters(job, result)
        model, beta = ran.get("model", job.parameters.get("model")), ran.get("beta", job.parameters.get("beta"))
        prediction = np.asarray(result.output, dtype=np.float32)
        exact = np.asarray(result.extras["exact"], dtype=np.float32)
        error = result.extras.get("error")
        error = np.abs(prediction - exact) if error is None else np.asarray(error, dtype=np.float32)
        # One colour scale for prediction and exact so they compare by eye.
        limits = (float(exact.min()), float(exact.max())) if exact.max() > exact.min() else None
        grid = {"x": np.asarray(result.extras.get("x")).ravel().tolist(),
                "t": np.asarray(result.extras.get("t")).ravel().tolist(), "axes": ["x", "t"]}
        metadata = self.result_metadata(job, result, grid=grid)
        kw = {"contrast_limits": limits} if limits else {}
        geometry = pinn_geometry(*prediction.shape)
        name = labelled(f"pinn_prediction [{model}]", result.metrics, warning=bool(job.context.get("_verdict")))
        layers = [
            self._viewer.add_image(prediction, name=name, colormap="viridis", metadata=metadata, **kw, **geometry),
            self._viewer.add_image(exact, name=f"pinn_exact β={beta:g}", colormap="viridis",
                                   metadata={"task": "exact", "beta": beta, "grid": grid}, **kw, **geometry),
            self._viewer.add_image(error, name=f"pinn_error [{model}] max={float(error.max()):.3g}",
                                   colormap="magma", metadata={"task": "error", "beta": beta, "grid": grid},
                                   **geometry),
        ]
        for layer in (layers[0], layers[2]):  # the exact solution shares the prediction's scale
            layer.colorbar.visible = True
        self._show_profile()
        return layers

    def frame(self, layers: list[Layer]) -> None:
        """The (x, t) axes drawn with their labels, and the view fitted to the grid."""
        self._viewer.axes.visible = True
        self._viewer.axes.labels = True
        self._viewer.reset_view()

    def _show_profile(self) -> None:
        """Dock the u(x) plot once per panel (it follows the newest PINN fit by itself)."""
        from ._plots import PinnProfileViewer

        if self._profile is not None:
            try:
                self._profile.isVisible()
                return
            except RuntimeError:  # it was closed and deleted
                self._profile = None
        docked = getattr(self._viewer.window, "dock_widgets", {})
        for widget in list(docked.values()):
            if isinstance(widget, PinnProfileViewer):  # opened from the Plugins menu already
                self._profile = widget
                return
        self._profile = PinnProfileViewer(self._viewer)
        self._viewer.window.add_dock_widget(self._profile, name="PINN profile u(x) at t", area="right")

