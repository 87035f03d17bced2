"""What every task panel shares: the common fields, Run/Cancel, the worker thread, progress, result layers.

A panel only collects parameters and shows results; the numerics are ``reconstruct.tasks``.  Run
builds a :class:`Job` on the main thread (where every input is checked and copied, so the layer is
never touched and a bad input is one notification line), then runs the task in a napari
``thread_worker``.  The task's ``on_step`` callback runs on the worker thread: it relays a
throttled stream of :class:`reconstruct.fit.StepInfo` to the main thread through a Qt signal
(queued across threads) and returns ``False`` once Cancel was pressed, which makes the task stop
and return the result so far.  Exceptions never leave the worker: they come back as a value and
become a one-line error notification.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox, Widget
from napari.layers import Image, Layer
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ._results import RECENT_FITS, RecentFit

if TYPE_CHECKING:
    import napari

__all__ = [
    "TaskPanel",
    "Job",
    "one_line",
    "image_array",
    "progress_text",
    "DEVICES",
]

logger = logging.getLogger(__name__)

#: Device choices offered by every panel.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Minimum seconds between two progress updates sent to the main thread (previews always go).
PROGRESS_INTERVAL_S = 0.05
_MESSAGE_LIMIT = 300


def one_line(exc: BaseException) -> str:
    """A one-line message for a notification: the first line of the error, named unless obvious."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0].strip() if lines else type(exc).__name__
    if not isinstance(exc, (ValueError, TypeError)):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def image_array(layer: Layer | None, what: str, kind: type[Layer] | tuple[type[Layer], ...] = Image) -> np.ndarray:
    """A private float32 copy of ``layer.data`` after the checks every panel needs.

    Args:
        layer: the chosen layer (``None`` when the combo box is empty).
        what: how the panel calls this input, for messages (``"sinogram"``, ``"noisy image"``).
        kind: the accepted napari layer type(s).

    Raises:
        ValueError: no layer chosen, a multiscale layer, or NaN/Inf values.
        TypeError: a layer of the wrong type.
    """
    if layer is None:
        raise ValueError(f"choose {_a(what)} layer first (open an image or a sample from File > Open Sample)")
    if not isinstance(layer, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"the {what} must be {_a(names)} layer; {layer.name!r} is a {type(layer).__name__} layer")
    if getattr(layer, "multiscale", False):
        raise ValueError(f"{layer.name!r} is a multiscale layer; open its full-resolution level as a plain layer")
    # np.array copies: the worker gets its own data and the layer is never modified.
    arr = np.array(layer.data, dtype=np.float32, copy=True)
    if arr.size == 0:
        raise ValueError(f"{layer.name!r} is empty")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{layer.name!r} contains {bad} NaN/Inf values; replace them (e.g. numpy.nan_to_num) first")
    return arr


_METRIC_FORMATS = {"psnr": "PSNR {:.2f} dB", "ssim": "SSIM {:.3f}", "iou": "IoU {:.4f}", "rel_l2": "rel. L2 {:.3g}"}


def metric_text(metrics: dict[str, float]) -> str:
    """``"PSNR 31.20 dB · SSIM 0.912"`` for the metrics present."""
    parts = [fmt.format(metrics[name]) for name, fmt in _METRIC_FORMATS.items()
             if name in metrics and math.isfinite(metrics[name])]
    return " · ".join(parts)


def progress_text(info: Any) -> str:
    """The status line for one :class:`reconstruct.fit.StepInfo`."""
    text = f"step {info.step}/{info.steps} · loss {info.loss:.3g}"
    extra = metric_text(info.metrics or {})
    return f"{text} · {extra} · {info.seconds:.1f} s" if extra else f"{text} · {info.seconds:.1f} s"


