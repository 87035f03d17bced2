"""Make the README screenshots from the real application, driven the way a user clicks.

Each picture is a panel opened from the Plugins menu (``add_plugin_dock_widget``), its sample opened
from File > Open Sample (``open_sample``) and its Run button clicked, at the panel's defaults: nothing
sets the panel's layers or fields (only the camera, the grid and which layers show are arranged for
the picture).

Usage::

    .venv/bin/python docs/screenshots.py                  # re-runs itself under xvfb-run when there is no display
    .venv/bin/python docs/screenshots.py --steps 20       # fewer steps (a layout check, not the default results)
    .venv/bin/python docs/screenshots.py --time-defaults  # only time each panel's default run on its sample

Writes ``docs/images/denoise_panel.png`` (the Denoise panel right after the first click: input and
reference chosen, the result named with its PSNR beside the noisy input's), ``docs/images/ct_panel.png``
(sinogram, FBP, NestNet and the phantom side by side), ``docs/images/activations.png`` (the learned
activation curves of that CT fit), ``docs/images/pinn.png`` (prediction, exact solution and error
over (x, t) with the u(x) profile plot) and ``docs/images/occupancy_3d.png`` (the fitted surface).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGES = Path(__file__).resolve().parent / "images"
WINDOW = (1500, 950)
PLUGIN = "napari-nestnet"
#: Every panel (its Plugins-menu name) and the sample it is shown with.
DEFAULT_RUNS = (
    ("Fit image", "noisy_photo"),
    ("Denoise", "noisy_photo"),
    ("Super-resolve (single image)", "low_resolution"),
    ("Super-resolve (multi-frame)", "multi_frame"),
    ("CT reconstruction", "ct_sinogram"),
    ("Occupancy volume", "occupancy_volume"),
    ("PINN convection", None),
)


def _ensure_display() -> None:
    """Re-run this script under a virtual X server when there is no display."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("_NESTNET_XVFB"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("no display and no xvfb-run: install xvfb (scripts/install-system-deps.sh) or set DISPLAY")
    env = {**os.environ, "_NESTNET_XVFB": "1"}
    cmd = [xvfb, "-a", "-s", f"-screen 0 {WINDOW[0] + 100}x{WINDOW[1] + 100}x24", sys.executable, *sys.argv]
    sys.exit(subprocess.call(cmd, env=env))


def _save(array, name: str) -> Path:
    """Write an RGBA screenshot atomically (temp file + rename)."""
    import numpy as np
    from skimage.io import imsave

    IMAGES.mkdir(parents=True, exist_ok=True)
    target = IMAGES / name
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=IMAGES)
    os.close(fd)
    try:
        imsave(tmp, np.asarray(array), check_contrast=False)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a picture for the README is not
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {target}")
    return target


def _settle(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _open(viewer, panel_name: str, sample: str | None, steps: int | None):
    """Plugins > NestNet > ``panel_name``, then File > Open Sample > ``sample`` (as a user does)."""
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, panel_name)
    if sample is not None:
        viewer.open_sample(PLUGIN, sample)
    if steps is not None:  # --steps: a quicker layout check
        panel.field("steps").value = steps
    return panel


def _click_run(panel, timeout_s: float = 3600) -> float:
    """Click Run and wait for the result; returns the seconds from the click to the result."""
    start = time.monotonic()
    panel._run_button.native.click()
    if not panel.wait(timeout_s):
        panel._cancel_button.native.click()
        panel.wait(120)
    seconds = time.monotonic() - start
    if panel.last_result is None:
        sys.exit(f"{panel.title} produced no result: {panel.status}")
    print(f"{panel.title}: {seconds:.1f} s from the click · {panel.status}")
    return seconds


def _grid(viewer, shape: tuple[int, int]) -> None:
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") and hasattr(viewer.canvas, "grid") else viewer.grid
    grid.enabled = True
    grid.shape = shape
    grid.stride = 1


def _fresh(viewer) -> None:
    viewer.window.remove_dock_widget("all")
    viewer.layers.clear()
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") and hasattr(viewer.canvas, "grid") else viewer.grid
    grid.enabled = False
    viewer.dims.ndisplay = 2
    viewer.axes.visible = False
    viewer.window.resize(*WINDOW)  # (a tall dock may have grown the window)


def _shot(viewer, name: str) -> None:
    _settle()
    _save(viewer.screenshot(canvas_only=False, flash=False), name)


