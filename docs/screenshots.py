"""Make the README screenshots from the real application (napari + this plugin's panels).

Usage::

    .venv/bin/python docs/screenshots.py            # re-runs itself under xvfb-run when there is no display
    .venv/bin/python docs/screenshots.py --quick    # fewer steps (a layout check, not pretty results)

Writes ``docs/images/ct_panel.png`` (the CT panel docked after a run: sinogram, FBP, NestNet and the
phantom side by side), ``docs/images/pinn.png`` (prediction, exact solution and error over (x, t)
with the u(x) profile plot), ``docs/images/occupancy_3d.png`` (the fitted occupancy surface in 3-D)
and ``docs/images/activations.png`` (the learned activation curves of the CT fit).
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


def _run(panel, timeout_s: float) -> None:
    panel.run()
    if not panel.wait(timeout_s):
        panel.cancel()
        panel.wait(60)
    if panel.last_result is None:
        sys.exit(f"{panel.title} produced no result: {panel.status}")
    print(f"{panel.title}: {panel.status}")


def _grid(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def _fresh(viewer) -> None:
    viewer.window.remove_dock_widget("all")
    viewer.layers.clear()
    _grid(viewer).enabled = False
    viewer.dims.ndisplay = 2


def ct_screenshot(viewer, steps: int, width: int) -> object:
    from napari_nestnet._widgets import CTReconstructionPanel

    viewer.open_sample("napari-nestnet", "ct_sinogram")
    panel = CTReconstructionPanel(viewer)
    viewer.window.add_dock_widget(panel, name="CT reconstruction", area="right")
    panel.reset_choices()
    panel._sinogram.value = viewer.layers["ct_sinogram"]
    panel._ref.value = viewer.layers["shepp_logan_phantom (ground truth)"]
    panel._steps.value = steps
    panel._width.value = width
    _run(panel, timeout_s=1800)
    truth = viewer.layers["shepp_logan_phantom (ground truth)"]
    truth.visible = True
    # grid tiles follow the layer order: sinogram, FBP / NestNet, ground truth
    order = ["ct_sinogram", "ct_fbp [ramp]", "ct_reconstruction [nestnet]", truth.name]
    for i, name in enumerate(order):
        viewer.layers.move(viewer.layers.index(name), i)
    for name in order[1:]:
        viewer.layers[name].contrast_limits = (0.0, 1.0)
    grid = _grid(viewer)
    grid.enabled = True
    grid.shape = (2, 2)
    grid.stride = 1
    viewer.layers.selection.active = viewer.layers["ct_reconstruction [nestnet]"]
    viewer.reset_view()
    _settle()
    _save(viewer.screenshot(canvas_only=False, flash=False), "ct_panel.png")
    return panel


def activations_screenshot(viewer) -> None:
    from napari_nestnet._plots import ActivationsViewer

    plot = ActivationsViewer(viewer)
    viewer.window.add_dock_widget(plot, name="Learned activations", area="right")
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


def pinn_screenshot(viewer, steps: int, width: int) -> None:
    from napari_nestnet._widgets import PinnConvectionPanel

    panel = PinnConvectionPanel(viewer)
    viewer.window.add_dock_widget(panel, name="PINN convection", area="right")
    panel._steps.value = steps
    panel._width.value = width
    panel.field("beta").value = 5.0
    _run(panel, timeout_s=1800)
    panel._profile.set_time_index(int(panel.field("nt").value * 0.75))
    grid = _grid(viewer)
    grid.enabled = True
    grid.shape = (1, 3)
    grid.stride = 1
    viewer.reset_view()
    _settle()
    _save(viewer.screenshot(canvas_only=False, flash=False), "pinn.png")


def occupancy_screenshot(viewer, steps: int, width: int) -> None:
    from napari_nestnet._widgets import OccupancyPanel

    viewer.open_sample("napari-nestnet", "occupancy_volume")
    panel = OccupancyPanel(viewer)
    viewer.window.add_dock_widget(panel, name="Occupancy volume", area="right")
    panel.reset_choices()
    panel._volume.value = viewer.layers["torus_occupancy"]
    panel._steps.value = steps
    panel._width.value = width
    _run(panel, timeout_s=1800)
    for layer in viewer.layers:
        layer.visible = layer.name.startswith("occupancy_surface")
    surface = viewer.layers["occupancy_surface [nestnet]"]
    verts, faces = surface.data[0], surface.data[1]
    surface.data = (verts, faces, verts[:, 0])  # colour by height, a depth cue in the still picture
    surface.reset_contrast_limits()  # the limits were set from the default (constant) values
    surface.colormap = "plasma"
    surface.shading = "smooth"
    viewer.layers.selection.active = surface
    viewer.dims.ndisplay = 3
    viewer.reset_view()  # (resets the camera angles too: set them after)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.angles = (60.0, -20.0, 30.0)
    camera.zoom *= 1.1
    _settle()
    _save(viewer.screenshot(canvas_only=False, flash=False), "occupancy_3d.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps: checks the layout, results stay rough")
    parser.add_argument("--width", type=int, default=128, help="hidden width of the networks (default 128)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    _ensure_display()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    import napari

    # (occupancy needs ~100 steps before its field crosses 0.5 at all: fewer leave no surface)
    steps = {"ct": 30, "pinn": 30, "occupancy": 120} if args.quick else {"ct": 300, "pinn": 600, "occupancy": 150}
    viewer = napari.Viewer(show=True, title="napari-nestnet")
    viewer.window.resize(*WINDOW)
    try:
        ct_screenshot(viewer, steps["ct"], args.width)
        activations_screenshot(viewer)
        _fresh(viewer)
        pinn_screenshot(viewer, steps["pinn"], args.width)
        _fresh(viewer)
        occupancy_screenshot(viewer, steps["occupancy"], args.width)
    finally:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