def _plain(value: Any) -> Any:
    """JSON-like copy for ``layer.metadata`` (numpy scalars and arrays to Python numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class Job:
    """One Run of a panel, fully prepared on the main thread.

    Args:
        args: positional arguments of the task (the measurement, private copies).
        kwargs: keyword arguments of the task, without ``on_step``.
        result_name: name of the main result layer (e.g. ``"ct_reconstruction [nestnet]"``).
        layer_kwargs: napari keyword arguments of the preview and main result layer (geometry, colormap).
        parameters: JSON-able record of what was run, stored in the result layers' metadata.
        source: name of the input layer.
        context: anything else the panel needs to build its result layers.
    """

    args: tuple
    kwargs: dict
    result_name: str
    layer_kwargs: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    source: str | None = None
    context: dict = field(default_factory=dict)


@dataclass
class _Outcome:
    result: Any = None
    error: BaseException | None = None


class _Relay(QObject):
    """Carries progress from the worker thread to the main thread (a queued Qt connection)."""

    progressed = Signal(object)


_allocator_lock = threading.Lock()
_allocator_tuned = False


def _tune_allocator_once() -> None:
    """``reconstruct.runtime.tune_allocator()`` once per process, when the first worker starts."""
    global _allocator_tuned
    with _allocator_lock:
        if _allocator_tuned:
            return
        _allocator_tuned = True
    try:
        from reconstruct import runtime
    except ImportError:
        return
    tune = getattr(runtime, "tune_allocator", None)
    if callable(tune):
        try:
            tune()
        except Exception as exc:  # tuning is an optimisation: never fail a run over it
            logger.warning("allocator tuning skipped: %s", exc)


def _run_task(task_fn: Any, job: Job, cancel: threading.Event, relay: _Relay) -> _Outcome:
    """The worker thread's body: run the task, relay progress, turn every exception into a value."""
    _tune_allocator_once()
    last_sent = [0.0]

    def on_step(info: Any) -> bool:
        now = time.monotonic()
        if info.output is not None or info.step >= info.steps or now - last_sent[0] >= PROGRESS_INTERVAL_S:
            last_sent[0] = now
            relay.progressed.emit(info)
        return not cancel.is_set()

    try:
        return _Outcome(result=task_fn(*job.args, on_step=on_step, **job.kwargs))
    except Exception as exc:  # shown as one line on the main thread; the traceback goes to the log
        logger.debug("task failed", exc_info=True)
        return _Outcome(error=exc)


