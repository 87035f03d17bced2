"""The batch run: resume checks in the driver, then the items on Dask (or a plain loop), then the summary.

See :mod:`reconstruct.app.batch` for the rules (resumable, faults isolated, Dask, GPUs, allocator).
"""

from __future__ import annotations

import contextlib
import csv
import io as _stdio
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...tasks.spec import Param
from ..files import (
    PathLike,
    atomic_write_text,
    check_output_path,
    check_outputs_apart,
    check_writable,
    companion_files,
)
from ..images import data_files
from ..runtime import bar_interval
from .cluster import open_client
from .items import BatchItem, collect_items, output_suffix, param_stem
from .params import batch_spec, check_run_params, data_options, param_hash
from .worker import done_before, reason_of, run_item, write_failed_record

__all__ = ["SUMMARY_NAME", "ItemResult", "BatchSummary", "run_batch"]

#: File name of the run's summary table inside the output folder.
SUMMARY_NAME = "summary.csv"

_SUMMARY_FIELDS = ("name", "status", "reason", "input", "output", "record", "seconds", "param_hash")
_GLOB_CHARS = set("*?[")

Job = tuple[dict[str, Any], str]


@dataclass
class ItemResult:
    """Outcome of one item: ``status`` is ``"ok"``, ``"skipped"`` (done before), ``"failed"`` or
    ``"pending"`` (the run was interrupted before it finished); ``seconds`` is the item's wall time."""

    name: str
    input: str
    status: str
    output: str | None = None
    record: str | None = None
    reason: str | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    param_hash: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemResult:
        known = {f: d[f] for f in cls.__dataclass_fields__ if f in d}
        return cls(**known)


@dataclass
class BatchSummary:
    """What :func:`run_batch` returns: one :class:`ItemResult` per item, in input order."""

    task: str
    out_dir: Path
    summary_csv: Path
    items: list[ItemResult]
    seconds: float
    scheduler: str
    n_workers: int | None = None

    def _count(self, status: str) -> int:
        return sum(1 for r in self.items if r.status == status)

    @property
    def n_ok(self) -> int:
        """Items computed in this run."""
        return self._count("ok")

    @property
    def n_skipped(self) -> int:
        """Items whose output from an earlier run was kept."""
        return self._count("skipped")

    @property
    def n_failed(self) -> int:
        """Items that failed (each with a reason)."""
        return self._count("failed")

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.items if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """Number of failed items capped at 125 (0 when all succeed): the ``nestnet batch`` exit code."""
        return min(self.n_failed, 125)

    @property
    def items_per_minute(self) -> float:
        """Items computed (status ``"ok"``) per minute of wall time."""
        return 60.0 * self.n_ok / self.seconds if self.seconds > 0 else 0.0


def _write_summary(path: Path, results: list[ItemResult]) -> Path:
    metric_names = sorted({k for r in results for k in r.metrics})
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*_SUMMARY_FIELDS, *metric_names], lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = {k: getattr(r, k) for k in _SUMMARY_FIELDS}
        row["seconds"] = f"{r.seconds:.3f}"
        row.update({k: f"{v:.6g}" for k, v in r.metrics.items()})
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def _describe(scheduler: Any) -> str:
    if scheduler is None:
        return "local"
    if isinstance(scheduler, str):
        return scheduler
    return f"client:{getattr(scheduler, 'scheduler', None) and scheduler.scheduler.address}"


def _run_sequential(task: str, jobs: list[Job], params: Mapping[str, Any], on_result: Callable) -> None:
    for job, phash in jobs:
        on_result(run_item(task, job, params, phash))