def denoise_screenshot(viewer, steps: int | None) -> None:
    panel = _open(viewer, "Denoise", "noisy_photo", steps)
    _click_run(panel)
    viewer.layers["astronaut (ground truth)"].visible = True
    _grid(viewer, (1, 3))
    viewer.reset_view()
    _shot(viewer, "denoise_panel.png")


def ct_screenshot(viewer, steps: int | None):
    panel = _open(viewer, "CT reconstruction", "ct_sinogram", steps)
    _click_run(panel)
    recon, fbp = panel.last_layers
    truth = viewer.layers["shepp_logan_phantom (ground truth)"]
    truth.visible = True
    # grid tiles follow the layer order: sinogram, FBP / NestNet, ground truth
    for i, layer in enumerate([viewer.layers["ct_sinogram"], fbp, recon, truth]):
        viewer.layers.move(viewer.layers.index(layer), i)
    for layer in (fbp, recon, truth):
        layer.contrast_limits = (0.0, 1.0)
    _grid(viewer, (2, 2))
    viewer.layers.selection.active = recon
    viewer.reset_view()
    _shot(viewer, "ct_panel.png")
    return panel


def activations_screenshot(viewer) -> None:
    _, plot = viewer.window.add_plugin_dock_widget(PLUGIN, "Learned activations")
    plot.resize(520, 420)
    _settle()
    plot.canvas.draw()
    _save(_grab(plot), "activations.png")


def _grab(widget):
    """A widget's pixels as an (H, W, 4) uint8 array (RGBA)."""
    import numpy as np
    from qtpy.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    height, stride = image.height(), image.bytesPerLine()
    buffer = np.frombuffer(image.constBits().asstring(height * stride), dtype=np.uint8)
    return buffer.reshape(height, stride // 4, 4)[:, : image.width()].copy()


def pinn_screenshot(viewer, steps: int | None) -> None:
    panel = _open(viewer, "PINN convection", None, steps)
    _click_run(panel)
    panel._profile.set_time_index(int(panel.field("nt").value * 0.75))
    _grid(viewer, (1, 3))
    viewer.reset_view()
    _shot(viewer, "pinn.png")


def occupancy_screenshot(viewer, steps: int | None) -> None:
    panel = _open(viewer, "Occupancy volume", "occupancy_volume", steps)
    _click_run(panel)  # the panel switches to 3-D and shows the surface itself
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.angles = (60.0, -20.0, 30.0)  # a three-quarter view (the default looks down an axis)
    camera.zoom *= 1.1
    _shot(viewer, "occupancy_3d.png")


def time_defaults(viewer, panels: list[str] | None = None) -> None:
    """Dock each panel (or those named in ``panels``), open its sample, click Run at the defaults, and
    print the seconds it took."""
    import torch

    known = [name for name, _ in DEFAULT_RUNS]
    unknown = sorted(set(panels or ()) - set(known))
    if unknown:
        raise SystemExit(f"unknown panel {', '.join(unknown)}; choose from {', '.join(known)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    for panel_name, sample in DEFAULT_RUNS:
        if panels and panel_name not in panels:
            continue
        panel = _open(viewer, panel_name, sample, None)
        settings = f"{panel.field('steps').value} steps, width {panel.field('hidden_width').value}"
        seconds = _click_run(panel)
        print(f"  {panel_name:<30} {settings:<24} {seconds:6.1f} s   (load {os.getloadavg()[0]:.1f})")
        _fresh(viewer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="steps for every run (default: each panel's own)")
    parser.add_argument("--time-defaults", action="store_true", help="only time every panel's default run")
    parser.add_argument("--panel", action="append", default=None, metavar="NAME",
                        help="with --time-defaults: time only this panel (repeatable), e.g. 'CT reconstruction'")
    args = parser.parse_args(argv)
    _ensure_display()
    import napari

    # the pictures must not depend on what this machine's user last ran
    os.environ.setdefault("NAPARI_NESTNET_SETTINGS", str(Path(tempfile.mkdtemp()) / "settings.json"))
    viewer = napari.Viewer(show=True, title="napari-nestnet")
    viewer.window.resize(*WINDOW)
    try:
        if args.time_defaults:
            time_defaults(viewer, args.panel)
            return 0
        denoise_screenshot(viewer, args.steps)
        _fresh(viewer)
        ct_screenshot(viewer, args.steps)
        activations_screenshot(viewer)
        _fresh(viewer)
        pinn_screenshot(viewer, args.steps)
        _fresh(viewer)
        occupancy_screenshot(viewer, args.steps)
    finally:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
