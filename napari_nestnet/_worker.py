"""The worker side of a panel run: the prepared :class:`Job`, the task on a worker thread, its messages.

:func:`run_task` is the worker thread's body: it runs the task with an ``on_step`` that relays a
throttled stream of :class:`reconstruct.fit.StepInfo` to the main thread through a Qt signal (a
queued connection) and returns ``False`` once the panel's cancel event is set, which makes the task
stop and return the result so far.  Exceptions never leave the worker: they come back as a value
(:class:`Outcome`) and become a one-line notification (:func:`one_line`) on the main thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

__all__ = ["Job", "Outcome", "Relay", "run_task", "one_line", "plain", "PROGRESS_INTERVAL_S"]

logger = logging.getLogger(__name__)

#: Minimum seconds between two progress updates sent to the main thread (previews always go).
PROGRESS_INTERVAL_S = 0.25  # 20 updates a second cost a 2-core fit ~40 % (the status line redraws)
_MESSAGE_LIMIT = 300


def one_line(exc: BaseException) -> str:
    """A one-line message for a notification: the first line of the error, named unless obvious."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0].strip() if lines else type(exc).__name__
    if not isinstance(exc, (ValueError, TypeError)):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def plain(value: Any) -> Any:
    """JSON-like copy for ``layer.metadata`` (numpy scalars and arrays to Python numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
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
        parameters: the settings asked for (the fields read back, JSON-able); the result layers record
            what the task reports it ran (``result.extras["parameters"]``), these only when it reports none.
        source: name of the input layer.
        context: anything else the panel needs to build its result layers.
        baselines: see the attribute.
        inputs: the layers read, by role (``{"sinogram": "sino", "reference": "phantom"}``).
    """

    args: tuple
    kwargs: dict
    result_name: str
    layer_kwargs: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    source: str | None = None
    context: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    #: Called on the worker thread with the task's result: extra baselines, name -> metrics (e.g. the
    #: noisy input's PSNR against the reference), kept in ``Outcome.baselines``.
    baselines: Callable[[Any], dict] | None = None


@dataclass
class Outcome:
    """What a run gave back: the task's result (or its error) and the extra baselines' metrics."""

    result: Any = None
    error: BaseException | None = None
    baselines: dict = field(default_factory=dict)


class Relay(QObject):
    """Carries progress from the worker thread to the main thread (a queued Qt connection)."""

    progressed = Signal(object)


_allocator_lock = threading.Lock()
_allocator_tuned = False


def _tune_allocator_once() -> None:
    """``reconstruct.app.runtime.tune_allocator()`` once per process, when the first worker starts."""
    global _allocator_tuned
    with _allocator_lock:
        if _allocator_tuned:
            return
        _allocator_tuned = True
    from reconstruct.app.runtime import tune_allocator

    try:
        tune_allocator()
    except Exception as exc:  # tuning is an optimisation: never fail a run over it
        logger.warning("allocator tuning skipped: %s", exc)


def run_task(task_fn: Any, job: Job, cancel: threading.Event, relay: Relay,
             done: threading.Event | None = None) -> Outcome:
    """The worker thread's body: run the task, relay progress, turn every exception into a value.

    ``done`` is set when the body returns, so a closing window can wait for the thread without
    running the Qt event loop.
    """
    try:
        return _run_task(task_fn, job, cancel, relay)
    finally:
        if done is not None:
            done.set()


def _run_task(task_fn: Any, job: Job, cancel: threading.Event, relay: Relay) -> Outcome:
    _tune_allocator_once()
    last_sent = [0.0]

    def on_step(info: Any) -> bool:
        if cancel.is_set():  # nothing more for a panel that is closing
            return False
        now = time.monotonic()
        evaluated = bool(set(info.metrics or ()) - {"psnr"})  # SSIM, IoU, rel. L2: only every few steps
        if (info.output is not None or evaluated or info.step <= 1 or info.step >= info.steps
                or now - last_sent[0] >= PROGRESS_INTERVAL_S):
            last_sent[0] = now
            relay.progressed.emit(info)
        return True

    try:
        result = task_fn(*job.args, on_step=on_step, **job.kwargs)
    except Exception as exc:  # shown as one line on the main thread; the traceback goes to the log
        logger.debug("task failed", exc_info=True)
        return Outcome(error=exc)
    baselines: dict = {}
    if job.baselines is not None:
        try:
            baselines = dict(job.baselines(result))
        except Exception:  # a baseline is a comparison, never a reason to lose the result
            logger.warning("computing the input's metrics failed", exc_info=True)
    return Outcome(result=result, baselines=baselines)
