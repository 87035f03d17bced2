"""The batch run: resume checks in the driver, then the items on Dask (or a plain loop), then the summary.

See :mod:`reconstruct.app.batch` for the rules (resumable, faults isolated, Dask, GPUs, allocator).
"""

from __future__ import annotations

import csv
import io as _stdio
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...tasks.spec import Param
from ..files import PathLike, atomic_write_text, check_output_path
from .items import BatchItem, collect_items, output_suffix, param_stem
from .params import batch_spec, check_run_params, param_hash
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


def _default_workers(n_pending: int) -> int:
    import torch

    if torch.cuda.is_available():
        return max(1, min(torch.cuda.device_count(), n_pending))
    cores = os.cpu_count() or 1
    try:  # each worker holds torch plus a fit: keep about 2 GB per worker
        import psutil

        cores = min(cores, max(1, int(psutil.virtual_memory().total // (2 << 30))))
    except ImportError:
        pass
    return max(1, min(cores, n_pending))


def _tcmalloc_preload() -> str | None:
    """``LD_PRELOAD`` value that starts the embedded workers with tcmalloc (see :mod:`reconstruct.app.runtime`)."""
    if os.environ.get("NESTNET_ALLOCATOR", "").lower() in ("system", "glibc"):
        return None
    from ..runtime import tcmalloc_path

    lib = tcmalloc_path()
    if lib is None or not sys.platform.startswith("linux"):
        return None
    return (lib + " " + os.environ.get("LD_PRELOAD", "")).strip()


def _describe(scheduler: Any) -> str:
    if scheduler is None:
        return "local"
    if isinstance(scheduler, str):
        return scheduler
    return f"client:{getattr(scheduler, 'scheduler', None) and scheduler.scheduler.address}"


def _run_sequential(task: str, jobs: list[Job], params: Mapping[str, Any], on_result: Callable) -> None:
    for job, phash in jobs:
        on_result(run_item(task, job, params, phash))


def _run_dask(task: str, jobs: list[Job], params: Mapping[str, Any], on_result: Callable, scheduler: Any,
              n_workers: int | None, retries: int) -> int | None:
    import dask
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    own_client = True
    torch_threads = None
    if scheduler is None or scheduler == "local":
        n_workers = n_workers or _default_workers(len(jobs))
        torch_threads = max(1, (os.cpu_count() or 1) // n_workers)
        # the embedded scheduler and the nannies live in this process, so this config reaches them
        config: dict[str, Any] = {"distributed.scheduler.allowed-failures": int(retries)}
        preload = _tcmalloc_preload()
        if preload:  # the allocator must be chosen before a worker process starts
            config["distributed.nanny.pre-spawn-environ.LD_PRELOAD"] = preload
        with dask.config.set(config):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
    elif isinstance(scheduler, Client):
        client, own_client = scheduler, False
    elif isinstance(scheduler, str) and scheduler.endswith(".json"):
        client = Client(scheduler_file=scheduler, timeout="30s")
    else:
        client = Client(scheduler, timeout="30s")
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
        for fut in futures:
            fut.cancel()
        raise
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    return n_workers


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

    Returns:
        A :class:`BatchSummary`; ``summary.exit_code`` is the number of failed items capped at 125.

    Note:
        The embedded cluster starts worker processes by spawning: in a script, call ``run_batch`` under
        ``if __name__ == "__main__":`` (as for any ``multiprocessing`` or Dask program).

    Raises:
        ValueError / FileNotFoundError / TypeError: bad task, parameters, inputs or output folder
            (nothing has run).
        KeyboardInterrupt: after writing the summary so far (unfinished items are ``"pending"``).
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
    read_paths = {Path(p) for i in items for p in (i.path, i.reference, *map(str, i.inputs.values())) if p}
    jobs: list[Job] = []
    for item in items:
        output = out / f"{item.name}{output_suffix(spec, item.path)}"
        if output in read_paths:
            raise ValueError(f"output {output} would overwrite an input; choose another --out")
        job = {**asdict(item), "output": str(output), "record": str(out / f"{item.name}.json")}
        jobs.append((job, param_hash(spec.command, run, item)))
    out.mkdir(parents=True, exist_ok=True)

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
    bar = tqdm(total=len(jobs), initial=len(results), unit="item", desc=f"nestnet batch {spec.command}",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    n_failed = 0

    def on_result(res: Mapping[str, Any]) -> None:
        nonlocal n_failed
        r = ItemResult.from_dict(res)
        results[r.name] = r
        if r.status == "failed":
            n_failed += 1
            bar.set_postfix(failed=n_failed)
        bar.update(1)

    mode = "sequential" if scheduler == "sequential" else _describe(scheduler)
    workers_used: int | None = None
    try:
        if todo:
            if scheduler == "sequential":
                _run_sequential(spec.command, todo, run, on_result)
            else:
                workers_used = _run_dask(spec.command, todo, run, on_result, scheduler, n_workers, retries)
    finally:
        bar.close()
        ordered = []
        for job, phash in jobs:
            ordered.append(results.get(job["name"]) or ItemResult(
                job["name"], job["path"], "pending", None, None, "interrupted before it finished", 0.0, {}, phash))
        summary_path = _write_summary(out / SUMMARY_NAME, ordered)
    return BatchSummary(spec.command, out, summary_path, ordered, time.perf_counter() - start, mode, workers_used)
