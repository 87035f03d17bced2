"""A panel's life around its runs: closing the dock or the viewer stops the worker, and napari exits cleanly.

napari's close button on a dock (``QtViewerDockWidget.destroyOnClose``) takes the panel out of its
dock (its parent becomes None) without deleting it, and closing the viewer tears Qt down while a
worker thread may still be fitting; a worker that then emits into deleted Qt objects aborts the
process.  :class:`CloseWatcher` is an event filter on the panel (and on the window it sits in) that
reports both moments, so the panel cancels its run there; :func:`stop_runs` waits for the cancelled
workers (a step or so) without running the event loop, and runs once more at interpreter exit for
any run whose window never closed.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QEvent, QObject, QThreadPool

__all__ = ["CloseWatcher", "RunHandle", "register_run", "stop_runs", "STOP_TIMEOUT_S"]

logger = logging.getLogger(__name__)

#: How long a closing window waits for a cancelled run (it stops after its current step; the first
#: step of a session may be compiling kernels, which cannot be interrupted).
STOP_TIMEOUT_S = 60.0


@dataclass(eq=False)
class RunHandle:
    """One running worker: its cancel request and the event its thread sets when its body returns."""

    cancel: threading.Event
    done: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Ask the run to stop and wait for its thread's body to return; whether it did in time."""
        self.cancel.set()
        return self.done.wait(timeout_s)


_RUNS: set[RunHandle] = set()
_RUNS_LOCK = threading.Lock()


def register_run(handle: RunHandle) -> Callable[[], None]:
    """Track ``handle`` until the returned function is called (when the worker has finished)."""
    with _RUNS_LOCK:
        _RUNS.add(handle)

    def forget() -> None:
        with _RUNS_LOCK:
            _RUNS.discard(handle)

    return forget


def stop_runs(handles: list[RunHandle] | None = None, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Cancel ``handles`` (default: every tracked run) and wait for their threads; whether all stopped."""
    if handles is None:
        with _RUNS_LOCK:
            handles = list(_RUNS)
    for handle in handles:
        handle.cancel.set()
    stopped = all(handle.done.wait(timeout_s) for handle in handles)
    if handles:
        # the worker still emits its returned/finished signals after the body: let it leave the pool
        QThreadPool.globalInstance().waitForDone(2000)
    if not stopped:
        logger.warning("a NestNet run did not stop within %.0f s", timeout_s)
    return stopped


atexit.register(stop_runs)


def _root(widget: Any) -> Any:
    while widget.parentWidget() is not None:
        widget = widget.parentWidget()
    return widget


class CloseWatcher(QObject):
    """Watches a panel's native widget: its dock closing, and the window it sits in closing.

    Args:
        native: the panel's QWidget.
        on_dock_closed: called once when the widget leaves its dock (napari's close button).
        on_window_closing: called when the top-level window holding the widget gets a close event.
    """

    def __init__(self, native: Any, on_dock_closed: Callable[[], None],
                 on_window_closing: Callable[[], None]) -> None:
        super().__init__(native)  # a child of the panel: Qt removes the filter when the panel goes
        self._native = weakref.ref(native)
        self._on_dock_closed = on_dock_closed
        self._on_window_closing = on_window_closing
        self._docked = False
        self._windows: list[weakref.ref] = []
        native.installEventFilter(self)

    def _watch_window(self) -> None:
        native = self._native()
        if native is None:
            return
        root = _root(native)
        if root is native or any(ref() is root for ref in self._windows):
            return
        self._windows.append(weakref.ref(root))
        root.installEventFilter(self)

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        # Never raise from here: an exception in a Qt virtual aborts the process, and at interpreter
        # exit Qt may still deliver events to a filter whose Python side is half torn down.
        try:
            self._filter(obj, event)
        except Exception:  # noqa: BLE001 - see above
            pass
        return False

    def _filter(self, obj: Any, event: Any) -> None:
        kind = event.type()
        native = self._native()
        if obj is native:
            if kind == QEvent.Type.ParentChange:
                if native.parentWidget() is None:
                    if self._docked:
                        self._docked = False
                        self._on_dock_closed()
                else:
                    self._docked = True
                    self._watch_window()
            elif kind == QEvent.Type.Show:
                self._watch_window()
        elif kind == QEvent.Type.Close and any(ref() is obj for ref in self._windows):
            self._on_window_closing()
