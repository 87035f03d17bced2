"""``nestnet demo``: CT of a noisy sparse-view phantom sinogram, the network against FBP, as a PNG and a record."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import SPECS
from ..tasks.spec import Param
from .cli import add_fit_options
from .commands import run_fit_command
from .files import atomic_write, write_json
from .images import write_image
from .options import add_param_options
from .records import run_record

__all__ = ["add_demo_parser", "demo_phantom"]

PROG = "nestnet"

# Demo defaults: a 96² phantom, 60 noisy views; sized to run in 1–2 minutes on 2 CPU cores.
_DEMO_SIZE = 96
_DEMO_ANGLES = 60
_DEMO_NOISE = 0.01
_DEMO_STEPS = 150


def demo_phantom(size: int) -> np.ndarray:
    """The Shepp–Logan phantom at ``size``², zero outside the inscribed circle (``radon(circle=True)``)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    offset = np.arange(size) - size // 2
    image[offset[:, None] ** 2 + offset[None, :] ** 2 > (size // 2) ** 2] = 0.0
    return image.astype(np.float32)


def _save_figure(path: Path, panels: list[tuple[str, np.ndarray]]) -> None:
    """Side-by-side grey panels written atomically (temporary file, then rename)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(panels), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    lo = min(float(p.min()) for _, p in panels)
    hi = max(float(p.max()) for _, p in panels)
    for i, (title, image) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), "a PNG figure")


def _cmd_demo(args: argparse.Namespace) -> int:
    from skimage.transform import radon

    start = time.perf_counter()
    out_dir = Path(args.out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder")
    # The demo replaces its own earlier outputs (re-running `make demo` must work).
    figure, record, recon = out_dir / "ct_demo.png", out_dir / "ct_demo.json", out_dir / "ct_demo_nestnet.npy"
    size = args.size
    phantom = demo_phantom(size)
    theta = np.linspace(0.0, 180.0, args.n_angles, endpoint=False)
    sinogram = radon(phantom.astype(np.float64), theta=theta, circle=True)
    model = getattr(args, "model", "nestnet")
    rng = np.random.default_rng(getattr(args, "seed", 0))
    sinogram = sinogram + args.noise * float(np.abs(sinogram).max()) * rng.standard_normal(sinogram.shape)
    print(f"{PROG} demo: {size}×{size} Shepp–Logan phantom, {args.n_angles} views over 0–180°, "
          f"{args.noise:.1%} noise; fitting {model} for {args.steps} steps ...")
    result = run_fit_command(SPECS["ct_reconstruct"], args, sinogram, theta, reference=phantom)
    fbp, fbp_m, m = result.extras["fbp"], result.extras["fbp_metrics"], result.metrics
    lines = [
        f"  {'method':<10}{'PSNR (dB)':>10}{'SSIM':>8}",
        f"  {'FBP':<10}{fbp_m['psnr']:>10.2f}{fbp_m['ssim']:>8.3f}",
        f"  {model:<10}{m['psnr']:>10.2f}{m['ssim']:>8.3f}   (final iterate, step {result.steps})",
    ]
    if result.best is not None:
        b = result.best.metrics
        lines.append(f"  {'':<10}{b['psnr']:>10.2f}{b['ssim']:>8.3f}   (best iterate, step {result.best.step}; oracle)")
    print("\n".join(lines))
    _save_figure(figure, [
        ("phantom", phantom),
        (f"FBP  {fbp_m['psnr']:.2f} dB", fbp),
        (f"{model}  {m['psnr']:.2f} dB", result.output),
    ])
    write_image(recon, result.output, overwrite=True)
    write_json(record, run_record(result, task="ct_reconstruct", output=recon,
                                  inputs={"phantom": f"shepp_logan {size}x{size}", "angles_deg": theta.tolist(),
                                          "noise": args.noise},
                                  command=f"{PROG} demo", argv=list(getattr(args, "argv", [])), figure=str(figure),
                                  total_seconds=time.perf_counter() - start))
    delta = m["psnr"] - fbp_m["psnr"]
    print(f"{PROG} demo: {model} is {abs(delta):.2f} dB {'above' if delta >= 0 else 'below'} FBP; "
          f"wrote {figure}, {record.name} and {recon.name} in {time.perf_counter() - start:.0f} s")
    return 0


#: The demo's own options (the CT task's come from its spec).
DEMO_OPTIONS = (
    Param("size", int, _DEMO_SIZE, "phantom side", low=8, units="pixels"),
    Param("n_angles", int, _DEMO_ANGLES, "views over 0-180 degrees", low=1),
    Param("noise", float, _DEMO_NOISE, "Gaussian noise, fraction of the sinogram maximum", low=0.0),
)


def add_demo_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to the ``nestnet`` sub-commands: the CT task's options, demo steps by default."""
    spec = SPECS["ct_reconstruct"]
    p = sub.add_parser("demo", help="CT demo: NestNet vs FBP on a phantom sinogram (PNG + JSON)",
                       description="Simulate a noisy sparse-view sinogram of the Shepp-Logan phantom, "
                                   "reconstruct it, print PSNR/SSIM of the network and of FBP, and write "
                                   "ct_demo.png (phantom | FBP | network), ct_demo.json and the reconstruction "
                                   "into --out (files of an earlier demo there are replaced).")
    add_param_options(p, DEMO_OPTIONS)
    add_fit_options(p, spec, reference=False, out_help="output folder (default: demo_output)")
    p.set_defaults(func=_cmd_demo, steps=_DEMO_STEPS, out="demo_output",
                   **{o.name: o.default for o in DEMO_OPTIONS})
    return p
