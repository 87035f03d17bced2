"""What every task panel shares: the generated fields, Run/Cancel, the worker thread, progress, result layers.

A panel only collects parameters and shows results; the numerics are ``reconstruct.tasks``.  Its
parameter fields are generated from the task's description (``reconstruct.tasks.SPECS[task]``, see
:mod:`napari_nestnet._fields`): the task's own parameters (``spec.params_for("gui")``) and the common
fit settings (:data:`reconstruct.tasks.spec.FIT_PARAMS`); only the data-input pickers are written by
hand per panel.  The job's keyword arguments are the fields read back by parameter name, so a
parameter added to a spec reaches the task with no panel edit.  Result layers keep the task's own
record of what ran (:func:`reconstruct.app.records.run_record`) in ``layer.metadata``.

Run builds a :class:`~napari_nestnet._worker.Job` on the main thread (where every input is checked
and copied, so the layer is never touched and a bad input is one notification line), then runs the
task in a napari ``thread_worker`` (:func:`napari_nestnet._worker.run_task`): progress comes back
through a queued Qt signal, Cancel makes the task stop and return the result so far, and an
exception becomes a one-line error notification.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np
from magicgui.widgets import Container, Label, ProgressBar, PushButton, SpinBox, Widget, create_widget
from napari.layers import Image, Layer
from napari.utils.notifications import show_error, show_info

from ._fields import ParamFields
from ._results import RECENT_FITS, RecentFit
from ._worker import Job, Outcome, Relay, metric_text, one_line, plain, progress_text, run_task

if TYPE_CHECKING:
    import napari

__all__ = [
    "TaskPanel",
    "Job",
    "one_line",
    "image_array",
    "layer_choice",
    "progress_text",
    "device_choices",
    "DEVICES",
]

logger = logging.getLogger(__name__)

#: Device choices offered by every panel (plus ``cuda:N`` per GPU on a machine with several).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def device_choices() -> tuple[str, ...]:
    """:data:`DEVICES`, and ``cuda:0`` ... ``cuda:N-1`` when torch sees more than one GPU."""
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no usable CUDA runtime: the plain choices
        count = 0
    return DEVICES + (tuple(f"cuda:{i}" for i in range(count)) if count > 1 else ())


def layer_choice(label: str, kind: Any = Image, optional: bool = False, tooltip: str = "") -> Widget:
    """A combo box of the viewer's layers of type ``kind`` (``optional``: it may be left empty)."""
    annotation = Optional[kind] if optional else kind  # noqa: UP045 - magicgui reads typing.Optional
    return create_widget(annotation=annotation, label=label, options={"tooltip": tooltip} if tooltip else {})


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


