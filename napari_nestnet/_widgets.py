"""The task panels: one magicgui container per ``reconstruct.tasks`` task.

Each panel picks its data inputs with layer pickers (:mod:`napari_nestnet._pickers`: a suitable
layer, never the ground truth; written here, per panel, because they are what is GUI-specific) and
turns the task's ``FitResult`` into layers.  Every parameter field — the task's own
(``SPECS[task].params_for("gui")``) and the common fit settings — is generated from the task's
description by :class:`napari_nestnet._panel.TaskPanel`; a panel reads them back by name
(:meth:`~napari_nestnet._panel.TaskPanel.field`) only where an input fills one in (a scale from the
layer's metadata; the CT pickers set every field their layer's metadata names).  The image and CT
panels are here; occupancy and the PINN in :mod:`napari_nestnet._widgets_3d`.  See
:mod:`napari_nestnet._panel` for the run machinery.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, LineEdit, SpinBox, Widget
from napari.layers import Layer

from ._fields import format_numbers, parse_numbers
from ._output import input_baseline, labelled, lowres_baseline
from ._panel import Job, TaskPanel, image_array
from ._pickers import image_with
from ._widgets_3d import OccupancyPanel, PinnConvectionPanel
from ._widgets_ct3d import CT3DReconstructionPanel

__all__ = [
    "FitImagePanel",
    "DenoisePanel",
    "SuperResolvePanel",
    "MultiFrameSuperResolvePanel",
    "CTReconstructionPanel",
    "CT3DReconstructionPanel",
    "OccupancyPanel",
    "PinnConvectionPanel",
    "PANELS",
]


def _md(layer: Layer | None) -> dict:
    md = getattr(layer, "metadata", None)
    return md if isinstance(md, dict) else {}


def _display_kwargs(layer: Layer) -> dict:
    """Colormap and contrast of an input image layer, so its result is shown the same way."""
    if layer.rgb:
        return {"rgb": True}
    return {"colormap": layer.colormap.name, "contrast_limits": tuple(float(c) for c in layer.contrast_limits)}


def _check_2d(arr: np.ndarray, layer: Layer, what: str) -> None:
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
    factor = _md(layer).get("scale")
    if isinstance(factor, int) and field.min <= factor <= field.max:
        field.value = factor


def _upsampled_shape(layer: Layer | None, factor: int, leading: int = 0) -> tuple[int, ...] | None:
    """The shape of ``layer``'s image ``factor`` times finer (``leading`` axes dropped: a frame axis)."""
    if layer is None:
        return None
    shape = tuple(int(s) for s in layer.data.shape)[leading:]
    spatial, channels = (shape[:-1], shape[-1:]) if layer.rgb else (shape, ())
    return tuple(s * factor for s in spatial) + channels


_IMAGE_TIP = "a 2-D grey or RGB image layer (filled with the active or newest one; never a ground truth)"


# ---------------------------------------------------------------------------------------- images
class FitImagePanel(TaskPanel):
    """Fit an INR to a 2-D grey or RGB image (the representation benchmark); PSNR against the image."""

    task = "fit_image"
    title = "Fit image"
    output_name = "fit_image"
    cpu_steps = 80  # 128² RGB sample, width 256: ~0.7 s a step on 2 cores (measured 60 steps in 45 s)

    def _task_widgets(self) -> list[Widget]:
        self._image = self.picker("image", accepts=image_with(2), tooltip=_IMAGE_TIP)
        return [self._image.widget]

    def make_job(self) -> Job:
        layer = self._image.value
        image = image_array(layer, "image")
        _check_2d(image, layer, "image")
        return self.new_job((image,), source=layer, reference=image.copy(),
                            layer_kwargs={**self.source_geometry(layer, 2), **_display_kwargs(layer)},
                            context={"image_meta": self.source_image_meta(layer)})


class DenoisePanel(TaskPanel):
    """Denoise an image by fitting an INR to it (the network's bias is the prior); the noisy input's
    PSNR against the reference is the baseline."""

    task = "denoise"
    title = "Denoise"
    output_name = "denoised"
    reference_tooltip = "clean image for PSNR/SSIM (optional)"
    cpu_steps = 100  # the task's own early stop (33 s on 2 cores: 23.3 dB from the 17.1 dB noisy input)

    def _task_widgets(self) -> list[Widget]:
        self._image = self.picker("noisy image", accepts=image_with(2), tooltip=_IMAGE_TIP)
        return [self._image.widget]

    def expected_reference_shape(self) -> tuple[int, ...] | None:
        layer = self._image.value
        return None if layer is None else tuple(int(s) for s in layer.data.shape)

    def make_job(self) -> Job:
        layer = self._image.value
        noisy = image_array(layer, "noisy image")
        _check_2d(noisy, layer, "noisy image")
        job = self.new_job((noisy,), source=layer,
                           layer_kwargs={**self.source_geometry(layer, 2), **_display_kwargs(layer)},
                           context={"image_meta": self.source_image_meta(layer)})
        job.baselines = input_baseline(noisy, job.kwargs.get("reference"), "noisy_input")
        return job


