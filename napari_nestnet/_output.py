"""What a panel does with a finished run: layers named with their metrics, the previous result replaced,
the new result framed, the verdict said, and a Save button through the plugin's writer.

Mixed into :class:`napari_nestnet._panel.TaskPanel`; the names it uses there are ``_viewer``,
``_status``, ``_replace``, ``_save_button``, ``_model``, ``spec``, ``task``, ``title`` and
``output_name``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Layer
from napari.utils.notifications import show_error, show_info, show_warning

from ._progress import baseline_text, primary, summary, verdict
from ._results import RECENT_FITS, RecentFit
from ._worker import Job, Outcome, one_line, plain

__all__ = ["ResultsMixin", "BASELINE_NAMES", "SAVE_FILTER", "labelled", "input_baseline", "lowres_baseline",
           "nearest_upsampled"]

logger = logging.getLogger(__name__)

#: How the baselines (``layer.metadata["baselines"]``: the run record's FBP/bicubic, and the input's own
#: metrics that the panel adds) are called in names and the status line.
BASELINE_NAMES = {"fbp": "FBP", "bicubic": "bicubic", "noisy_input": "noisy input", "lowres_input": "low-res input"}
#: The file types the Save dialog offers (the plugin writer's extensions).
SAVE_FILTER = "Medical image (*.nii.gz *.nii *.mha *.mhd *.nrrd);;All files (*)"
_SHORT = {"psnr": "{:.2f} dB", "ssim": "SSIM {:.3f}", "iou": "IoU {:.3f}", "rel_l2": "rel. L2 {:.3g}"}


def labelled(name: str, metrics: dict | None, baselines: dict | None = None, warning: bool = False) -> str:
    """``"denoised [nestnet] 23.34 dB · noisy input 18.21 dB"``: a layer name with its metric beside the
    baselines' (``⚠`` when the verdict warns)."""
    first = primary(metrics)
    if first is None:
        return name + (" ⚠" if warning else "")
    text = f"{name} {_SHORT[first[0]].format(first[1])}"
    others = baseline_text(baselines)
    return text + (f" · {others}" if others else "") + (" ⚠" if warning else "")