class TaskPanel(Container):
    """Base class of the task panels.

    Subclasses set :attr:`task`, :attr:`title`, :attr:`output_name`, build their own fields in
    :meth:`_task_widgets`, prepare a :class:`Job` in :meth:`make_job` and add their layers in
    :meth:`add_results`.

    Args:
        viewer: the napari viewer the panel is docked in (npe2 injects it).
    """

    task: ClassVar[str] = ""
    title: ClassVar[str] = ""
    output_name: ClassVar[str] = ""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        from monai_nets import available_networks
        from reconstruct.tasks import DEFAULT_STEPS

        self._viewer = viewer
        self._worker: Any = None
        self._job: Job | None = None
        self._preview: Layer | None = None
        self._cancel = threading.Event()
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        cancel = self._cancel
        # A panel closed mid-run (its dock or the viewer) stops its worker at the next step.
        self.native.destroyed.connect(lambda *_: cancel.set())
        #: The last finished FitResult and the layers it produced (for scripting and tests).
        self.last_result: Any = None
        self.last_layers: list[Layer] = []
        #: How many progress updates reached the main thread during the current or last run.
        self.progress_updates = 0
        # (layer choice, callback, weak reference to the layer the callback last saw)
        self._followers: list[list[Any]] = []

        self._model = ComboBox(label="model", choices=available_networks(), value="nestnet",
                               tooltip="the implicit neural representation to fit")
        self._width = SpinBox(label="hidden width", min=8, max=2048, step=8, value=256,
                              tooltip="width of the two hidden layers (the paper: 256)")
        self._steps = SpinBox(label="steps", min=1, max=1_000_000, value=int(DEFAULT_STEPS.get(self.task, 500)))
        self._lr = FloatSpinBox(label="learning rate", min=0.0, max=1.0, step=1e-4, value=0.0,
                                tooltip="0 = the model's default for this task")
        self._device = ComboBox(label="device", choices=list(DEVICES), value="auto",
                                tooltip="auto = CUDA when available, else CPU")
        self._seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self._preview_every = SpinBox(label="preview every", min=0, max=100_000, value=25,
                                      tooltip="steps between live previews (0 = no preview)")
        self._run_button = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._run_button.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        buttons = Container(widgets=[self._run_button, self._cancel_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self._bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self._status = Label(label="status", value="idle")
        self._status.native.setWordWrap(True)  # long messages must not widen the dock

        common = [self._model, self._width, self._steps, self._lr, self._device, self._seed, self._preview_every]
        self.extend([*self._task_widgets(), *common, buttons, self._bar, self._status])

    # ------------------------------------------------------------------ subclass hooks
    def _task_widgets(self) -> list[Widget]:
        """The task's own fields, shown above the common ones."""
        return []

    def make_job(self) -> Job:
        """Check the inputs and build the job (main thread); raise ValueError/TypeError on bad input."""
        raise NotImplementedError

    def add_results(self, job: Job, result: Any) -> list[Layer]:
        """Add the result layers; the first one is the main result.  Default: one image layer."""
        layer = self._viewer.add_image(result.output, name=job.result_name,
                                       metadata=self.result_metadata(job, result), **job.layer_kwargs)
        return [layer]

    # ------------------------------------------------------------------ helpers for subclasses
    def follow(self, choice: Widget, callback: Any) -> None:
        """Call ``callback`` whenever the layer chosen in ``choice`` becomes another layer.

        Fields that are filled from a layer's metadata (CT angles, multi-frame motion, scale) use it:
        it runs when the user picks a layer and when the choices are first filled, but not on every
        layer-list change, so values the user typed are kept.
        """
        entry = [choice, callback, None]
        self._followers.append(entry)
        choice.changed.connect(lambda: self._sync_follower(entry))

    def _sync_follower(self, entry: list[Any]) -> None:
        choice, callback, seen = entry
        value = choice.value
        if value is not None and seen is not None and seen() is value:
            return
        entry[2] = weakref.ref(value) if value is not None else None
        callback()

    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer choices (napari calls this on layer-list changes)."""
        super().reset_choices(*args)
        for entry in self._followers:
            self._sync_follower(entry)

    @property
    def viewer(self) -> napari.viewer.Viewer:
        return self._viewer

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._worker is not None

    @property
    def status(self) -> str:
        """The status line's text."""
        return str(self._status.value)

    def common_kwargs(self) -> dict:
        """The task keyword arguments every panel passes (model, steps, lr, device, seed, preview)."""
        lr = float(self._lr.value)
        return {
            "model": self._model.value,
            "model_kwargs": {"hidden_channels": (int(self._width.value), int(self._width.value))},
            "steps": int(self._steps.value),
            "lr": lr if lr > 0 else None,
            "device": self._device.value,
            "seed": int(self._seed.value),
            "preview_every": int(self._preview_every.value) or None,
        }

    def common_parameters(self) -> dict:
        """The common parameters as recorded in ``layer.metadata["parameters"]``."""
        kw = self.common_kwargs()
        return {"model": kw["model"], "hidden_width": int(self._width.value), "steps": kw["steps"],
                "lr": kw["lr"], "device": kw["device"], "seed": kw["seed"]}

    def result_name(self, stem: str | None = None) -> str:
        """``"<stem> [<model>]"``, e.g. ``"ct_reconstruction [nestnet]"``."""
        return f"{stem or self.output_name} [{self._model.value}]"

    def result_metadata(self, job: Job, result: Any, **extra: Any) -> dict:
        """Metrics, parameters and run facts for a result layer's ``metadata``."""
        md: dict[str, Any] = {
            "task": self.task,
            "model": job.parameters.get("model"),
            "parameters": dict(job.parameters),
            "metrics": {k: float(v) for k, v in result.metrics.items()},
            "steps": int(result.steps),
            "stopped_by": result.stopped_by,
            "seconds": float(result.seconds),
            "device": str(result.device),
            "source_layer": job.source,
            "loss_history": [float(h["loss"]) for h in result.history],
        }
        if result.best is not None:
            best_metrics = {k: float(v) for k, v in result.best.metrics.items()}
            md["best"] = {"step": int(result.best.step), "metrics": best_metrics}
        image_meta = job.context.get("image_meta")
        if image_meta is not None:
            md["image_meta"] = image_meta
        md.update(extra)
        return _plain(md)

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

    # ------------------------------------------------------------------ run / cancel
    def run(self) -> None:
        """Start the task in a worker thread (refused, with a notification, while one is running)."""
        if self.running:
            show_info(f"{self.title} is already running; wait for it to finish or press Cancel")
            return
        try:
            from reconstruct.device import resolve_device
            from reconstruct.tasks import TASKS

            job = self.make_job()
            resolve_device(job.kwargs.get("device", "auto"))
            task_fn = TASKS[self.task]
        except (ValueError, TypeError, KeyError) as exc:
            show_error(f"{self.title}: {one_line(exc)}")
            self._status.value = f"not started: {one_line(exc)}"
            return
        self._start(task_fn, job)

    def _start(self, task_fn: Any, job: Job) -> None:
        from napari.qt.threading import create_worker

        self._cancel.clear()
        self._job = job
        self._preview = None
        self.progress_updates = 0
        worker = create_worker(_run_task, task_fn, job, self._cancel, self._relay, _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._bar.max = max(int(job.kwargs.get("steps", 1)), 1)
        self._bar.value = 0
        self._cancel_button.enabled = True
        self._status.value = "starting…"
        worker.start()

    def cancel(self) -> None:
        """Ask the running task to stop after its current step; the result so far is still added."""
        if not self.running:
            return
        self._cancel.set()
        self._status.value = "cancelling…"

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Process Qt events until the run finishes (scripts and tests); returns whether it finished."""
        from qtpy.QtWidgets import QApplication

        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
        QApplication.processEvents()
        return not self.running

    # ------------------------------------------------------------------ main-thread slots
    def _on_progress(self, info: Any) -> None:
        job = self._job
        if job is None:  # a late update after the result was added
            return
        try:
            self.progress_updates += 1
            self._bar.max = max(int(info.steps), 1)
            self._bar.value = int(info.step)
            self._status.value = progress_text(info)
            if info.output is not None:
                self._show_preview(job, info.output)
        except RuntimeError:  # the panel was closed while the worker ran
            self._cancel.set()

    def _show_preview(self, job: Job, output: np.ndarray) -> None:
        layer = self._preview
        if layer is not None and layer in self._viewer.layers:
            layer.data = output
            if "contrast_limits" not in job.layer_kwargs and not getattr(layer, "rgb", False):
                layer.reset_contrast_limits()  # early previews span another range than later ones
            return
        kwargs = {k: v for k, v in job.layer_kwargs.items() if k != "name"}
        self._preview = self._viewer.add_image(output, name=f"{job.result_name} (preview)", **kwargs)

    def _on_returned(self, outcome: _Outcome) -> None:
        job, self._job = self._job, None
        preview, self._preview = self._preview, None
        try:
            if preview is not None and preview in self._viewer.layers:
                self._viewer.layers.remove(preview)
            if job is None:
                return
            if outcome.error is not None:
                message = one_line(outcome.error)
                show_error(f"{self.title}: {message}")
                self._status.value = f"failed: {message}"
                return
            result = outcome.result
            try:
                layers = self.add_results(job, result)
            except Exception as exc:  # a result that cannot be shown is one line too, never a traceback
                logger.debug("adding result layers failed", exc_info=True)
                show_error(f"{self.title}: could not add the result layers: {one_line(exc)}")
                self._status.value = f"failed: {one_line(exc)}"
                return
            self.last_result, self.last_layers = result, layers
            RECENT_FITS.add(RecentFit(label=layers[0].name, task=self.task, model_name=str(job.parameters.get("model")),
                                      result=result, parameters=dict(job.parameters)))
            summary = metric_text(result.metrics)
            done = f"{result.steps} steps in {result.seconds:.1f} s" + (f" · {summary}" if summary else "")
            if result.cancelled:
                self._status.value = f"cancelled at step {result.steps}; result so far added · {done}"
                show_info(f"{self.title} cancelled at step {result.steps}; the result so far is {layers[0].name!r}")
            else:
                self._status.value = f"done: {done}"
        except RuntimeError:  # the panel's widgets were deleted (viewer closed mid-run)
            logger.debug("panel closed before its result arrived")

    def _on_finished(self) -> None:
        self._worker = None
        try:
            self._cancel_button.enabled = False
        except RuntimeError:
            pass


def parse_numbers(text: str, what: str) -> list[float]:
    """Numbers separated by commas, semicolons or spaces; ValueError naming ``what`` otherwise."""
    cleaned = text.replace(";", " ").replace(",", " ").replace("(", " ").replace(")", " ")
    cleaned = cleaned.replace("[", " ").replace("]", " ")
    try:
        values = [float(tok) for tok in cleaned.split()]
    except ValueError:
        raise ValueError(f"{what} must be numbers separated by commas or semicolons, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers, got {text!r}")
    return values


def format_numbers(values: Sequence[float]) -> str:
    """The inverse of :func:`parse_numbers` for one row: ``"1.5, -2, 0.25"``."""
    return ", ".join(f"{float(v):.6g}" for v in values)