class TaskPanel(Container):
    """Base class of the task panels.

    Subclasses set :attr:`task` (a ``reconstruct.tasks.SPECS`` key), :attr:`title`, :attr:`output_name`,
    build their data-input pickers in :meth:`_task_widgets`, prepare a :class:`Job` in :meth:`make_job`
    (usually with :meth:`new_job`) and add their layers in :meth:`add_results`.  The parameter fields
    are generated: one per ``Param`` of ``spec.params_for("gui")`` (:meth:`param_kwargs`), then the
    common fit settings (:meth:`common_kwargs`); :meth:`field` finds any of them by parameter name.

    Args:
        viewer: the napari viewer the panel is docked in (npe2 injects it).
    """

    task: ClassVar[str] = ""
    title: ClassVar[str] = ""
    output_name: ClassVar[str] = ""
    #: Tooltip of the optional "reference" layer picker (ground truth for metrics); empty: no picker.
    reference_tooltip: ClassVar[str] = ""
    #: The panel's initial "preview every" (a GUI choice: the task's own default is no previews).
    preview_every: ClassVar[int] = 25

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        from reconstruct.tasks import FIT_PARAMS, SPECS

        self._viewer = viewer
        self._worker: Any = None
        self._job: Job | None = None
        self._preview: Layer | None = None
        self._cancel = threading.Event()
        self._relay = Relay()
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

        #: The task's description: where every parameter field comes from.
        self.spec = SPECS[self.task]
        #: The task's own parameter fields, generated from ``spec.params_for("gui")``.
        self.params = ParamFields(self.spec.params_for("gui"))
        #: The common fit settings' fields, generated from ``FIT_PARAMS`` (steps: the task's default).
        self.fit_fields = ParamFields([p for p in FIT_PARAMS if "gui" in p.doors],
                                      values={"steps": self.spec.default_steps, "preview_every": self.preview_every},
                                      choices={"device": device_choices()})
        # A convenience the network arguments lack: one width for both hidden layers (-> model_kwargs).
        self._width = SpinBox(name="hidden_width", label="hidden width", min=8, max=2048, step=8, value=256,
                              tooltip="width of the two hidden layers: model_kwargs['hidden_channels'] = "
                                      "(width, width) unless 'model kwargs' sets it (the paper: 256)")
        fit = self.fit_fields
        self._model, self._steps, self._lr = fit["model"], fit["steps"], fit["lr"]
        self._device, self._seed, self._preview_every = fit["device"], fit["seed"], fit["preview_every"]
        self._ref = (layer_choice("reference", optional=True, tooltip=self.reference_tooltip)
                     if self.reference_tooltip else None)
        self._run_button = PushButton(text="Run")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._run_button.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        buttons = Container(widgets=[self._run_button, self._cancel_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self._bar = ProgressBar(label="progress", min=0, max=1, value=0)
        self._status = Label(label="status", value="idle")
        self._status.native.setWordWrap(True)  # long messages must not widen the dock

        common = list(fit)
        common.insert(1, self._width)  # right after the model
        reference = [self._ref] if self._ref is not None else []
        self.extend([*self._task_widgets(), *self.params, *reference, *common, buttons, self._bar, self._status])

    # ------------------------------------------------------------------ subclass hooks
    def _task_widgets(self) -> list[Widget]:
        """The task's data-input pickers, shown above the generated parameter fields."""
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

    def field(self, name: str) -> Widget:
        """The field of a task parameter or common fit setting, by parameter name (or ``"hidden_width"``)."""
        for fields in (self.params, self.fit_fields):
            if name in fields:
                return fields[name]
        if name == "hidden_width":
            return self._width
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

    def new_job(self, args: Sequence[Any], *, source: Layer | None = None, inputs: dict | None = None,
                result_name: str | None = None, layer_kwargs: dict | None = None, context: dict | None = None,
                **data: Any) -> Job:
        """A :class:`Job` of the fields' values, the data arguments ``data`` and the reference picker's layer.

        Args:
            args: the task's positional arguments (private copies of the data).
            source: the input layer (its name is recorded).
            inputs: further layers read, by role (the source is recorded under the task's first input).
            result_name, layer_kwargs, context: see :class:`Job`.
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
            kwargs.setdefault("reference", None if ref is None else image_array(ref, "reference"))
            roles["reference"] = None if ref is None else ref.name
        return Job(args=tuple(args), kwargs=kwargs, result_name=result_name or self.result_name(),
                   layer_kwargs=dict(layer_kwargs or {}), parameters=plain(requested),
                   source=None if source is None else source.name, context=dict(context or {}), inputs=roles)

    def result_name(self, stem: str | None = None) -> str:
        """``"<stem> [<model>]"``, e.g. ``"ct_reconstruction [nestnet]"``."""
        return f"{stem or self.output_name} [{self._model.value}]"

    def reported_parameters(self, job: Job, result: Any) -> dict:
        """What the task reports it ran (``result.extras["parameters"]``), else what the job asked for."""
        reported = (getattr(result, "extras", None) or {}).get("parameters")
        return plain(dict(reported)) if reported else dict(job.parameters)

    def result_metadata(self, job: Job, result: Any, **extra: Any) -> dict:
        """The run record (:func:`reconstruct.app.records.run_record`) and the panel's facts, for ``metadata``.

        ``parameters`` are the task's report of what ran; ``inputs`` the layers read by role; plus
        ``model``, ``steps``, ``source_layer``, ``loss_history`` and the reader's ``image_meta``.
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

    # ------------------------------------------------------------------ run / cancel
    def run(self) -> None:
        """Start the task in a worker thread (refused, with a notification, while one is running)."""
        if self.running:
            show_info(f"{self.title} is already running; wait for it to finish or press Cancel")
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
        self._start(task_fn, job)

    def _start(self, task_fn: Any, job: Job) -> None:
        from napari.qt.threading import create_worker

        self._cancel.clear()
        self._job = job
        self._preview = None
        self.progress_updates = 0
        worker = create_worker(run_task, task_fn, job, self._cancel, self._relay, _start_thread=False)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._bar.max = max(int(job.kwargs.get("steps") or self.spec.default_steps), 1)
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

    def _on_returned(self, outcome: Outcome) -> None:
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
            parameters = self.reported_parameters(job, result)
            RECENT_FITS.add(RecentFit(label=layers[0].name, task=self.task, model_name=str(parameters.get("model")),
                                      result=result, parameters=parameters))
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