class ResultsMixin:
    """Result handling shared by the task panels (see the module docstring)."""

    _result_layers: list[Layer]

    # ------------------------------------------------------------------ names and records
    def result_name(self, stem: str | None = None) -> str:
        """``"<stem> [<model>]"``, e.g. ``"ct_reconstruction [nestnet]"``."""
        return f"{stem or self.output_name} [{self._model.value}]"

    def reported_parameters(self, job: Job, result: Any) -> dict:
        """What the task reports it ran (``result.extras["parameters"]``), else what the job asked for."""
        reported = (getattr(result, "extras", None) or {}).get("parameters")
        return plain(dict(reported)) if reported else dict(job.parameters)

    def result_metadata(self, job: Job, result: Any, **extra: Any) -> dict:
        """The run record (:func:`reconstruct.app.records.run_record`) and the panel's facts, for ``metadata``.

        ``parameters`` are the task's report of what ran; ``inputs`` the layers read by role;
        ``baselines`` the classical baselines' and the input's metrics; plus ``model``, ``steps``,
        ``source_layer``, ``loss_history``, ``verdict`` and the reader's ``image_meta``.
        """
        from reconstruct.app.records import run_record

        record = run_record(result, task=self.task, inputs=job.inputs, output=job.result_name, history=False,
                            with_versions=False)
        record["parameters"] = self.reported_parameters(job, result)
        md: dict[str, Any] = {
            **record,
            "model": record["parameters"].get("model"),
            "steps": record["steps_run"],
            "source_layer": job.source,
            "loss_history": [float(h["loss"]) for h in result.history],
        }
        outcome = job.context.get("_outcome")
        if outcome is not None:
            md["baselines"] = {**md.get("baselines", {}), **outcome.baselines}
            md["verdict"] = job.context.get("_verdict", "")
        image_meta = job.context.get("image_meta")
        if image_meta is not None:
            md["image_meta"] = image_meta
        md.update(extra)
        return plain(md)

    @staticmethod
    def source_geometry(layer: Layer, spatial: int) -> dict:
        """``scale``/``translate`` of the last ``spatial`` axes of ``layer`` (for results on its grid)."""
        return {"scale": tuple(float(s) for s in layer.scale[-spatial:]),
                "translate": tuple(float(t) for t in layer.translate[-spatial:])}

    @staticmethod
    def source_image_meta(layer: Layer | None) -> dict | None:
        """The reader's ImageMeta dict of ``layer``, if it has one (results keep the direction)."""
        if layer is None:
            return None
        meta = layer.metadata.get("image_meta") if isinstance(layer.metadata, dict) else None
        return meta if isinstance(meta, dict) else None

    def baselines(self, job: Job, result: Any) -> dict[str, dict]:
        """Display name -> metrics of the classical baselines (FBP, bicubic) and of the input."""
        from reconstruct.app.records import BASELINE_KEYS

        extras = getattr(result, "extras", None) or {}
        found = {name: dict(extras[key]) for name, key in BASELINE_KEYS.items() if extras.get(key)}
        outcome = job.context.get("_outcome")
        if outcome is not None:
            found.update(outcome.baselines)
        return {BASELINE_NAMES.get(name, name): metrics for name, metrics in found.items()}

    def main_name(self, job: Job, result: Any) -> str:
        """The main result layer's name: the result name, its metric and the baselines'."""
        return labelled(job.result_name, result.metrics, self.baselines(job, result),
                        warning=bool(job.context.get("_verdict")))

    # ------------------------------------------------------------------ layers
    def add_results(self, job: Job, result: Any) -> list[Layer]:
        """Add the result layers; the first one is the main result.  Default: one image layer."""
        layer = self._viewer.add_image(result.output, name=self.main_name(job, result),
                                       metadata=self.result_metadata(job, result), **job.layer_kwargs)
        return [layer]

    def frame(self, layers: list[Layer]) -> None:
        """Show the new result: fit the view to the layers (occupancy also switches to 3-D)."""
        self._viewer.reset_view()

    def result_layers(self) -> list[Layer]:
        """The last run's layers that are still in the viewer."""
        return [layer for layer in getattr(self, "_result_layers", []) if layer in self._viewer.layers]

    def _drop_previous(self) -> None:
        for layer in self.result_layers():
            self._viewer.layers.remove(layer)
        self._result_layers = []

    def _show_outcome(self, job: Job, outcome: Outcome) -> None:
        if outcome.error is not None:
            message = one_line(outcome.error)
            show_error(f"{self.title}: {message}")
            self._status.value = f"failed: {message}"
            return
        result = outcome.result
        job.context["_outcome"] = outcome
        baselines = self.baselines(job, result)
        warning = "" if result.cancelled else verdict(result, baselines)
        job.context["_verdict"] = warning
        if self._replace.value:
            self._drop_previous()
        try:
            layers = self.add_results(job, result)
        except Exception as exc:  # a result that cannot be shown is one line too, never a traceback
            logger.debug("adding result layers failed", exc_info=True)
            show_error(f"{self.title}: could not add the result layers: {one_line(exc)}")
            self._status.value = f"failed: {one_line(exc)}"
            return
        self.last_result, self.last_layers = result, layers
        self._result_layers = list(layers)
        self._viewer.layers.selection.active = layers[0]
        self.frame(layers)
        parameters = self.reported_parameters(job, result)
        # labelled by the result name (the layer's name adds metrics that change from run to run)
        RECENT_FITS.add(RecentFit(label=job.result_name, task=self.task, model_name=str(parameters.get("model")),
                                  result=result, parameters=parameters))
        done = summary(result, baselines)
        if result.cancelled:
            self._status.value = f"cancelled at step {result.steps}; result so far added · {done}"
            show_info(f"{self.title} cancelled at step {result.steps}; the result so far is {layers[0].name!r}")
        elif warning:
            self._status.value = f"done: {done} · ⚠ {warning}"
            show_warning(f"{self.title}: {warning}")
        else:
            self._status.value = f"done: {done}"

    # ------------------------------------------------------------------ saving
    def save_result(self, path: str | Path | None = None) -> list[str]:
        """Write the last result layer through the plugin's writer (``napari.save_layers(plugin=...)``).

        Args:
            path: the file to write; None asks with a file dialog (the Save button).

        Returns:
            The written paths (empty when nothing was written).
        """
        import napari

        layers = self.result_layers()
        if not layers:
            show_info(f"{self.title}: no result to save yet; press Run first")
            return []
        layer = layers[0]
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            suggested = str(Path.cwd() / f"{self.output_name}.nii.gz")
            path, _ = QFileDialog.getSaveFileName(self.native, f"Save {layer.name}", suggested, SAVE_FILTER)
            if not path:
                return []
        try:
            written = napari.save_layers(str(path), [layer], plugin="napari-nestnet")
        except Exception as exc:  # a refused extension, a read-only folder: one line
            show_error(f"{self.title}: could not save {layer.name!r}: {one_line(exc)}")
            return []
        if written:
            show_info(f"{self.title}: saved {layer.name!r} to {written[0]}")
        else:
            show_error(f"{self.title}: nothing was written to {path} (use .nii.gz, .nii, .mha, .mhd or .nrrd)")
        return list(written)


def input_baseline(data: np.ndarray, reference: np.ndarray | None, name: str = "noisy_input") -> Any:
    """A :attr:`Job.baselines` function: ``data``'s own metrics against ``reference`` (in the task's units).

    The data range is the one the task scored its output with (``extras["normalisation"]``), so the
    input's PSNR and the network's compare like for like.  ``name`` is its key in
    ``layer.metadata["baselines"]`` (see :data:`BASELINE_NAMES`).  Returns None without a reference.
    """
    if reference is None or data.shape != reference.shape:
        return None
    data, reference = data.astype(np.float64), reference.astype(np.float64)  # (8-bit differences wrap)

    def compute(result: Any) -> dict:
        from reconstruct.fit import compute_metrics

        norm = (getattr(result, "extras", None) or {}).get("normalisation") or {}
        data_range = norm.get("metric_data_range")
        if not data_range:
            return {}
        names = tuple(result.metrics) or ("psnr", "ssim")
        return {name: compute_metrics(names, data, reference, float(data_range))}

    return compute


def nearest_upsampled(image: np.ndarray, factor: int, rgb: bool = False) -> np.ndarray:
    """``image`` with every pixel repeated ``factor`` times per spatial axis (what the viewer shows of it)."""
    out = image
    for axis in range(image.ndim - (1 if rgb else 0)):
        out = np.repeat(out, factor, axis=axis)
    return out


def lowres_baseline(lowres: np.ndarray, factor: int, reference: np.ndarray | None, rgb: bool = False) -> Any:
    """The naive super-resolution baseline: the low-resolution input, pixels repeated, against the reference."""
    if reference is None:
        return None
    return input_baseline(nearest_upsampled(lowres, factor, rgb), reference, "lowres_input")
