"""``nestnet batch <task>``: one sub-command per task, its options generated from the task's spec.

Each task's options are :func:`~reconstruct.app.batch.params.batch_params` (fit settings, the task's
``batch``-door parameters, the runner's own options), made by :func:`reconstruct.app.options.add_param_options`
as for ``nestnet <task>`` (flag ``Param.cli_flag``, parsed by the spec, help ``Param.help`` with
``(default: <Param.default>)``, choices ``Param.choices``; an option not given is absent, so the task's
default applies), and its per-item data inputs. :func:`add_batch_parser` keeps the
contract the ``nestnet`` parser relies on: it adds ``batch`` to a sub-parsers object and sets
``func=run_batch_command``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from ...tasks import SPECS
from ...tasks.spec import DataInput, TaskSpec
from ..files import one_line
from ..options import add_param_options
from .cluster import SchedulerError
from .params import BATCH_OPTIONS, batch_params, batch_spec, data_options
from .runner import BatchInterrupted, run_batch
from .worker import reason_of

__all__ = ["add_batch_parser", "run_batch_command"]

_EPILOG = """\
inputs: files, folders (their input files), glob patterns (quote them; ** recurses) or CSV manifests
with a 'path' column and optional 'name', 'reference' (ground truth for metrics), the task's per-item
data ('angles' for ct, 'shifts'/'rotations' for misr) and any option of the task by name (a per-item
override, e.g. 'steps' or 'tv_weight'). pinn takes manifests of parameters (one row per item: beta,
nx, ...) or nothing (one item from the options).

outputs in --out: <name><suffix> (the input's format and geometry; pictures give .png, or .tif for
ct and occupancy; meshes give .nii.gz; pinn gives .npz with its (x, t) grid), <name>.json (status,
reason, metrics, seconds, every parameter used, versions) and summary.csv. A rerun skips items whose
output and record exist for the same parameters, so an interrupted run continues.

exit status: 0 all items succeeded; 1-125 the number of failed items (capped at 125); 126 the run
could not start (bad arguments, inputs, outputs or scheduler; nothing was written); 130 interrupted
(Ctrl-C or SIGTERM: one line, and a summary that lists what finished).

examples:
  nestnet batch ct sinograms/ --out recon/ --angles 0:180:100 --steps 300
  nestnet batch denoise 'scans/**/*.nii.gz' --out denoised/ --scheduler tls://10.0.0.5:8786
  nestnet batch ct manifest.csv --out recon/ --workers 4
  nestnet batch occupancy meshes/ --out occ/ --resolution 64
  nestnet batch pinn betas.csv --out pinn/ --steps 500
  nestnet batch ct --help          (the options of one task)
"""

_DATA_HELP = {
    "angles": "start:stop:count degrees (stop excluded) or a file of degrees; default 0:180:<number of "
              "projections>",
    "rotations": "a .npy or text file of radians; default 0 for every frame",
}


def _usage_exit(parser: argparse.ArgumentParser, message: str):
    # one line, and never mistaken for "2 items failed": usage errors exit 126 like any failure to start
    parser.exit(126, f"{parser.prog}: error: {one_line(message, limit=None, keep='first')} (see {parser.prog} "
                     "--help)\n")


def _exit_on_usage_error(parser: argparse.ArgumentParser) -> None:
    parser.error = lambda message: _usage_exit(parser, message)  # type: ignore[method-assign]


class _TaskParser(argparse.ArgumentParser):
    """A task's parser: usage errors (unknown options among them) exit 126 here, not in the parent parser."""

    def error(self, message: str):  # type: ignore[override]
        _usage_exit(self, message)

    def parse_known_args(self, args: Any = None, namespace: Any = None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)} (see nestnet batch {self.prog.split()[-1]} "
                       "--help for the options of this task)")
        return namespace, extras


def _add_data(group: Any, inp: DataInput) -> None:
    extra = _DATA_HELP.get(inp.name, "a .npy or text file")
    group.add_argument(f"--{inp.name.replace('_', '-')}", dest=inp.name, default=argparse.SUPPRESS,
                       metavar="SPEC" if inp.name == "angles" else "FILE",
                       help=f"{inp.help}, for items without their own '{inp.name}' manifest column: {extra}"
                       .replace("%", "%%"))


def _task_epilog(spec: TaskSpec) -> str:
    columns = ["path" if spec.inputs else None, "name", "reference" if spec.reference else None,
               *(i.name for i in data_options(spec))]
    names = ", ".join(p.name for p in batch_params(spec))
    inputs, outputs, status, examples = _EPILOG.split("\n\n")
    own = [line for line in examples.splitlines()[1:] if line.strip().startswith(f"nestnet batch {spec.command} ")]
    text = (f"steps: {spec.default_steps} unless --steps is given.\n\n"
            f"manifest columns: {', '.join(c for c in columns if c)}, and any option by name ({names}).\n\n")
    text += f"{outputs}\n\n{status}\n"
    return text + ("\nexamples:\n" + "\n".join(own) + "\n" if own else "")