class SuperResolvePanel(TaskPanel):
    """Single-image super-resolution: fit the INR on the fine grid through average pooling; bicubic beside it.

    The ``scale`` field follows the image layer's ``metadata["scale"]`` when it has one.
    """

    task = "super_resolve"
    title = "Super-resolve"
    output_name = "super_resolved"
    reference_tooltip = "high-resolution ground truth for PSNR/SSIM (optional)"
    cpu_steps = 200  # 32² → 128²: 50 s on 2 cores, 24.95 dB against bicubic's 24.45

    def _task_widgets(self) -> list[Widget]:
        self._image = self.picker("low-res image", accepts=image_with(2), tooltip=_IMAGE_TIP)
        self.follow(self._image, lambda: _sync_factor(self, self._image.value))
        return [self._image.widget]

    def expected_reference_shape(self) -> tuple[int, ...] | None:
        return _upsampled_shape(self._image.value, int(self.field("scale").value))

    def make_job(self) -> Job:
        layer = self._image.value
        lowres = image_array(layer, "low-res image")
        _check_2d(lowres, layer, "low-res image")
        factor = self.params.value("scale")
        job = self.new_job((lowres,), source=layer, result_name=self.result_name(f"{self.output_name}_x{factor}"),
                           layer_kwargs={**_upsampled_geometry(layer, factor), **_display_kwargs(layer)})
        job.baselines = lowres_baseline(lowres, factor, job.kwargs.get("reference"), rgb=layer.rgb)
        return job


class MultiFrameSuperResolvePanel(TaskPanel):
    """Multi-frame super-resolution from K shifted/rotated low-resolution frames.

    The motions come from the frames layer's metadata (``shifts``: (K, 2) as (dy, dx) in
    high-resolution pixels; ``rotations``: (K,) radians; ``scale``) and can be edited here.  The
    result covers the frames' area on a grid ``scale`` times finer (the frames layer's own scale and
    translate, see :func:`reconstruct.grid.upsampled_grid`).
    """

    task = "super_resolve_multi"
    title = "Super-resolve (multi-frame)"
    output_name = "super_resolved_multi"
    reference_tooltip = "high-resolution ground truth for PSNR/SSIM (optional)"
    cpu_steps = 250  # six 32² frames → 128²: ~0.2 s a step on 2 cores; 200 steps beat bicubic by ~1 dB

    def _task_widgets(self) -> list[Widget]:
        self._frames = self.picker("frames", accepts=image_with(3), prefers=lambda layer: "shifts" in _md(layer),
                                   tooltip="a (K, h, w) stack (or (K, h, w, 3) RGB) of frames; the one with "
                                           "'shifts' metadata first")
        self._shifts = LineEdit(label="shifts (dy, dx)",
                                tooltip="one 'dy, dx' pair per frame in high-res pixels, separated by ';'")
        self._rotations = LineEdit(label="rotations (°)", tooltip="one angle per frame, in degrees")
        self.follow(self._frames, self._sync_motion)
        return [self._frames.widget, self._shifts, self._rotations]

    def expected_reference_shape(self) -> tuple[int, ...] | None:
        return _upsampled_shape(self._frames.value, int(self.field("scale").value), leading=1)

    def _sync_motion(self) -> None:
        md = _md(self._frames.value)
        shifts, rotations = md.get("shifts"), md.get("rotations")
        if shifts is not None:
            rows = np.asarray(shifts, dtype=float).reshape(-1, 2)
            self._shifts.value = "; ".join(format_numbers(row) for row in rows)
        if rotations is not None:
            self._rotations.value = format_numbers(np.rad2deg(np.asarray(rotations, dtype=float).ravel()))
        _sync_factor(self, self._frames.value)

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
        job = self.new_job((frames,), source=layer, shifts=shifts, rotations=rotations,
                           result_name=self.result_name(f"{self.output_name}_x{factor}"),
                           layer_kwargs={**_upsampled_geometry(layer, factor), **display})
        job.baselines = lowres_baseline(frames[0], factor, job.kwargs.get("reference"), rgb=layer.rgb)
        return job


