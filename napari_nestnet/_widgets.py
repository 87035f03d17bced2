"""The task panels: one magicgui container per ``reconstruct.tasks`` task.

Each panel picks its data inputs from typed layer choices (written here, per panel: they are what
is GUI-specific) and turns the task's ``FitResult`` into layers.  Every parameter field — the task's
own (``SPECS[task].params_for("gui")``) and the common fit settings — is generated from the task's
description by :class:`napari_nestnet._panel.TaskPanel`; a panel reads them back by name
(:meth:`~napari_nestnet._panel.TaskPanel.field`) only where an input fills one in (a scale or a
layout from the layer's metadata).  See :mod:`napari_nestnet._panel` for the run machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, LineEdit, SpinBox, Widget
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_warning

from ._fields import format_numbers, parse_numbers
from ._panel import Job, TaskPanel, image_array, layer_choice, one_line

if TYPE_CHECKING:
    import napari

__all__ = [
    "FitImagePanel",
    "DenoisePanel",
    "SuperResolvePanel",
    "MultiFrameSuperResolvePanel",
    "CTReconstructionPanel",
    "OccupancyPanel",
    "PinnConvectionPanel",
    "PANELS",
]


def _display_kwargs(layer: Image) -> dict:
    """Colormap and contrast of an input image layer, so its result is shown the same way."""
    if layer.rgb:
        return {"rgb": True}
    return {"colormap": layer.colormap.name, "contrast_limits": tuple(float(c) for c in layer.contrast_limits)}


def _check_2d(arr: np.ndarray, layer: Image, what: str) -> None:
    spatial = arr.ndim - (1 if layer.rgb else 0)
    if spatial != 2:
        raise ValueError(f"the {what} must be a 2-D grey or RGB image; {layer.name!r} has shape {arr.shape}")


def _upsampled_geometry(layer: Layer, factor: int) -> dict:
    """Scale/translate of the image ``factor`` times finer that covers ``layer``'s last two axes.

    The rule is :func:`reconstruct.grid.upsampled_grid`, the one every front door uses (napari's
    scale is the spacing, its translate the first pixel centre).
    """
    from reconstruct.grid import upsampled_grid

    spacing, origin = upsampled_grid(layer.scale[-2:], layer.translate[-2:], factor)
    return {"scale": spacing, "translate": origin}


def _sync_factor(panel: TaskPanel, layer: Layer | None) -> None:
    """Set the ``scale`` field from ``layer.metadata["scale"]`` (the up-sampling factor) when it fits."""
    field = panel.field("scale")
    factor = layer.metadata.get("scale") if layer is not None and isinstance(layer.metadata, dict) else None
    if isinstance(factor, int) and field.min <= factor <= field.max:
        field.value = factor


# ---------------------------------------------------------------------------------------- images
class FitImagePanel(TaskPanel):
    """Fit an INR to a 2-D grey or RGB image (the representation benchmark); PSNR against the image."""

    task = "fit_image"
    title = "Fit image"
    output_name = "fit_image"

    def _task_widgets(self) -> list[Widget]:
        self._image = layer_choice("image", tooltip="a 2-D grey or RGB image layer")
        return [self._image]

    def make_job(self) -> Job:
        layer = self._image.value
        image = image_array(layer, "image")
        _check_2d(image, layer, "image")
        return self.new_job((image,), source=layer, reference=image.copy(),
                            layer_kwargs={**self.source_geometry(layer, 2), **_display_kwargs(layer)},
                            context={"image_meta": self.source_image_meta(layer)})


class DenoisePanel(TaskPanel):
    """Denoise an image by fitting an INR to it (the network's bias is the prior)."""

    task = "denoise"
    title = "Denoise"
    output_name = "denoised"
    reference_tooltip = "clean image for PSNR/SSIM (optional)"

    def _task_widgets(self) -> list[Widget]:
        self._image = layer_choice("noisy image", tooltip="a 2-D grey or RGB image layer")
        return [self._image]

    def make_job(self) -> Job:
        layer = self._image.value
        noisy = image_array(layer, "noisy image")
        _check_2d(noisy, layer, "noisy image")
        return self.new_job((noisy,), source=layer,
                            layer_kwargs={**self.source_geometry(layer, 2), **_display_kwargs(layer)},
                            context={"image_meta": self.source_image_meta(layer)})


class SuperResolvePanel(TaskPanel):
    """Single-image super-resolution: fit the INR on the fine grid through average pooling.

    The ``scale`` field follows the image layer's ``metadata["scale"]`` when it has one.
    """

    task = "super_resolve"
    title = "Super-resolve"
    output_name = "super_resolved"
    reference_tooltip = "high-resolution ground truth for PSNR/SSIM (optional)"

    def _task_widgets(self) -> list[Widget]:
        self._image = layer_choice("low-res image", tooltip="a 2-D grey or RGB image layer")
        self.follow(self._image, lambda: _sync_factor(self, self._image.value))
        return [self._image]

    def make_job(self) -> Job:
        layer = self._image.value
        lowres = image_array(layer, "low-res image")
        _check_2d(lowres, layer, "low-res image")
        factor = self.params.value("scale")
        return self.new_job((lowres,), source=layer, result_name=self.result_name(f"{self.output_name}_x{factor}"),
                            layer_kwargs={**_upsampled_geometry(layer, factor), **_display_kwargs(layer)})


class MultiFrameSuperResolvePanel(TaskPanel):
    """Multi-frame super-resolution from K shifted/rotated low-resolution frames.

    The motions come from the frames layer's metadata (``shifts``: (K, 2) as (dy, dx) in
    high-resolution pixels; ``rotations``: (K,) radians; ``scale``) and can be edited here.
    """

    task = "super_resolve_multi"
    title = "Super-resolve (multi-frame)"
    output_name = "super_resolved_multi"
    reference_tooltip = "high-resolution ground truth for PSNR/SSIM (optional)"

    def _task_widgets(self) -> list[Widget]:
        self._frames = layer_choice("frames", tooltip="a (K, h, w) stack (or (K, h, w, 3) RGB) of frames")
        self._shifts = LineEdit(label="shifts (dy, dx)",
                                tooltip="one 'dy, dx' pair per frame in high-res pixels, separated by ';'")
        self._rotations = LineEdit(label="rotations (°)", tooltip="one angle per frame, in degrees")
        self.follow(self._frames, self._sync_motion)
        return [self._frames, self._shifts, self._rotations]

    def _sync_motion(self) -> None:
        layer = self._frames.value
        md = layer.metadata if layer is not None else {}
        shifts, rotations = md.get("shifts"), md.get("rotations")
        if shifts is not None:
            rows = np.asarray(shifts, dtype=float).reshape(-1, 2)
            self._shifts.value = "; ".join(format_numbers(row) for row in rows)
        if rotations is not None:
            self._rotations.value = format_numbers(np.rad2deg(np.asarray(rotations, dtype=float).ravel()))
        _sync_factor(self, layer)

    def _motion(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
        rows = [r for r in self._shifts.value.split(";") if r.strip()]
        if len(rows) != frames:
            raise ValueError(f"{frames} frames but {len(rows)} shifts; give one 'dy, dx' pair per frame, "
                             "separated by ';' (or load frames whose metadata has 'shifts')")
        shifts = []
        for row in rows:
            pair = parse_numbers(row, "each shift")
            if len(pair) != 2:
                raise ValueError(f"each shift is a 'dy, dx' pair; got {row.strip()!r}")
            shifts.append(pair)
        rotations = parse_numbers(self._rotations.value, "rotations") if self._rotations.value.strip() else []
        if not rotations:
            rotations = [0.0] * frames
        if len(rotations) != frames:
            raise ValueError(f"{frames} frames but {len(rotations)} rotations; give one angle (degrees) per frame")
        return np.asarray(shifts, dtype=float), np.deg2rad(np.asarray(rotations, dtype=float))

    def make_job(self) -> Job:
        layer = self._frames.value
        frames = image_array(layer, "frames")
        if frames.ndim - (1 if layer.rgb else 0) != 3:
            raise ValueError(f"the frames must be a (K, h, w) stack (or (K, h, w, 3) RGB); "
                             f"{layer.name!r} has shape {frames.shape}")
        shifts, rotations = self._motion(frames.shape[0])
        factor = self.params.value("scale")
        display = {"rgb": True} if layer.rgb else {"colormap": layer.colormap.name}
        return self.new_job((frames,), source=layer, shifts=shifts, rotations=rotations,
                            result_name=self.result_name(f"{self.output_name}_x{factor}"),
                            layer_kwargs={**_upsampled_geometry(layer, factor), **display})


# ---------------------------------------------------------------------------------------- CT
class CTReconstructionPanel(TaskPanel):
    """Parallel-beam CT: fit the INR through a differentiable Radon transform; FBP beside it.

    The angles come from the sinogram layer's metadata (``angles_deg``, and ``layout``) when it has
    them (the sample data does), else from start/stop/count.
    """

    task = "ct_reconstruct"
    title = "CT reconstruction"
    output_name = "ct_reconstruction"
    reference_tooltip = "ground-truth image for PSNR/SSIM (optional)"

    def _task_widgets(self) -> list[Widget]:
        self._sinogram = layer_choice("sinogram", tooltip="a 2-D sinogram image layer")
        self._angles_from_metadata = CheckBox(label="angles from layer metadata", value=False, enabled=False,
                                              tooltip="use layer.metadata['angles_deg'] when present")
        self._angle_start = FloatSpinBox(label="first angle (°)", min=-360.0, max=360.0, value=0.0)
        self._angle_stop = FloatSpinBox(label="last angle (°)", min=-360.0, max=720.0, value=180.0)
        self._angle_endpoint = CheckBox(label="include last angle", value=False)
        self._angle_count = SpinBox(label="angle count", min=1, max=100_000, value=180)
        self.follow(self._sinogram, self._sync_angles)
        self.field("layout").changed.connect(self._sync_count)
        self._angles_from_metadata.changed.connect(self._sync_manual_enabled)
        return [self._sinogram, self._angles_from_metadata, self._angle_start, self._angle_stop,
                self._angle_endpoint, self._angle_count]

    @staticmethod
    def _metadata_angles(layer: Layer | None) -> np.ndarray | None:
        if layer is None or not isinstance(layer.metadata, dict) or layer.metadata.get("angles_deg") is None:
            return None
        return np.asarray(layer.metadata["angles_deg"], dtype=float).ravel()

    def _sync_angles(self) -> None:
        layer = self._sinogram.value
        angles = self._metadata_angles(layer)
        layout = self.field("layout")
        if layer is not None and layer.metadata.get("layout") in layout.choices:
            layout.value = layer.metadata["layout"]
        self._angles_from_metadata.enabled = angles is not None
        self._angles_from_metadata.value = angles is not None
        if angles is not None and angles.size:
            self._angle_start.value = float(angles[0])
            self._angle_stop.value = float(angles[-1])
            self._angle_endpoint.value = True
            self._angle_count.value = int(angles.size)
        else:
            self._sync_count()
        self._sync_manual_enabled()

    def _sync_count(self) -> None:
        layer = self._sinogram.value
        if layer is None or self._angles_from_metadata.value or np.ndim(layer.data) != 2:
            return
        shape = layer.data.shape
        self._angle_count.value = int(shape[1] if self.field("layout").value == "skimage" else shape[0])

    def _sync_manual_enabled(self) -> None:
        manual = not self._angles_from_metadata.value
        for w in (self._angle_start, self._angle_stop, self._angle_endpoint, self._angle_count):
            w.enabled = manual

    def angles_deg(self) -> np.ndarray:
        """The projection angles (degrees) the next Run will use."""
        if self._angles_from_metadata.value:
            angles = self._metadata_angles(self._sinogram.value)
            if angles is not None:
                return angles
        return np.linspace(self._angle_start.value, self._angle_stop.value, int(self._angle_count.value),
                           endpoint=bool(self._angle_endpoint.value))

    def make_job(self) -> Job:
        from reconstruct.radon import validate_sinogram

        layer = self._sinogram.value
        sinogram = image_array(layer, "sinogram")
        if sinogram.ndim != 2:
            raise ValueError(f"the sinogram must be 2-D; {layer.name!r} has shape {sinogram.shape}")
        angles = self.angles_deg()
        validate_sinogram(sinogram, angles, self.params.value("layout"))
        return self.new_job((sinogram, angles), source=layer, layer_kwargs={"colormap": "gray"})

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        layers = super().add_results(job, result)
        fbp = result.extras.get("fbp")
        if fbp is not None:
            ran = self.reported_parameters(job, result)
            filter_name = ran.get("filter_name", job.parameters.get("filter_name"))
            angles = ran.get("angles_deg", np.asarray(job.args[1], dtype=float).tolist())
            metrics = {k: float(v) for k, v in (result.extras.get("fbp_metrics") or {}).items()}
            layers.append(self._viewer.add_image(
                np.asarray(fbp), name=f"ct_fbp [{filter_name}]", colormap="gray",
                metadata={"task": "fbp", "filter_name": filter_name, "metrics": metrics,
                          "source_layer": job.source, "angles_deg": angles}))
        return layers


# ---------------------------------------------------------------------------------------- occupancy
class OccupancyPanel(TaskPanel):
    """Fit an occupancy field to a binary volume; adds the probability, a Labels mask and a surface."""

    task = "fit_occupancy"
    title = "Occupancy volume"
    output_name = "occupancy"

    def _task_widgets(self) -> list[Widget]:
        self._volume = layer_choice("volume", kind=Layer,
                                    tooltip="a 3-D Labels layer, or an Image layer (voxels ≥ 0.5 are inside)")
        return [self._volume]

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
                            context={"geometry": geometry, "image_meta": self.source_image_meta(layer)})

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        from reconstruct.tasks import extract_surface

        layers = super().add_results(job, result)
        geometry = job.context["geometry"]
        metadata = self.result_metadata(job, result, level=0.5)
        inside = (np.asarray(result.output) >= 0.5).astype(np.uint8)
        layers.append(self._viewer.add_labels(inside, name=self.result_name("occupancy_labels"),
                                              metadata=metadata, **geometry))
        try:
            # in voxel indices: the layer's scale/translate place it, like the image and labels layers
            verts, faces = extract_surface(result, level=0.5, spacing=(1.0, 1.0, 1.0))
        except ValueError as exc:  # e.g. nothing crosses the level yet (a very early cancel)
            show_warning(f"{self.title}: no surface: {one_line(exc)}")
            return layers
        layers.append(self._viewer.add_surface((np.asarray(verts), np.asarray(faces)),
                                               name=self.result_name("occupancy_surface"),
                                               metadata=metadata, **geometry))
        return layers


# ---------------------------------------------------------------------------------------- PINN
class PinnConvectionPanel(TaskPanel):
    """Physics-informed solve of u_t + β u_x = 0; prediction, exact solution and error over (x, t).

    Rows of the images are x, columns are t.  A plot of u(x) at a chosen t against the exact curve is
    docked beside the viewer (the "PINN profile" widget).
    """

    task = "solve_convection"
    title = "PINN convection"
    output_name = "pinn_prediction"

    preview_every = 50

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._profile: Any = None
        super().__init__(viewer)

    def make_job(self) -> Job:
        grid = self.param_kwargs()
        # shown square, as (x, t) solution plots usually are: one t column is nx/nt x-pixels wide
        return self.new_job((), layer_kwargs={"colormap": "viridis", "scale": (1.0, grid["nx"] / grid["nt"])})

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        ran = self.reported_parameters(job, result)
        model, beta = ran.get("model", job.parameters.get("model")), ran.get("beta", job.parameters.get("beta"))
        prediction = np.asarray(result.output, dtype=np.float32)
        exact = np.asarray(result.extras["exact"], dtype=np.float32)
        error = result.extras.get("error")
        error = np.abs(prediction - exact) if error is None else np.asarray(error, dtype=np.float32)
        rel = result.metrics.get("rel_l2")
        # One colour scale for prediction and exact so they compare by eye.
        limits = (float(exact.min()), float(exact.max())) if exact.max() > exact.min() else None
        grid = {"x": np.asarray(result.extras.get("x")).ravel().tolist(),
                "t": np.asarray(result.extras.get("t")).ravel().tolist(), "axes": ["x", "t"]}
        metadata = self.result_metadata(job, result, grid=grid)
        rel_text = f" rel_l2={rel:.3g}" if rel is not None else ""
        kw = {"contrast_limits": limits} if limits else {}
        square = {"scale": job.layer_kwargs["scale"]}
        layers = [
            self._viewer.add_image(prediction, name=f"pinn_prediction [{model}]{rel_text}", colormap="viridis",
                                   metadata=metadata, **kw, **square),
            self._viewer.add_image(exact, name=f"pinn_exact β={beta:g}", colormap="viridis",
                                   metadata={"task": "exact", "beta": beta, "grid": grid}, **kw, **square),
            self._viewer.add_image(error, name=f"pinn_error [{model}] max={float(error.max()):.3g}",
                                   colormap="magma", metadata={"task": "error", "beta": beta, "grid": grid},
                                   **square),
        ]
        self._show_profile()
        return layers

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


#: Every task panel, by task name.
PANELS: dict[str, type[TaskPanel]] = {
    cls.task: cls
    for cls in (FitImagePanel, DenoisePanel, SuperResolvePanel, MultiFrameSuperResolvePanel,
                CTReconstructionPanel, OccupancyPanel, PinnConvectionPanel)
}