def _add_task_parser(tasks: Any, spec: TaskSpec) -> argparse.ArgumentParser:
    t = tasks.add_parser(spec.command, help=spec.summary,
                         description=f"nestnet batch {spec.command}: {spec.summary}, over many items, on a local "
                                     "or remote Dask cluster; resumable, one bad item never stops the run.",
                         epilog=_task_epilog(spec), formatter_class=argparse.RawDescriptionHelpFormatter)
    if spec.inputs:
        t.add_argument("inputs", nargs="+", help="files, folders, glob patterns or CSV manifests")
    else:
        t.add_argument("inputs", nargs="*", help="CSV manifests, one row of parameters per item (none: one item "
                                                 "from the options)")
    t.add_argument("--out", "-o", required=True, help="output folder (created)")
    fit_names = {p.name for p in batch_params(spec)} - {p.name for p in spec.params_for("batch")} \
        - {p.name for p in BATCH_OPTIONS.get(spec.name, ())}
    params = batch_params(spec)
    add_param_options(t.add_argument_group("fit"), [p for p in params if p.name in fit_names])
    task = t.add_argument_group(spec.command)
    add_param_options(task, [p for p in params if p.name not in fit_names])
    for inp in data_options(spec):
        _add_data(task, inp)
    d = t.add_argument_group("dask")
    d.add_argument("--scheduler", default="local",
                   help="local (default: a cluster started for this run, on 127.0.0.1, serving no HTTP), "
                        "sequential (no Dask), tls://HOST:PORT or tcp://HOST:PORT (see the README on running "
                        "an external scheduler safely) or a scheduler JSON file")
    d.add_argument("--workers", type=int, default=None, help="worker processes of the local cluster")
    d.add_argument("--retries", type=int, default=2, help="re-runs of an item whose worker was lost (default 2)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    if spec.inputs:
        t.add_argument("--allow-external-data", action="store_true",
                       help="read MetaImage/NRRD headers (.mhd, .nhdr) whose data file lies outside the header's "
                            "folder (refused by default: a header can name any file)")
    t.set_defaults(func=run_batch_command, task=spec.command)
    return t


def add_batch_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``batch`` sub-command to an ``argparse`` sub-parsers object; sets ``func=run_batch_command``.

    ``batch`` has one sub-command per task (the specs' commands), each with only that task's options.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.

    Returns:
        The ``batch`` parser.
    """
    p = subparsers.add_parser(
        "batch",
        help="run a task over many files (Dask; resumable)",
        description="Run a task (fit, denoise, super-resolve, CT, occupancy, PINN) over many items, on a "
                    "local or remote Dask cluster; resumable, one bad item never stops the run. "
                    "'nestnet batch TASK --help' lists the options of a task.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _exit_on_usage_error(p)
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True, parser_class=_TaskParser,
                             help=", ".join(s.command for s in SPECS.values()))
    for spec in SPECS.values():
        _add_task_parser(tasks, spec)
    p.set_defaults(func=run_batch_command)
    return p


class _Stop:
    """Ctrl-C and SIGTERM end the run the same way: the first one raises (in the main thread), later ones
    are ignored while the run closes its cluster and writes the summary."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._raise)
        return self

    def _raise(self, signum: int, frame: Any) -> None:
        for sig in self.previous:
            signal.signal(sig, signal.SIG_IGN)
        stop = KeyboardInterrupt()
        stop.signal = signal.Signals(signum).name  # type: ignore[attr-defined]
        raise stop

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _counts(summary: Any) -> str:
    pending = sum(1 for r in summary.items if r.status == "pending")
    return (f"{len(summary.items)} items - {summary.n_ok} done, {summary.n_skipped} skipped, {summary.n_failed} "
            f"failed" + (f", {pending} pending" if pending else ""))


def run_batch_command(args: argparse.Namespace, *, echo: Callable[[str], Any] | None = None) -> int:
    """Run ``nestnet batch`` from parsed arguments; returns the exit code (see the parser's epilog).

    Ctrl-C and SIGTERM stop the run alike: its cluster is closed, the summary written (items that
    finished meanwhile are read back from their records), one line reported, exit status 130.

    Args:
        args: what the parser from :func:`add_batch_parser` produced.
        echo: where the closing report goes (default: stderr).
    """
    def default_echo(text: str) -> None:
        print(text, file=sys.stderr)

    say = echo or default_echo
    try:
        with _Stop():
            spec = batch_spec(args.task)
            names = [p.name for p in batch_params(spec)] + [i.name for i in data_options(spec)]
            params = {name: getattr(args, name) for name in names if hasattr(args, name)}
            summary = run_batch(spec.command, args.inputs, args.out, params=params, scheduler=args.scheduler,
                                n_workers=args.workers, retries=args.retries, progress=not args.no_progress,
                                allow_external_data=getattr(args, "allow_external_data", False))
    except BatchInterrupted as stop:
        say(f"nestnet batch {stop.summary.task}: interrupted ({stop.signal}); {_counts(stop.summary)}; summary: "
            f"{stop.summary.summary_csv}; run the same command again to continue")
        return 130
    except KeyboardInterrupt as stop:  # before any item ran: nothing was written
        say(f"nestnet batch: interrupted ({getattr(stop, 'signal', 'SIGINT')}) before any item ran; nothing was "
            "written")
        return 130
    except SchedulerError as exc:
        say(f"nestnet batch: error: {exc}")
        return 126
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, OSError) as exc:
        say(f"nestnet batch: error: {reason_of(exc)}")
        return 126
    say(f"nestnet batch {summary.task}: {_counts(summary)} in {summary.seconds:.1f} s; summary: {summary.summary_csv}")
    for r in summary.failed:
        say(f"  failed {r.input or r.name}: {r.reason}")
    return summary.exit_code