# ---------------------------------------------------------------------------------------- CT
class CTReconstructionPanel(TaskPanel):
    """2-D CT (parallel or fan beam): fit the INR through a differentiable projector; FBP beside it.

    The angles come from the sinogram layer's metadata (``angles_deg``) when it has them (the sample
    data does), else from start/stop/count.  Every other metadata key that names a task parameter
    (``layout``, ``geometry``, ``source_distance``, ``det_spacing`` ...) sets that field when the
    layer is chosen (:meth:`~napari_nestnet._pickers.PickersMixin.fill_from_metadata`).  The sinogram
    picker prefers layers with ``angles_deg``.
    """

    task = "ct_reconstruct"
    title = "CT reconstruction"
    output_name = "ct_reconstruction"
    reference_tooltip = "ground-truth image for PSNR/SSIM (optional)"
    reference_same_units = False  # a sinogram's values are line integrals, not the image's
    cpu_steps = 80  # 128², 60 views: 23 s on 2 cores, 37.2 dB against FBP's 29.3 (the ramp + TV plateau)

    def _task_widgets(self) -> list[Widget]:
        self._sinogram = self.picker("sinogram", accepts=image_with(2, rgb=False), fills_fields=True,
                                     prefers=lambda layer: _md(layer).get("angles_deg") is not None,
                                     tooltip="a 2-D sinogram image layer; one with 'angles_deg' metadata first "
                                             "(its metadata also sets the fields it names: layout, geometry ...)")
        self._angles_from_metadata = CheckBox(label="angles from layer metadata", value=False, enabled=False,
                                              tooltip="use layer.metadata['angles_deg'] when present")
        manual = " (used when the layer has no 'angles_deg' metadata)"
        self._angle_start = FloatSpinBox(label="first angle (°)", min=-360.0, max=360.0, value=0.0,
                                         tooltip="the first projection's angle, degrees" + manual)
        self._angle_stop = FloatSpinBox(label="last angle (°)", min=-360.0, max=720.0, value=180.0,
                                        tooltip="where the angles end, degrees" + manual)
        self._angle_endpoint = CheckBox(label="include last angle", value=False,
                                        tooltip="whether the last angle is itself a projection (180° usually is "
                                                "not: it repeats 0°)" + manual)
        self._angle_count = SpinBox(label="angle count", min=1, max=100_000, value=180,
                                    tooltip="the number of projections, evenly spaced; filled from the sinogram's "
                                            "shape" + manual)
        self.follow(self._sinogram, self._sync_angles)
        self.field("layout").changed.connect(self._sync_count)
        self._angles_from_metadata.changed.connect(self._sync_manual_enabled)
        return [self._sinogram.widget, self._angles_from_metadata, self._angle_start, self._angle_stop,
                self._angle_endpoint, self._angle_count]

    def expected_reference_shape(self) -> tuple[int, ...] | None:
        layer = self._sinogram.value
        if layer is None or np.ndim(layer.data) != 2:
            return None
        size = self.field("output_size").value or layer.data.shape[0 if self.field("layout").value == "skimage" else 1]
        return (int(size), int(size))

    def result_name(self, stem: str | None = None) -> str:
        """``"ct_reconstruction [nestnet]"``, or ``[sirt]`` etc. for a classical method (no network runs)."""
        method = self.params.value("method") if "method" in self.params else "inr"
        return super().result_name(stem) if method == "inr" else f"{stem or self.output_name} [{method}]"

    @staticmethod
    def _metadata_angles(layer: Layer | None) -> np.ndarray | None:
        angles = _md(layer).get("angles_deg")
        return None if angles is None else np.asarray(angles, dtype=float).ravel()

    def _sync_angles(self) -> None:
        layer = self._sinogram.value
        angles = self._metadata_angles(layer)  # (layout & co. are set by the picker: fills_fields)
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
        if "angle_unit" in self.params and self.params.value("angle_unit") == "radians":
            angles = np.deg2rad(angles)  # the panel's angles are degrees: hand them over in the unit asked for
        return self.new_job((sinogram, angles), source=layer, layer_kwargs={"colormap": "gray"})

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        layers = super().add_results(job, result)
        fbp = result.extras.get("fbp")
        if fbp is not None:
            ran = self.reported_parameters(job, result)
            filter_name = ran.get("filter_name", job.parameters.get("filter_name"))
            angles = ran.get("angles_deg", np.asarray(job.args[1], dtype=float).tolist())
            metrics = {k: float(v) for k, v in (result.extras.get("fbp_metrics") or {}).items()}
            limits = layers[0].contrast_limits  # one grey scale for both, so they compare by eye
            layers.append(self._viewer.add_image(
                np.asarray(fbp), name=labelled(f"ct_fbp [{filter_name}]", metrics), colormap="gray",
                contrast_limits=limits,
                metadata={"task": "fbp", "filter_name": filter_name, "metrics": metrics,
                          "source_layer": job.source, "angles_deg": angles}))
        return layers


#: Every task panel, by task name.
PANELS: dict[str, type[TaskPanel]] = {
    cls.task: cls
    for cls in (FitImagePanel, DenoisePanel, SuperResolvePanel, MultiFrameSuperResolvePanel,
                CTReconstructionPanel, CT3DReconstructionPanel, OccupancyPanel, PinnConvectionPanel)
}
