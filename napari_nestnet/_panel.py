"""What every task panel shares: inputs chosen for the user, generated fields, Run/Cancel, progress, results.

A panel only collects parameters and shows results; the numerics are ``reconstruct.tasks``.  Its
parameter fields are generated from the task's description (``reconstruct.tasks.SPECS[task]``, see
:mod:`napari_nestnet._fields`): the task's own parameters (``spec.params_for("gui")``) and the common
fit settings (:data:`reconstruct.tasks.spec.FIT_PARAMS`); only the data-input pickers are written by
hand per panel (:mod:`napari_nestnet._pickers`: they choose a suitable layer, never the ground truth,
a measurement picker can set the fields its layer's metadata names, and the reference picker fills
itself with the sample's ground truth).  Result layers keep the task's own record of what ran
(:func:`reconstruct.app.records.run_record`) in ``layer.metadata``.

Run builds a :class:`~napari_nestnet._worker.Job` on the main thread (where every input is checked
and copied, so the layer is never touched and a bad input is one notification line), then runs the
task in a napari ``thread_worker``: progress comes back through a queued Qt signal
(:mod:`napari_nestnet._progress` words it: step, rate, ETA, live metric), Cancel makes the task stop
and return the result so far, and an exception becomes a one-line error notification.  Closing the
dock or the viewer cancels the run (:mod:`napari_nestnet._lifecycle`).  The panel's settings are
remembered between sessions (:mod:`napari_nestnet._settings`); the result helpers (names with the
metrics beside the baselines', replacing the previous result, framing, saving) are in
:class:`~napari_nestnet._output.ResultsMixin`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, ProgressBar, PushButton, SpinBox, Widget
from napari.layers import Layer
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from ._device import device_choices, device_summary, has_cuda
from ._fields import ParamFields
from ._lifecycle import CloseWatcher, RunHandle, register_run, stop_runs
from ._output import ResultsMixin
from ._pickers import PREVIEW, LayerPicker, PickersMixin, ReferencePicker, check_same_units, image_array
from ._progress import RunMeter
from ._settings import SettingsMixin
from ._worker import Job, Relay, one_line, plain, run_task

if TYPE_CHECKING:
    import napari

__all__ = ["TaskPanel", "Job", "one_line", "image_array", "device_choices", "HIDDEN_WIDTH"]

logger = logging.getLogger(__name__)

#: The hidden-width field's default (the paper's width).
HIDDEN_WIDTH = 256


class TaskPanel(PickersMixin, SettingsMixin, ResultsMixin, Container):
    """Base class of the task panels.

    Subclasses set :attr:`task` (a ``reconstruct.tasks.SPECS`` key), :attr:`title`, :attr:`output_name`,
    build their data-input pickers in :meth:`_task_widgets` (with :meth:`picker`), prepare a
    :class:`Job` in :meth:`make_job` (usually with :meth:`new_job`) and add their layers in
    :meth:`add_results`.  The parameter fields are generated: one per ``Param`` of
    ``spec.params_for("gui")`` (:meth:`param_kwargs`), then the common fit settings
    (:meth:`common_kwargs`); :meth:`field` finds any of them by parameter name.
    """

    task: ClassVar[str] = ""
    title: ClassVar[str] = ""
    output_name: ClassVar[str] = ""
    #: Tooltip of the optional "reference" layer picker (ground truth for metrics); empty: no picker.
    reference_tooltip: ClassVar[str] = ""
    #: Whether the reference is in the input's units (images: yes; CT's sinogram: no).
    reference_same_units: ClassVar[bool] = True
    #: The panel's initial "preview every" (a GUI choice: the task's own default is no previews).
    preview_every: ClassVar[int] = 25
    #: Steps of a default run where torch sees no GPU: sized by measurement so the panel's sample
    #: takes about a minute on a 2-core CPU (None: the task's own default, which a GPU affords).
    cpu_steps: ClassVar[int | None] = None
    #: The hidden width of a default run without a GPU (None: :data:`HIDDEN_WIDTH`), where the width,
    #: not the steps, is what makes a CPU run slow (the PINN's second derivatives).
    cpu_width: ClassVar[int | None] = None
    #: Set once a run has finished its first step in this process (kernels compiled).
    _warmed: ClassVar[bool] = False

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        from reconstruct.tasks import FIT_PARAMS, SPECS

        # napari's Plugins menu hands widgets a PublicOnlyProxy of the viewer, which wraps every layer it
        # returns in a fresh proxy: the pickers compare layers by identity, so they use the viewer itself
        # (only its public API is used).
        self._viewer = getattr(viewer, "__wrapped__", viewer)
        viewer = self._viewer
        self._worker: Any = None
        self._job: Job | None = None
        self._preview: Layer | None = None
        self._cancel = threading.Event()
        self._handle: RunHandle | None = None
        self._forget_run: Any = None
        self._relay = Relay()
        self._relay.progressed.connect(self._on_progress)
        self._closed = False
        self._window_closing = False
        #: The last finished FitResult and the layers it produced (for scripting and tests).
        self.last_result: Any = None
        self.last_layers: list[Layer] = []
        #: How many progress updates reached the main thread during the current or last run.
        self.progress_updates = 0
        #: The current or last run's progress.
        self.meter: RunMeter | None = None
        self._compile_hint = False
        self._pickers: list[LayerPicker] = []
        # (widget, callback, weak reference to the layer the callback last saw)
        self._followers: list[list[Any]] = []

        #: The task's description: where every parameter field comes from.
        self.spec = SPECS[self.task]
        #: The task's own parameter fields, generated from ``spec.params_for("gui")``.
        self.params = ParamFields(self.spec.params_for("gui"))
        #: The common fit settings' fields, generated from ``FIT_PARAMS`` (steps: see :attr:`cpu_steps`).
        self.fit_fields = ParamFields([p for p in FIT_PARAMS if "gui" in p.doors],
                                      values={"steps": self.default_steps(), "preview_every": self.preview_every},
                                      choices={"device": device_choices()})
        # A convenience the network arguments lack: one width for both hidden layers (-> model_kwargs).
        self._width = SpinBox(name="hidden_width", label="hidden width", min=8, max=2048, step=8,
                              value=self.default_width(),
                              tooltip="width of the two hidden layers: model_kwargs['hidden_channels'] = "
                                      "(width, width) unless 'model kwargs' sets it (the paper: 256)")
        fit = self.fit_fields
        self._model, self._steps, self._lr = fit["model"], fit["steps"], fit["lr"]
        self._device, self._seed, self._preview_every = fit["device"], fit["seed"], fit["preview_every"]
        self._ref = (ReferencePicker("reference", expected_shape=self._expected_shape_or_none,
                                     tooltip=self.reference_tooltip + "; filled with the sample's ground truth "
                                     "when its shape fits") if self.reference_tooltip else None)
        self._replace = CheckBox(name="replace_previous", text="replace the previous result",
                                 value=True, tooltip="remove this panel's previous result layers when a run adds "
                                                     "new ones (off: results pile up as … [1], … [2])")
        indicator, indicator_tip = device_summary()
        self._indicator = Label(name="device_indicator", label="runs on", value=indicator, tooltip=indicator_tip)
        self._run_button = PushButton(text="Run", tooltip="fit with these settings (in the background)")
        self._cancel_button = PushButton(text="Cancel", enabled=False,
                                         tooltip="stop after the current step; the result so far is added")
        self._save_button = PushButton(text="Save result…", enabled=False,
                                       tooltip="write the last result layer with its geometry (NIfTI, MetaImage or "
                                               "NRRD) through the plugin's writer")
        self._defaults_button = PushButton(text="Restore defaults",
                                           tooltip="every setting back to its default (and forget the remembered "
                                                   "ones); the chosen layers stay")
        self._run_button.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self._save_button.changed.connect(lambda: self.save_result())
        self._defaults_button.changed.connect(self.restore_defaults)
        rows = []
        for pair in ((self._run_button, self._cancel_button), (self._save_button, self._defaults_button)):
            row = Container(widgets=list(pair), layout="horizontal", labels=False)
            row.margins = (0, 0, 0, 0)
            rows.append(row)
        self._bar = ProgressBar(label="progress", min=0, max=1, value=0, tooltip="steps done of the steps asked for")
        self._status = Label(label="status", value="idle", tooltip="what the run is doing, and how it ended")
        self._status.native.setWordWrap(True)  # long messages must not widen the dock

        common = list(fit)
        common.insert(1, self._width)  # right after the model
        reference = [self._ref.widget] if self._ref is not None else []
        self.extend([self._indicator, *self._task_widgets(), *self.params, *reference, *common, self._replace,
                     *rows, self._bar, self._status])
        self._defaults = {"hidden_width": self._width.value, "replace_previous": self._replace.value}
        for widget in [*self.params, *(p.widget for p in self._pickers)]:
            widget.changed.connect(self._choose_reference)

        self._timer = QTimer(self.native)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._tick)
        self._watcher = CloseWatcher(self.native, self._on_dock_closed, self._on_window_closing)
        viewer.layers.selection.events.active.connect(self._on_active_layer)
        self._restore_settings()

    # ------------------------------------------------------------------ subclass hooks
    def _task_widgets(self) -> list[Widget]:
        """The task's data-input pickers (and any notes), shown above the generated parameter fields."""
        return []

    def make_job(self) -> Job:
        """Check the inputs and build the job (main thread); raise ValueError/TypeError on bad input."""
        raise NotImplementedError

    def expected_reference_shape(self) -> tuple[int, ...] | None:
        """The shape of the output for the current inputs (the reference must have it); None: unknown."""
        return None

    @classmethod
    def default_steps(cls) -> int:
        """The steps field's default: :attr:`cpu_steps` without a GPU, else the task's own default."""
        from reconstruct.tasks import SPECS

        return SPECS[cls.task].default_steps if has_cuda() or cls.cpu_steps is None else int(cls.cpu_steps)

    @classmethod
    def default_width(cls) -> int:
        """The hidden-width field's default: :attr:`cpu_width` without a GPU, else :data:`HIDDEN_WIDTH`."""
        return HIDDEN_WIDTH if has_cuda() or cls.cpu_width is None else int(cls.cpu_width)

    def restore_defaults(self) -> None:
        """Every setting back to its default, then the fields the chosen inputs' metadata gives set from
        it again (a fan-beam sinogram keeps its geometry: the chosen layers stay, and so do their facts)."""
        super().restore_defaults()
        filled = self.fill_from_inputs()
        if filled and not self.running:
            self._status.value = f"defaults restored; {filled}"

    # ------------------------------------------------------------------ fields
    @property
    def viewer(self) -> napari.viewer.Viewer:
        return self._viewer

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._worker is not None

    @property
    def closed(self) -> bool:
        """Whether the panel's dock was closed."""
        return self._closed

    @property
    def status(self) -> str:
        """The status line's text."""
        return str(self._status.value)

    def field(self, name: str) -> Widget:
        """The field of a task parameter or common fit setting, by parameter name (or ``"hidden_width"``,
        ``"replace_previous"``)."""
        for fields in (self.params, self.fit_fields):
            if name in fields:
                return fields[name]
        extra = {"hidden_width": self._width, "replace_previous": self._replace}
        if name in extra:
            return extra[name]
        raise KeyError(f"{self.title} has no field {name!r}")

    def param_kwargs(self) -> dict:
        """The task's own parameters, read back from the generated fields by name and checked."""
        return self.params.values()

    def common_kwargs(self) -> dict:
        """The common fit settings read back by name (model, model_kwargs with the hidden width, steps, ...)."""
        values = self.fit_fields.values()
        width = int(self._width.value)
        values["model_kwargs"] = {"hidden_channels": (width, width), **(values.get("model_kwargs") or {})}
        return values

    def common_parameters(self) -> dict:
        """The common settings asked for, JSON-able (the task reports what it ran; see :meth:`result_metadata`)."""
        return plain(self.common_kwargs())

    # ------------------------------------------------------------------ jobs
    def new_job(self, args: Sequence[Any], *, source: Layer | None = None, inputs: dict | None = None,
                result_name: str | None = None, layer_kwargs: dict | None = None, context: dict | None = None,
                baselines: Any = None, **data: Any) -> Job:
        """A :class:`Job` of the fields' values, the data arguments ``data`` and the reference picker's layer.

        Args:
            args: the task's positional arguments (private copies of the data).
            source: the input layer (its name is recorded).
            inputs: further layers read, by role (the source is recorded under the task's first input).
            result_name, layer_kwargs, context, baselines: see :class:`Job`.
            data: keyword data arguments of the task (``shifts``, ``reference``, ``spacing`` ...).
        """
        requested = {**self.common_kwargs(), **self.param_kwargs()}
        kwargs = {**requested, **data}
        roles: dict[str, Any] = {}
        if source is not None:
            roles[self.spec.inputs[0].name if self.spec.inputs else "source"] = source.name
        roles.update(inputs or {})
        if self._ref is not None:
            ref = self._ref.value
            if "reference" not in kwargs:
                kwargs["reference"] = None if ref is None else image_array(ref, "reference")
                if ref is not None and self.reference_same_units and args:
                    check_same_units(np.asarray(args[0]), kwargs["reference"], "input", ref.name)
            roles["reference"] = None if ref is None else ref.name
        return Job(args=tuple(args), kwargs=kwargs, result_name=result_name or self.result_name(),
                   layer_kwargs=dict(layer_kwargs or {}), parameters=plain(requested),
                   source=None if source is None else source.name, context=dict(context or {}), inputs=roles,
                   baselines=baselines)

    # ------------------------------------------------------------------ run / cancel
    def run(self) -> None:
        """Start the task in a worker thread (refused, with a notification, while one is running)."""
        if self.running:
            show_info(f"{self.title} is already running; wait for it to finish or press Cancel")
            return
        if self._closed:
            return
        from reconstruct.device import resolve_device
        from reconstruct.tasks import TASKS

        try:
            job = self.make_job()
            resolve_device(job.kwargs.get("device", "auto"))
            task_fn = TASKS[self.task]
        except (ValueError, TypeError, KeyError) as exc:
            show_error(f"{self.title}: {one_line(exc)}")
            self._status.value = f"not started: {one_line(exc)}"
            return
        self.remember_settings()
        self._start(task_fn, job)

    def _start(self, task_fn: Any, job: Job) -> None:
        from napari.qt.threading import create_worker

        self._cancel = threading.Event()  # one per run: a late worker never sees the next run's
        handle = RunHandle(self._cancel)
        self._handle, self._forget_run = handle, register_run(handle)
        self._job = job
        self._preview = None
        self.progress_updates = 0
        worker = create_worker(run_task, task_fn, job, handle.cancel, self._relay, handle.done, _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        steps = max(int(job.kwargs.get("steps") or self.spec.default_steps), 1)
        self.meter = RunMeter(steps, job.kwargs.get("time_budget_s"))
        self._compile_hint = (job.kwargs.get("model") == "nestnet" and job.kwargs.get("method", "inr") == "inr"
                              and not TaskPanel._warmed)
        self._bar.max = steps
        self._bar.value = 0
        self._cancel_button.enabled = True
        self._status.value = self.meter.waiting_text(self._compile_hint)
        self._timer.start()
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

    # ------------------------------------------------------------------ closing
    def _on_dock_closed(self) -> None:
        """The dock was closed (napari's close button): cancel the run, drop the preview, stop listening."""
        if self._closed:
            return
        self._closed = True
        self._cancel.set()
        self._remove_preview()
        self._timer.stop()
        try:
            self._viewer.layers.selection.events.active.disconnect(self._on_active_layer)
        except (RuntimeError, TypeError, ValueError):
            pass
        self.remember_settings()

    def _on_window_closing(self) -> None:
        """The viewer's window is closing: stop the run now, before Qt tears down what it reports to."""
        self._window_closing = True
        handle = self._handle
        if handle is None or handle.done.is_set():
            return
        self._remove_preview()
        stop_runs([handle])

    # ------------------------------------------------------------------ main-thread slots
    def _tick(self) -> None:
        meter = self.meter
        try:
            if not self.running or meter is None or meter.first_step_s is not None or self._closed:
                self._timer.stop()
                return
            if not self._cancel.is_set():
                self._status.value = meter.waiting_text(self._compile_hint)
        except RuntimeError:
            pass

    def _on_progress(self, info: Any) -> None:
        job = self._job
        if job is None or self._closed or self.meter is None:  # a late update, or a closed panel
            return
        try:
            self.progress_updates += 1
            TaskPanel._warmed = True
            self.meter.update(info)
            self._bar.max = max(int(info.steps), 1)
            self._bar.value = int(info.step)
            if not self._cancel.is_set():
                self._status.value = self.meter.text()
            if info.output is not None:
                self._show_preview(job, info.output)
        except RuntimeError:  # the panel was deleted while the worker ran
            self._cancel.set()

    def _show_preview(self, job: Job, output: np.ndarray) -> None:
        layer = self._preview
        if layer is not None and layer in self._viewer.layers:
            layer.data = output
            if "contrast_limits" not in job.layer_kwargs and not getattr(layer, "rgb", False):
                layer.reset_contrast_limits()  # early previews span another range than later ones
            return
        kwargs = {k: v for k, v in job.layer_kwargs.items() if k not in ("name", "metadata")}
        self._preview = self._viewer.add_image(output, name=f"{job.result_name} (preview)",
                                               metadata={"role": PREVIEW}, **kwargs)

    def _remove_preview(self) -> None:
        preview, self._preview = self._preview, None
        try:
            if preview is not None and preview in self._viewer.layers:
                self._viewer.layers.remove(preview)
        except (RuntimeError, ValueError, KeyError):  # the viewer is being torn down
            logger.debug("preview layer not removed", exc_info=True)

    def _window_gone(self) -> bool:
        if not self._window_closing:
            return False
        try:
            return not self.native.window().isVisible()
        except RuntimeError:
            return True

    def _on_returned(self, outcome: Any) -> None:
        job, self._job = self._job, None
        try:
            self._timer.stop()
        except RuntimeError:
            pass
        self._remove_preview()
        if job is None or self._closed or self._window_gone():
            return
        try:
            self._show_outcome(job, outcome)
        except RuntimeError:  # the panel's widgets were deleted (viewer closed mid-run)
            logger.debug("panel closed before its result arrived")

    def _on_finished(self) -> None:
        self._worker = None
        self._handle = None
        if self._forget_run is not None:
            self._forget_run()
            self._forget_run = None
        try:
            self._cancel_button.enabled = False
            self._save_button.enabled = bool(self.result_layers())
        except RuntimeError:
            pass
