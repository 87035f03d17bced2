"""Hatch build hook: package the repo-root ``napari.yaml`` into ``napari_nestnet``.

The manifest has one source of truth (the repo root).  A wheel gets it through
``force_include``; an editable install reads the package from the source tree, so the
hook also copies it next to ``napari_nestnet/__init__.py`` (that copy is git-ignored).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        manifest = root / "napari.yaml"
        target = root / "napari_nestnet" / "napari.yaml"
        if not target.exists() or target.read_bytes() != manifest.read_bytes():
            shutil.copyfile(manifest, target)
        if self.target_name == "wheel" and version != "editable":
            build_data["force_include"][str(manifest)] = "napari_nestnet/napari.yaml"
