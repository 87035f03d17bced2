"""Fixtures of the napari plugin tests: a real viewer (under Xvfb), docked panels, notifications."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# Small enough that every fit in this folder takes a fraction of a second on two CPU cores.
TINY = {"width": 32}
RUN_TIMEOUT_MS = 60_000


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny fits gain nothing from intra-op threads, and on a shared 2-core machine the threads of
    several processes oversubscribe the cores (measured: 30 steps of a 32² fit took 5 s, 0.15 s on one
    thread)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _settings_file(tmp_path, monkeypatch):
    """Remembered panel settings go to a temporary file, never the user's config directory."""
    from napari_nestnet._settings import SETTINGS_ENV

    path = tmp_path / "napari-nestnet-settings.json"
    monkeypatch.setenv(SETTINGS_ENV, str(path))
    return path


@pytest.fixture(autouse=True)
def _fresh_registry():
    from napari_nestnet._results import RECENT_FITS

    RECENT_FITS.clear()
    yield
    RECENT_FITS.clear()


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


class Notes:
    """Notifications dispatched since the fixture was created."""

    def __init__(self) -> None:
        from napari.utils.notifications import notification_manager

        self._manager = notification_manager
        self._start = len(notification_manager.records)

    def all(self) -> list:
        return list(self._manager.records[self._start:])

    def messages(self, severity: str | None = None) -> list[str]:
        return [str(n.message) for n in self.all() if severity is None or str(n.severity) == severity]

    def errors(self) -> list[str]:
        return self.messages("error")


@pytest.fixture
def notes() -> Notes:
    return Notes()


def _dock(viewer, cls, *, steps: int = 20, width: int = TINY["width"], preview_every: int = 0, **fields):
    panel = cls(viewer)
    viewer.window.add_dock_widget(panel, name=cls.title)
    panel.reset_choices()
    panel._steps.value = steps
    panel._width.value = width
    panel._preview_every.value = preview_every
    panel._device.value = "cpu"
    for name, value in fields.items():  # a parameter name (a generated field) or a widget attribute
        (getattr(panel, name) if name.startswith("_") else panel.field(name)).value = value
    return panel


@pytest.fixture
def dock(viewer):
    """``dock(PanelClass, steps=.., **fields)``: create a panel in the viewer, with small common fields.

    ``fields``: parameter name -> value (``lr=0.01``, ``beta=1.0``), or ``_attribute`` -> value for a
    hand-written input widget.
    """
    return lambda cls, **kw: _dock(viewer, cls, **kw)


@pytest.fixture
def run_panel(qtbot):
    """``run_panel(panel)``: press Run and wait (processing Qt events) until the worker is done."""

    def run(panel, timeout: int = RUN_TIMEOUT_MS) -> None:
        panel.run()
        qtbot.waitUntil(lambda: not panel.running, timeout=timeout)

    return run


@pytest.fixture
def image():
    """``image(size=32, rgb=False, seed=0)``: a smooth test picture."""
    return smooth_image


def smooth_image(size: int = 32, rgb: bool = False, seed: int = 0) -> np.ndarray:
    """A smooth test picture in [0, 1] (a few Gaussian blobs), grey or RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    channels = []
    for _ in range(3 if rgb else 1):
        img = np.zeros((size, size))
        for _ in range(4):
            cy, cx, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        channels.append(img / img.max())
    out = np.stack(channels, -1) if rgb else channels[0]
    return out.astype(np.float32)