def _close(connection: tuple[Any, ...]) -> None:
    client, cluster, own_client = connection[:3]
    with _quiet_shutdown():
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def _run_dask(task: str, jobs: list[Job], params: Mapping[str, Any], on_result: Callable,
              connection: tuple[Any, ...], retries: int) -> int | None:
    from distributed import as_completed

    client, cluster, own_client, torch_threads, n_workers = connection
    futures = {}
    try:
        for job, phash in jobs:
            key = f"nestnet-batch-{job['name']}-{uuid.uuid4().hex[:8]}"
            fut = client.submit(run_item, task, job, params, phash, torch_threads,
                                key=key, pure=False, retries=int(retries))
            futures[fut] = (job, phash)
        for fut in as_completed(futures):
            job, phash = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # lost too many workers (KilledWorker), or an infrastructure error
                reason = f"not run: {reason_of(exc)}"
                res = {"name": job["name"], "input": job["path"], "status": "failed", "reason": reason,
                       "record": job["record"], "param_hash": phash}
                write_failed_record(task, job, params, phash, reason)
            on_result(res)
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(futures), force=True)
        raise
    finally:
        _close(connection)
    return n_workers


@contextlib.contextmanager
def _quiet_shutdown():
    """Closing after an interrupt: Dask's logs of comms closed under a task are no news, and a second
    Ctrl-C must not cut the summary short."""
    import logging
    import signal
    import threading

    loggers = [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [lg.level for lg in loggers]
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if main:
            signal.signal(signal.SIGINT, previous)


class BatchInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM, after its summary was written (``summary``, ``signal``)."""

    def __init__(self, summary: BatchSummary, signal_name: str = "SIGINT") -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.summary = summary
        self.signal = signal_name


def _settled(job: Mapping[str, Any], phash: str, since: float) -> ItemResult:
    """An item with no result in this process: what its record on disk says, else pending.

    An item whose worker finished it while the run was being interrupted wrote its output and an "ok"
    record: it is done, not pending. A "failed" record counts when it was written by this run.
    """
    earlier = done_before(job["output"], job["record"], phash)
    if earlier is not None:
        return ItemResult(job["name"], job["path"], "ok", job["output"], job["record"], None,
                          float(earlier.get("wall_seconds", 0.0)), dict(earlier.get("metrics") or {}), phash)
    try:
        fresh = os.stat(job["record"]).st_mtime >= since
        with open(job["record"], encoding="utf-8") as fh:
            rec = json.load(fh) if fresh else None
    except (OSError, ValueError):
        rec = None
    if isinstance(rec, dict) and rec.get("status") == "failed" and rec.get("param_hash") == phash:
        return ItemResult(job["name"], job["path"], "failed", None, job["record"], str(rec.get("reason") or ""),
                          float(rec.get("wall_seconds") or 0.0), {}, phash)
    return ItemResult(job["name"], job["path"], "pending", None, None, "interrupted before it finished", 0.0, {},
                      phash)


def _check_scheduler(scheduler: Any) -> Any:
    if isinstance(scheduler, str):
        scheduler = scheduler.strip()
        if scheduler not in ("local", "sequential") and not scheduler.endswith(".json") and "://" not in scheduler:
            raise ValueError(f"scheduler {scheduler!r} is not 'local', 'sequential', 'tcp://HOST:PORT' "
                             "or a scheduler .json file")
    return scheduler


def run_batch(
    task: str,
    inputs: PathLike | Sequence[PathLike],
    out_dir: PathLike,
    *,
    params: Mapping[str, Any] | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    retries: int = 2,
    progress: bool = True,
    allow_external_data: bool = False,
) -> BatchSummary:
    """Run one task over many inputs; see :mod:`reconstruct.app.batch` for the rules.

    Args:
        task: a spec's command (``"fit-image"``, ``"denoise"``, ``"sr"``, ``"misr"``, ``"ct"``,
            ``"occupancy"``, ``"pinn"``) or task name (``"ct_reconstruct"``).
        inputs: files, folders, glob patterns and CSV manifests (see
            :func:`~reconstruct.app.batch.items.collect_items`). ``pinn`` takes manifests of parameters
            (one row per item: ``beta``, ``nx``, ...), or nothing for one item from ``params``.
        out_dir: output folder (created); must not be an input or inside an input folder.
        params: the run's parameters by name: the fit settings (``model``, ``model_kwargs``, ``steps``,
            ``lr``, ``lr_decay``, ``device``, ``seed``, ``time_budget_s``), the task's batch parameters
            (e.g. CT ``layout``, ``output_size``, ``filter_name``, ``tv_weight``, ``data_filter``,
            ``circle``), the runner's options (occupancy ``resolution``, ``padding``) and the defaults of
            per-item data inputs (CT ``angles``, MISR ``shifts``/``rotations``); see
            :func:`~reconstruct.app.batch.params.batch_params`. Missing names take the task's defaults.
        scheduler: None or ``"local"`` (an embedded LocalCluster for this run), ``"sequential"`` (a
            plain loop here), ``"tcp://HOST:PORT"``, a scheduler JSON file, or a ``distributed.Client``.
        n_workers: worker processes of the embedded cluster (default: one per GPU, else one per core,
            at most one per 2 GB of memory and one per item).
        retries: times an item is re-run after its worker is lost or the task raises.
        progress: show a tqdm progress bar over the items (on stderr).
        allow_external_data: read MetaImage/NRRD headers whose data file lies outside the header's
            folder (refused by default: a header can name any file; see
            :func:`reconstruct.app.images.check_data_inside`).

    Returns:
        A :class:`BatchSummary`; ``summary.exit_code`` is the number of failed items capped at 125.

    Note:
        The embedded cluster starts worker processes by spawning: in a script, call ``run_batch`` under
        ``if __name__ == "__main__":`` (as for any ``multiprocessing`` or Dask program).

    Raises:
        ValueError / FileNotFoundError / TypeError: bad task, parameters, inputs or output folder, an
            output that would replace an input, an output folder that cannot be written (nothing has
            run, nothing was written).
        SchedulerError: the scheduler cannot be reached or is not a Dask scheduler (an ``OSError``).
        BatchInterrupted: a ``KeyboardInterrupt`` (Ctrl-C; ``nestnet batch`` turns SIGTERM into one),
            raised after the summary was written; ``exc.summary`` says which items finished (read back
            from their records, so an item that finished while the run stopped is not ``"pending"``).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    spec = batch_spec(task)
    run = check_run_params(spec, params)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    if n_workers is not None:
        n_workers = Param("n_workers", int, None, "worker processes", low=1).check(n_workers)
    scheduler = _check_scheduler(scheduler)
    out = Path(out_dir).expanduser().resolve()
    entries = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs or ())
    explicit = [e for e in entries if not any(c in _GLOB_CHARS for c in os.fspath(e)) and Path(e).expanduser().exists()]
    check_output_path(out, explicit, want_file=False)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if entries or spec.inputs:
        items = collect_items(entries, exclude=out, task=spec)
    else:  # a task without input files and no manifest: one item from the run's parameters
        positional = {p.name: run.get(p.name, p.default) for p in spec.params if p.positional}
        items = [BatchItem("", param_stem({k: f"{v:g}" if isinstance(v, float) else v for k, v in positional.items()},
                                          spec, 0))]
    jobs: list[Job] = []
    for item in items:
        output = out / f"{item.name}{output_suffix(spec, item.path)}"
        job = {**asdict(item), "output": str(output), "record": str(out / f"{item.name}.json"),
               "allow_external_data": bool(allow_external_data)}
        jobs.append((job, param_hash(spec.command, run, item)))
    _check_outputs(spec, entries, items, run, jobs, out)

    results: dict[str, ItemResult] = {}
    todo: list[Job] = []
    for job, phash in jobs:
        earlier = done_before(job["output"], job["record"], phash)
        if earlier is None:
            todo.append((job, phash))
        else:
            results[job["name"]] = ItemResult(job["name"], job["path"], "skipped", job["output"], job["record"],
                                              None, float(earlier.get("wall_seconds", 0.0)),
                                              dict(earlier.get("metrics") or {}), phash)
    mode = "sequential" if scheduler == "sequential" else _describe(scheduler)
    # the cluster (or the connection to one) before the output folder: a run that cannot start leaves nothing
    connection = open_client(scheduler, n_workers, retries, len(todo)) if todo and scheduler != "sequential" else None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except BaseException:
        if connection is not None:
            _close(connection)
        raise
    bar = tqdm(total=len(jobs), initial=len(results), unit="item", desc=f"nestnet batch {spec.command}",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, mininterval=bar_interval(sys.stderr))
    n_failed = 0

    def on_result(res: Mapping[str, Any]) -> None:
        nonlocal n_failed
        r = ItemResult.from_dict(res)
        results[r.name] = r
        if r.status == "failed":
            n_failed += 1
            bar.set_postfix(failed=n_failed)
        bar.update(1)

    since = time.time() - 1.0  # records written from here on are this run's (mtime resolution)
    workers_used: int | None = None
    interrupted: KeyboardInterrupt | None = None
    try:
        if connection is not None:
            workers_used = _run_dask(spec.command, todo, run, on_result, connection, retries)
        elif todo:
            _run_sequential(spec.command, todo, run, on_result)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM turned into one by nestnet batch
        interrupted = exc
    finally:
        bar.close()
        ordered = [results.get(job["name"]) or _settled(job, phash, since) for job, phash in jobs]
        for (job, _), res in zip(jobs, ordered):
            if res.status == "pending":
                _remove_stale_temps(job)
        summary_path = _write_summary(out / SUMMARY_NAME, ordered)
    summary = BatchSummary(spec.command, out, summary_path, ordered, time.perf_counter() - start, mode, workers_used)
    if interrupted is not None:
        raise BatchInterrupted(summary, getattr(interrupted, "signal", "SIGINT")) from None
    return summary


