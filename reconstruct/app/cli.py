"""The ``nestnet`` command: one sub-command per task, generated from the task descriptions, plus ``demo`` and ``batch``.

Every task sub-command (``nestnet fit-image``, ``denoise``, ``sr``, ``misr``, ``ct``, ``occupancy``,
``pinn``) takes the options of its :class:`~reconstruct.tasks.spec.TaskSpec` and the common fit
settings, reads its input with :func:`reconstruct.app.images.read_image` (PNG/TIFF, NumPy, NIfTI,
MetaImage, NRRD), writes the result in the input's format with its spacing/origin/direction, and a JSON
record beside it (:func:`reconstruct.app.records.run_record`). Outputs are written atomically, never over
an existing file without ``--overwrite`` and never onto or inside an input. Bad input ends with one line
``nestnet: error: <message>`` on stderr and exit status 2.

Examples::

    nestnet demo                                     # CT of a phantom: NestNet vs FBP, PNG + JSON
    nestnet ct sinogram.npy --angles 0:180:60 --out recon.npy
    nestnet denoise noisy.png --model siren --steps 1000 --out clean.png
    nestnet sr lowres.nii.gz --scale 4 --out highres.nii.gz
    nestnet pinn --beta 5 --out u.npy
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..tasks import FIT_PARAMS, SPECS, TaskSpec
from .commands import Usage, run_task_command
from .files import one_line
from .meshes import LEVEL, MESH_OPTIONS
from .options import add_param_options

__all__ = ["main", "build_parser", "add_fit_options", "OneLineParser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE",
           "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_ERROR = 1  # an unexpected failure (one line; NESTNET_DEBUG=1 shows the traceback)
EXIT_USAGE = 2  # bad input or arguments: nothing was written
EXIT_INTERRUPTED = 130

PROG = "nestnet"

_INPUT_HELP = {
    "fit_image": "image file (PNG, TIFF, .npy/.npz, NIfTI, MHA, NRRD)",
    "denoise": "noisy image file",
    "super_resolve": "low-resolution image (or, with --simulate, the high-resolution truth)",
    "super_resolve_multi": "frames (K, h, w[, C]) as .npy/.tif/NIfTI (or, with --simulate, one high-resolution image)",
    "ct_reconstruct": "sinogram file (2-D)",
    "ct_reconstruct_3d": "projections file (3-D): a sinogram stack (Z, angles, detectors) or cone-beam projections "
                         "(views, rows, cols)",
    "fit_occupancy": "mesh (.stl/.obj/.ply/.off/.glb) or volume (NIfTI, MHA, NRRD, .npy, TIFF)",
}


class OneLineParser(argparse.ArgumentParser):
    """A parser whose usage errors are one line on stderr (``nestnet <cmd>: error: ...``), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message, limit=None, keep='first')} "
                              f"(see {self.prog} --help)\n")


def add_fit_options(parser: argparse.ArgumentParser, spec: TaskSpec, *, out_help: str | None = None,
                    reference: bool = True) -> None:
    """The task's own options, the common fit settings and the output options, all from the descriptions."""
    add_param_options(parser.add_argument_group(spec.title.lower()), spec.params_for("cli"))
    fit = parser.add_argument_group("fitting")
    add_param_options(fit, [p for p in FIT_PARAMS if "cli" in p.doors])
    if reference and spec.reference:
        fit.add_argument("--reference", default=None, metavar="FILE",
                         help="ground truth on the output grid: enables the metrics and the (oracle) best iterate")
    o = parser.add_argument_group("output")
    o.add_argument("--out", "-o", default=None,
                   help=out_help or "output file (default: beside the input, tagged with the task)")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_task_inputs(p: argparse.ArgumentParser, spec: TaskSpec) -> None:
    """The data inputs (files) and the options particular to reading them."""
    if spec.name in _INPUT_HELP:
        p.add_argument("input", help=_INPUT_HELP[spec.name])
    if spec.name in ("ct_reconstruct", "ct_reconstruct_3d"):
        default = "0:180:<number of projections>" if spec.name == "ct_reconstruct" else \
            "0:180 parallel, 0:360 fan and cone, one per projection"
        p.add_argument("--angles", default=None, metavar="SPEC",
                       help="degrees: start:stop:count (stop excluded, e.g. 0:180:60) or a .npy/.txt file "
                            f"(default {default})")
    if spec.name == "super_resolve_multi":
        p.add_argument("--shifts", default=None, metavar="FILE",
                       help="(K, 2) per-frame (dy, dx) in high-resolution pixels (.npy or text)")
        p.add_argument("--rotations", default=None, metavar="FILE",
                       help="(K,) per-frame rotations in radians (.npy or text), as the Python API")
    if spec.name in ("super_resolve", "super_resolve_multi"):
        p.add_argument("--simulate", action="store_true",
                       help="treat the input as the truth: make the low-resolution data from it, super-resolve, "
                            "score")
    if spec.name == "fit_occupancy":
        add_param_options(p, MESH_OPTIONS)
        p.add_argument("--surface", default=None, metavar="FILE",
                       help="also write the fitted surface (.stl/.ply/.obj)")
        add_param_options(p, [LEVEL])


def build_parser() -> argparse.ArgumentParser:
    """The ``nestnet`` parser: one sub-command per task (from :data:`reconstruct.tasks.SPECS`), demo and batch."""
    from .batch import add_batch_parser
    from .demo import add_demo_parser

    parser = OneLineParser(
        prog=PROG,
        description="NestNet implicit neural representations: fit, denoise, super-resolve, reconstruct CT, "
                    "represent occupancy volumes and solve a PINN. Outputs keep the input's format and "
                    "geometry, with a JSON record beside them.",
        epilog="exit status: 0 done; 2 bad input or arguments (one line on stderr, nothing written); "
               "1 unexpected failure (NESTNET_DEBUG=1 shows the traceback); 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for spec in SPECS.values():
        p = sub.add_parser(spec.command, help=spec.summary, description=f"{spec.title}: {spec.summary}.")
        _add_task_inputs(p, spec)
        add_fit_options(p, spec)
        p.set_defaults(func=lambda args, spec=spec: run_task_command(spec, args))
    add_demo_parser(sub)
    add_batch_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nestnet`` command; returns the exit status (the console script passes it to ``sys.exit``).

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or an argparse usage error (already printed)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if argv is None and args.command != "batch":
        # Only for a real command line: restarts this process with tcmalloc when installed.
        from .runtime import reexec_with_tcmalloc

        reexec_with_tcmalloc()
    from .runtime import tune_allocator

    tune_allocator()
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (Usage, ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError, OSError) as exc:
        if os.environ.get("NESTNET_DEBUG"):
            raise
        print(f"{PROG}: error: {one_line(str(exc), limit=None, keep='first', fallback=type(exc).__name__)}",
              file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if os.environ.get("NESTNET_DEBUG"):
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {one_line(str(exc), limit=None, keep='first', fallback='')} "
              "(set NESTNET_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
