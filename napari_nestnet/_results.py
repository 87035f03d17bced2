"""A small registry of the most recent fits, shared by the panels and the plot viewers.

Panels add every finished fit; the learned-activations viewer and the PINN profile viewer listen to
``RECENT_FITS.changed`` and redraw.  Only the last few fits are kept: a fit holds its model (and
the best iterate's weights), so an unbounded list would grow with every Run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psygnal import Signal

__all__ = ["RecentFit", "FitRegistry", "RECENT_FITS", "MAX_RECENT_FITS"]

MAX_RECENT_FITS = 6


@dataclass
class RecentFit:
    """One finished fit as the viewers see it.

    Args:
        label: the name of the result layer it produced (unique enough to choose by).
        task: the task name (a key of ``reconstruct.tasks.TASKS``).
        model_name: the network's registry name (``"nestnet"``, ``"siren"``, ...).
        result: the task's ``FitResult``.
        parameters: the parameters the panel ran it with.
    """

    label: str
    task: str
    model_name: str
    result: Any
    parameters: dict = field(default_factory=dict)


class FitRegistry:
    """The last :data:`MAX_RECENT_FITS` fits, newest last; emits ``changed`` on every change."""

    changed = Signal()

    def __init__(self, maxlen: int = MAX_RECENT_FITS) -> None:
        self._fits: deque[RecentFit] = deque(maxlen=maxlen)

    def add(self, fit: RecentFit) -> None:
        """Register a finished fit (the oldest one is dropped when full)."""
        self._fits.append(fit)
        self.changed.emit()

    def clear(self) -> None:
        """Forget every fit (tests, or to free the models' memory)."""
        self._fits.clear()
        self.changed.emit()

    def fits(self, where: Callable[[RecentFit], bool] | None = None) -> list[RecentFit]:
        """The registered fits, oldest first, optionally only those ``where`` accepts."""
        return [f for f in self._fits if where is None or where(f)]

    def latest(self, where: Callable[[RecentFit], bool] | None = None) -> RecentFit | None:
        """The newest fit ``where`` accepts, or ``None``."""
        found = self.fits(where)
        return found[-1] if found else None

    def __len__(self) -> int:
        return len(self._fits)


#: The process-wide registry the panels write to and the viewers read from.
RECENT_FITS = FitRegistry()
