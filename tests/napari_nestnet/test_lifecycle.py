"""Closing the dock or the viewer mid-run: the worker stops within about a second, no preview is left
behind, and napari exits cleanly (each scenario in its own process, whose exit code is the check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]

# Run in a child process: an abort at exit (a worker emitting into deleted Qt objects) must show as
# its exit code, not take the test session down.
CHILD = r'''
import json, time
import torch
torch.set_num_threads(1)
import napari
from qtpy.QtWidgets import QApplication

def spin(until, timeout):
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.005)
    return until()

def start_run():
    viewer = napari.Viewer(show=True)
    dock, panel = viewer.window.add_plugin_dock_widget("napari-nestnet", "Denoise")  # the Plugins menu
    viewer.open_sample("napari-nestnet", "noisy_photo", size=48)                       # File > Open Sample
    panel.field("steps").value = 1_000_000
    panel.field("preview_every").value = 2
    panel.field("hidden_width").value = 32
    panel._run_button.native.click()
    previews = lambda: [layer.name for layer in viewer.layers if "(preview)" in layer.name]
    seen = spin(lambda: bool(previews()) and panel.progress_updates >= 3, 60)
    return viewer, dock, panel, previews, seen

# 1. the dock's close button mid-run, then the viewer closed
viewer, dock, panel, previews, seen = start_run()
report = {"dock": {"preview_seen": seen}}
start = time.monotonic()
dock.title.close_button.click()  # napari's close button on the dock's title bar
report["dock"]["stopped"] = spin(lambda: not panel.running, 10)
report["dock"]["stop_s"] = time.monotonic() - start
report["dock"]["previews_after_close"] = previews()
report["dock"]["layers"] = [layer.name for layer in viewer.layers]
viewer.close()

# 2. the viewer closed mid-run (the panel still docked and running); the process then exits
viewer, dock, panel, previews, seen = start_run()
start = time.monotonic()
viewer.close()
report["viewer"] = {"preview_seen": seen, "close_s": time.monotonic() - start, "running": panel._handle is not None
                    and not panel._handle.done.is_set()}
print("REPORT " + json.dumps(report), flush=True)
'''


def test_closing_the_dock_or_the_viewer_mid_run_stops_it_and_napari_exits_cleanly(tmp_path):
    env = {**os.environ, "NAPARI_NESTNET_SETTINGS": str(tmp_path / "settings.json"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    # no abort at exit ("wrapped C/C++ object of type WorkerBaseSignals has been deleted", exit 134)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stderr[-3000:]}"
    assert "has been deleted" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    report = json.loads(lines[-1][len("REPORT "):])
    dock, viewer = report["dock"], report["viewer"]
    assert dock["preview_seen"] and viewer["preview_seen"], report
    assert dock["stopped"] and dock["stop_s"] < 2.0, report  # within a step or so
    assert dock["previews_after_close"] == [], report
    # a closed panel adds no result layers either: only the sample is left
    assert sorted(dock["layers"]) == ["astronaut (ground truth)", "astronaut_noisy"], report
    # closing the viewer waited for the cancelled worker (a step), not for the million steps
    assert viewer["close_s"] < 5.0 and not viewer["running"], report
