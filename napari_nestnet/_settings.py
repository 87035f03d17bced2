"""Remembered panel settings: one JSON file under the user's config directory.

Like stardist-napari (magicgui's ``persist``) and napari-sam, a panel comes back with the settings of
its last Run; "Restore defaults" forgets them.  Only the parameter fields are remembered (never the
layers, nor values read from a layer's metadata such as CT angles or frame motions).  The file is
``<config>/napari-nestnet/panels.json`` (Qt's generic config location, e.g. ``~/.config`` on Linux),
or the path in the environment variable :data:`SETTINGS_ENV` (the tests point it at a temporary
file).  A missing, unreadable or stale file is never an error: the panel starts at its defaults.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS_ENV", "settings_path", "load_settings", "save_settings", "forget_settings", "SettingsMixin"]

logger = logging.getLogger(__name__)

#: Environment variable naming the settings file (overrides the config directory).
SETTINGS_ENV = "NAPARI_NESTNET_SETTINGS"


def settings_path() -> Path:
    """Where the panels' settings are kept."""
    override = os.environ.get(SETTINGS_ENV)
    if override:
        return Path(override).expanduser()
    from qtpy.QtCore import QStandardPaths

    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    return Path(base or Path.home() / ".config") / "napari-nestnet" / "panels.json"


def _read_all() -> dict[str, dict[str, Any]]:
    path = settings_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable panel settings %s: %s", path, exc)
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _write_all(data: dict[str, dict[str, Any]]) -> None:
    path = settings_path()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".panels-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
        tmp = None
    except (OSError, TypeError, ValueError) as exc:  # a read-only home must not break a Run
        logger.warning("could not save the panel settings to %s: %s", path, exc)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def load_settings(panel: str) -> dict[str, Any]:
    """The remembered field values of ``panel`` (a task name), or ``{}``."""
    return dict(_read_all().get(panel, {}))


def save_settings(panel: str, values: dict[str, Any]) -> None:
    """Remember ``values`` (field name -> JSON-able value) for ``panel``."""
    data = _read_all()
    data[panel] = dict(values)
    _write_all(data)


def forget_settings(panel: str) -> None:
    """Forget what was remembered for ``panel``."""
    data = _read_all()
    if data.pop(panel, None) is not None:
        _write_all(data)


class SettingsMixin:
    """Remembering and restoring a task panel's fields (mixed into :class:`napari_nestnet._panel.TaskPanel`,
    whose ``task``, ``params``, ``fit_fields``, ``_width``, ``_replace``, ``_defaults`` and ``_status`` it uses).
    """

    def settings(self) -> dict:
        """The values remembered for this panel: every parameter field, the hidden width, "replace"."""
        return {**self.params.raw(), **self.fit_fields.raw(), "hidden_width": int(self._width.value),
                "replace_previous": bool(self._replace.value)}

    def remember_settings(self) -> None:
        """Keep the current settings for the next session (done on every Run and when the dock closes)."""
        save_settings(self.task, self.settings())

    def _restore_settings(self) -> None:
        values = load_settings(self.task)
        self.params.restore(values)
        self.fit_fields.restore(values)
        for name, widget in (("hidden_width", self._width), ("replace_previous", self._replace)):
            if name in values:
                try:
                    widget.value = values[name]
                except (ValueError, TypeError):
                    pass

    def restore_defaults(self) -> None:
        """Every setting back to its default, and nothing remembered for this panel any more."""
        self.params.reset()
        self.fit_fields.reset()
        self._width.value = self._defaults["hidden_width"]
        self._replace.value = self._defaults["replace_previous"]
        forget_settings(self.task)
        if not self.running:
            self._status.value = "defaults restored"