def _remove_stale_temps(job: Mapping[str, Any]) -> None:
    """The temporary files of an item whose worker was stopped mid-write (never its finished outputs).

    Atomic writes name them ``.<stem>.tmp-XXXX<suffixes>`` (a header pair: a folder ``.<name>.tmp-XXXX``)
    beside the target; they are removed only for items the run leaves pending.
    """
    for target in (Path(job["output"]), Path(job["record"])):
        suffix = "".join(target.suffixes)
        base = target.name[: len(target.name) - len(suffix)] if suffix else target.name
        stale = [*target.parent.glob(f".{base}.tmp-*{suffix}"), *target.parent.glob(f".{target.name}.tmp-*")]
        for path in stale:
            with contextlib.suppress(OSError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()


def _check_outputs(spec: Any, entries: Sequence[Any], items: Sequence[BatchItem], run: Mapping[str, Any],
                   jobs: Sequence[Job], out: Path) -> None:
    """Before anything runs: no output (result, data file, record, summary) is or replaces any input, and
    the output folder can be written (the temporary file the writes use is created there and removed)."""
    inputs: list[Path] = [Path(e).expanduser() for e in entries
                          if not any(c in _GLOB_CHARS for c in os.fspath(e)) and Path(e).expanduser().is_file()]
    for item in items:
        inputs += [Path(p) for p in (item.path, item.reference, *map(str, item.inputs.values())) if p]
    for inp in data_options(spec):  # the run's own data files (--angles FILE, --shifts FILE)
        value = run.get(inp.name)
        if isinstance(value, str) and Path(value).is_file():
            inputs.append(Path(value))
    inputs += [d for p in list(inputs) for d in data_files(p)]
    outputs = [out / SUMMARY_NAME]
    for job, _ in jobs:
        outputs += [Path(job["output"]), Path(job["record"]), *companion_files(Path(job["output"]))]
    check_outputs_apart(outputs, inputs)
    check_writable(out / SUMMARY_NAME)
