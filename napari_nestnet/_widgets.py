"""The task panels: one magicgui container per ``reconstruct.tasks`` recipe.

Each panel picks its inputs from typed layer choices, adds the task's own fields above the common
ones (model, hidden width, steps, learning rate, device, seed, preview interval) and turns the
task's ``FitResult`` into layers.  See :mod:`napari_nestnet._panel` for the run machinery.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox, Widget, create_widget
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_warning

from ._panel import Job, TaskPanel, format_numbers, image_array, one_line, parse_numbers

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


def _layer_choice(label: str, kind: Any = Image, optional: bool = False, tooltip: str = "") -> Widget:
    annotation = Optional[kind] if optional else kind  # noqa: UP045 - magicgui reads typing.Optional
    return create_widget(annotation=annotation, label=label, options={"tooltip": tooltip} if tooltip else {})


def _reference(layer: Layer | None) -> np.ndarray | None:
    return None if layer is None else image_array(layer, "reference")


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
    """Scale/translate of an image ``factor`` times finer covering ``layer``'s last two axes.

    Low-resolution pixel i spans [i − ½, i + ½] in its own units; its ``factor`` sub-pixels have
    centres at i − ½ + (j + ½)/factor, so the fine grid starts ½(1/factor − 1) coarse pixels earlier.
    """
    scale = np.asarray(layer.scale[-2:], dtype=float)
    translate = np.asarray(layer.translate[-2:], dtype=float)
    return {"scale": tuple(scale / factor), "translate": tuple(translate + scale * (0.5 / factor - 0.5))}


# ---------------------------------------------------------------------------------------- images
class FitImagePanel(TaskPanel):
    """Fit an INR to a 2-D grey or RGB image (the representation benchmark); PSNR against the image."""

    task = "fit_image"
    title = "Fit image"
    output_name = "fit_image"

    def _task_widgets(self) -> list[Widget]:
        self._image = _layer_choice("image", tooltip="a 2-D grey or RGB image layer")
        return [self._image]

    def make_job(self) -> Job:
        layer = self._image.value
        image = image_array(layer, "image")
        _check_2d(image, layer, "image")
        kwargs = {**self.common_kwargs(), "reference": image.copy()}
        return Job(args=(image,), kwargs=kwargs, result_name=self.result_name(),
                   layer_kwargs={**self.source_geometry(layer, 2), **_display_kwargs(layer)},
                   parameters=self.common_parameters(), source=layer.name,
                   context={"image_meta": self.source_image_meta(layer)})


class DenoisePanel(TaskPanel):
    """Denoise an image by fitting an INR to it (the network's bias is the prior)."""

    task = "denoise"
    title = "Denoise"
    output_name = "denoised"

    def _task_widgets(self) -> list[Widget]:
        self._image = _layer_choice("noisy image", tooltip="a 2-D grey or RGB image layer")
        self._ref = _layer_choice("reference", optional=True, tooltip="clean image for PSNR/SSIM (optional)")
        return [self._image, self._ref]

    def make_job(self) -> Job:
        layer = self._image.value
        noisy = image_array(layer, "noisy image")
        _check_2d(noisy, layer, "noisy image")
        kwargs = {**self.common_kwargs(), "reference": _reference(self._ref.value)}
        ref_layer = self._ref.value
        return Job(args=(noisy,), kwargs=kwargs, result_name=self.result_name(),
                   layer_kwargs={**self.source_geometry(layer, 2), **_display_kwargs(layer)},
                   parameters={**self.common_parameters(), "reference": ref_layer.name if ref_layer else None},
                   source=layer.name, context={"image_meta": self.source_image_meta(layer)})


class SuperResolvePanel(TaskPanel):
    """Single-image super-resolution: fit the INR on the fine grid through average pooling."""

    task = "super_resolve"
    title = "Super-resolve"
    output_name = "super_resolved"

    def _task_widgets(self) -> list[Widget]:
        self._image = _layer_choice("low-res image", tooltip="a 2-D grey or RGB image layer")
        self._scale = SpinBox(label="scale", min=2, max=16, value=4, tooltip="upsampling factor per axis")
        self._ref = _layer_choice("reference", optional=True,
                                  tooltip="high-resolution ground truth for PSNR/SSIM (optional)")
        self.follow(self._image, self._sync_scale)
        return [self._image, self._scale, self._ref]

    def _sync_scale(self) -> None:
        layer = self._image.value
        factor = layer.metadata.get("scale") if layer is not None else None
        if isinstance(factor, int) and self._scale.min <= factor <= self._scale.max:
            self._scale.value = factor

    def make_job(self) -> Job:
        layer = self._image.value
        lowres = image_array(layer, "low-res image")
        _check_2d(lowres, layer, "low-res image")
        factor = int(self._scale.value)
        kwargs = {**self.common_kwargs(), "scale": factor, "reference": _reference(self._ref.value)}
        ref_layer = self._ref.value
        return Job(args=(lowres,), kwargs=kwargs, result_name=self.result_name(f"{self.output_name}_x{factor}"),
                   layer_kwargs={**_upsampled_geometry(layer, factor), **_display_kwargs(layer)},
                   parameters={**self.common_parameters(), "scale": factor,
                               "reference": ref_layer.name if ref_layer else None},
                   source=layer.name)


class MultiFrameSuperResolvePanel(TaskPanel):
    """Multi-frame super-resolution from K shifted/rotated low-resolution frames.

    The motions come from the frames layer's metadata (``shifts``: (K, 2) as (dy, dx) in
    high-resolution pixels; ``rotations``: (K,) radians; ``scale``) and can be edited here.
    """

    task = "super_resolve_multi"
    title = "Super-resolve (multi-frame)"
    output_name = "super_resolved_multi"

    def _task_widgets(self) -> list[Widget]:
        self._frames = _layer_choice("frames", tooltip="a (K, h, w) stack (or (K, h, w, 3) RGB) of frames")
        self._shifts = LineEdit(label="shifts (dy, dx)",
                                tooltip="one 'dy, dx' pair per frame in high-res pixels, separated by ';'")
        self._rotations = LineEdit(label="rotations (°)", tooltip="one angle per frame, in degrees")
        self._scale = SpinBox(label="scale", min=2, max=16, value=4)
        self._ref = _layer_choice("reference", optional=True,
                                  tooltip="high-resolution ground truth for PSNR/SSIM (optional)")
        self.follow(self._frames, self._sync_motion)
        return [self._frames, self._shifts, self._rotations, self._scale, self._ref]

    def _sync_motion(self) -> None:
        layer = self._frames.value
        md = layer.metadata if layer is not None else {}
        shifts, rotations = md.get("shifts"), md.get("rotations")
        if shifts is not None:
            rows = np.asarray(shifts, dtype=float).reshape(-1, 2)
            self._shifts.value = "; ".join(format_numbers(row) for row in rows)
        if rotations is not None:
            self._rotations.value = format_numbers(np.rad2deg(np.asarray(rotations, dtype=float).ravel()))
        factor = md.get("scale")
        if isinstance(factor, int) and self._scale.min <= factor <= self._scale.max:
            self._scale.value = factor

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
        factor = int(self._scale.value)
        kwargs = {**self.common_kwargs(), "shifts": shifts, "rotations": rotations, "scale": factor,
                  "reference": _reference(self._ref.value)}
        display = {"rgb": True} if layer.rgb else {"colormap": layer.colormap.name}
        ref_layer = self._ref.value
        return Job(args=(frames,), kwargs=kwargs, result_name=self.result_name(f"{self.output_name}_x{factor}"),
                   layer_kwargs={**_upsampled_geometry(layer, factor), **display},
                   parameters={**self.common_parameters(), "scale": factor, "frames": int(frames.shape[0]),
                               "shifts": shifts.tolist(), "rotations": rotations.tolist(),
                               "reference": ref_layer.name if ref_layer else None},
                   source=layer.name)


# ---------------------------------------------------------------------------------------- CT
class CTReconstructionPanel(TaskPanel):
    """Parallel-beam CT: fit the INR through a differentiable Radon transform; FBP beside it.

    The angles come from the sinogram layer's metadata (``angles_deg``, and ``layout``) when it has
    them (the sample data does), else from start/stop/count.
    """

    task = "ct_reconstruct"
    title = "CT reconstruction"
    output_name = "ct_reconstruction"

    def _task_widgets(self) -> list[Widget]:
        from reconstruct.radon import FILTER_NAMES

        self._sinogram = _layer_choice("sinogram", tooltip="a 2-D sinogram image layer")
        self._layout = ComboBox(label="layout", value="skimage", choices=[
            ("detectors × angles (scikit-image)", "skimage"), ("angles × detectors (torch-radon)", "torch")])
        self._angles_from_metadata = CheckBox(label="angles from layer metadata", value=False, enabled=False,
                                              tooltip="use layer.metadata['angles_deg'] when present")
        self._angle_start = FloatSpinBox(label="first angle (°)", min=-360.0, max=360.0, value=0.0)
        self._angle_stop = FloatSpinBox(label="last angle (°)", min=-360.0, max=720.0, value=180.0)
        self._angle_endpoint = CheckBox(label="include last angle", value=False)
        self._angle_count = SpinBox(label="angle count", min=1, max=100_000, value=180)
        self._output_size = SpinBox(label="output size", min=0, max=4096, value=0,
                                    tooltip="side of the reconstructed image (0 = number of detectors)")
        self._filter = ComboBox(label="FBP filter", choices=list(FILTER_NAMES), value=FILTER_NAMES[0])
        self._tv_weight = FloatSpinBox(label="TV weight", min=0.0, max=10.0, step=1e-4, value=0.0,
                                       tooltip="total-variation regulariser (helps on noisy sparse views)")
        self._ref = _layer_choice("reference", optional=True, tooltip="ground-truth image for PSNR/SSIM (optional)")
        self.follow(self._sinogram, self._sync_angles)
        self._layout.changed.connect(self._sync_count)
        self._angles_from_metadata.changed.connect(self._sync_manual_enabled)
        return [self._sinogram, self._layout, self._angles_from_metadata, self._angle_start, self._angle_stop,
                self._angle_endpoint, self._angle_count, self._output_size, self._filter, self._tv_weight, self._ref]

    @staticmethod
    def _metadata_angles(layer: Layer | None) -> np.ndarray | None:
        if layer is None or not isinstance(layer.metadata, dict) or layer.metadata.get("angles_deg") is None:
            return None
        return np.asarray(layer.metadata["angles_deg"], dtype=float).ravel()

    def _sync_angles(self) -> None:
        layer = self._sinogram.value
        angles = self._metadata_angles(layer)
        if layer is not None and layer.metadata.get("layout") in ("skimage", "torch"):
            self._layout.value = layer.metadata["layout"]
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
        self._angle_count.value = int(shape[1] if self._layout.value == "skimage" else shape[0])

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
        layout = self._layout.value
        validate_sinogram(sinogram, angles, layout)
        filter_name = self._filter.value
        kwargs = {**self.common_kwargs(), "layout": layout, "output_size": int(self._output_size.value) or None,
                  "filter_name": filter_name, "tv_weight": float(self._tv_weight.value),
                  "reference": _reference(self._ref.value)}
        ref_layer = self._ref.value
        parameters = {**self.common_parameters(), "layout": layout, "angles_deg": angles.tolist(),
                      "output_size": kwargs["output_size"], "filter_name": filter_name,
                      "tv_weight": kwargs["tv_weight"], "reference": ref_layer.name if ref_layer else None}
        return Job(args=(sinogram, angles), kwargs=kwargs, result_name=self.result_name(),
                   layer_kwargs={"colormap": "gray"}, parameters=parameters, source=layer.name)

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        layers = super().add_results(job, result)
        fbp = result.extras.get("fbp")
        if fbp is not None:
            filter_name = job.parameters["filter_name"]
            metrics = {k: float(v) for k, v in (result.extras.get("fbp_metrics") or {}).items()}
            layers.append(self._viewer.add_image(
                np.asarray(fbp), name=f"ct_fbp [{filter_name}]", colormap="gray",
                metadata={"task": "fbp", "filter_name": filter_name, "metrics": metrics,
                          "source_layer": job.source, "angles_deg": job.parameters["angles_deg"]}))
        return layers


# ---------------------------------------------------------------------------------------- occupancy
class OccupancyPanel(TaskPanel):
    """Fit an occupancy field to a binary volume; adds the probability, a Labels mask and a surface."""

    task = "fit_occupancy"
    title = "Occupancy volume"
    output_name = "occupancy"

    def _task_widgets(self) -> list[Widget]:
        self._volume = _layer_choice("volume", kind=Layer,
                                     tooltip="a 3-D Labels layer, or an Image layer (voxels ≥ 0.5 are inside)")
        self._batch = SpinBox(label="batch size", min=0, max=10_000_000, value=0,
                              tooltip="random voxels per step (0 = the task's default)")
        return [self._volume, self._batch]

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
        kwargs = {**self.common_kwargs(), "reference": volume.copy(), "spacing": geometry["scale"]}
        if int(self._batch.value):
            kwargs["batch_size"] = int(self._batch.value)
        return Job(args=(volume,), kwargs=kwargs, result_name=self.result_name(),
                   layer_kwargs={**geometry, "colormap": "gray", "contrast_limits": (0.0, 1.0)},
                   parameters={**self.common_parameters(), "batch_size": kwargs.get("batch_size")},
                   source=layer.name, context={"geometry": geometry, "image_meta": self.source_image_meta(layer)})

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
def _default(fn: Any, name: str, fallback: int) -> int:
    try:
        value = inspect.signature(fn).parameters[name].default
    except (KeyError, TypeError, ValueError):
        return fallback
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else fallback


class PinnConvectionPanel(TaskPanel):
    """Physics-informed solve of u_t + β u_x = 0; prediction, exact solution and error over (x, t).

    Rows of the images are x, columns are t.  A plot of u(x) at a chosen t against the exact curve is
    docked beside the viewer (the "PINN profile" widget).
    """

    task = "solve_convection"
    title = "PINN convection"
    output_name = "pinn_prediction"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._profile: Any = None
        super().__init__(viewer)
        self._preview_every.value = 50

    def _task_widgets(self) -> list[Widget]:
        from reconstruct.tasks import solve_convection

        self._beta = FloatSpinBox(label="β (speed)", min=0.01, max=200.0, step=0.5, value=5.0,
                                  tooltip="convection speed; 30 and up is the hard case")
        self._nx = SpinBox(label="x samples", min=8, max=4096, value=_default(solve_convection, "nx", 256))
        self._nt = SpinBox(label="t samples", min=4, max=4096, value=_default(solve_convection, "nt", 100))
        return [self._beta, self._nx, self._nt]

    def make_job(self) -> Job:
        beta = float(self._beta.value)
        kwargs = {**self.common_kwargs(), "nx": int(self._nx.value), "nt": int(self._nt.value)}
        # shown square, as (x, t) solution plots usually are: one t column is nx/nt x-pixels wide
        square = {"scale": (1.0, kwargs["nx"] / kwargs["nt"])}
        return Job(args=(beta,), kwargs=kwargs, result_name=self.result_name(),
                   layer_kwargs={"colormap": "viridis", **square},
                   parameters={**self.common_parameters(), "beta": beta, "nx": kwargs["nx"], "nt": kwargs["nt"]})

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        model = job.parameters["model"]
        beta = job.parameters["beta"]
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
