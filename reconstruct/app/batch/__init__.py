"""Batch runs over many items: ``nestnet batch <task>`` and :func:`run_batch`, on Dask, for every task.

Every item is one input file (an image, a volume, a sinogram, a stack of frames, or for ``occupancy``
a mesh; for ``pinn`` one manifest row of parameters). It is read, handed to its task
(:data:`reconstruct.tasks.TASKS`) and written back next to a JSON record::

    OUT/<name><suffix>   the result, in the input's format, with its spacing/origin/direction
    OUT/<name>.json      the record: status, reason, metrics, seconds, every parameter used, versions, input
    OUT/summary.csv      one row per item for the whole run (rewritten atomically at the end)

The options of each task come from its spec (:mod:`reconstruct.app.batch.params`); a manifest may give
any of them per item, with the item's own data inputs (CT angles, MISR shifts/rotations) and a ground
truth (``reference``) for the task's metrics. The output's geometry follows the task's ``output_grid``
(:mod:`reconstruct.app.geometry`): a CT result's pixels are as wide as the sinogram's detector
bins; a super-resolved result covers the input's area on a ``scale``-times finer grid. The record is
:func:`reconstruct.app.records.run_record` plus the batch fields.

Rules the runner keeps:

- **Resumable.** An item is skipped when its output exists and its record says ``"ok"`` with the same
  parameter hash (task, every value it runs with, the item's own options and the size/mtime of its
  input and of every file it names). The check runs in the driver (nothing is submitted) and again
  inside the task, so a retried item whose output already landed returns ``"skipped"`` instead of
  writing twice. Outputs and records are written atomically (temporary file + ``os.replace``): a killed
  worker never leaves a half file.
- **Faults isolated.** An unreadable or invalid item gets status ``"failed"`` and a one-line reason in
  its record and in the summary; the other items continue. ``nestnet batch`` exits with the number of
  failed items (capped at 125), 0 when all succeed, 126 when the run cannot start (bad arguments,
  inputs or scheduler), 130 when interrupted (Ctrl-C or SIGTERM: one line, and a summary read back from
  the records, so an item that finished while the run stopped is done, not pending).
- **Checked first.** No output (result, record, ``summary.csv``, a ``.mhd``'s data file) may be or replace
  an input (items, references, data files, manifests, the data files of ``.mhd``/``.nhdr`` headers); the
  output folder must be writable; a scheduler must answer. A run that cannot start writes nothing.
  Each item's memory is estimated before it allocates (:mod:`reconstruct.app.memory`), and a header
  whose data file lies outside its folder is refused unless ``allow_external_data``.
- **Dask.** By default a :class:`distributed.LocalCluster` (worker processes, one thread each, on
  127.0.0.1, serving no HTTP: :mod:`~reconstruct.app.batch.cluster`) is started for the run and closed
  after it; ``scheduler="tcp://HOST:PORT"`` (or a scheduler JSON file,
  or a :class:`distributed.Client`) sends the items to an existing cluster, whose workers must see the
  same file paths (shared file system) and have napari-nestnet installed; ``scheduler="sequential"``
  runs a plain loop in this process. Items are submitted with ``pure=False`` and unique keys; an item
  on a worker that dies is re-run elsewhere by the scheduler (up to
  ``distributed.scheduler.allowed-failures`` times; the embedded cluster sets it to ``retries``).
- **GPUs.** One GPU per worker. With ``device="auto"`` a worker whose CUDA runtime shows several
  GPUs uses ``cuda:<worker name mod GPU count>`` (the embedded cluster names its workers 0..n-1 and
  starts one worker per GPU); on an external cluster start one worker per GPU with
  ``CUDA_VISIBLE_DEVICES=<i> dask worker tcp://HOST:PORT --nthreads 1`` so each sees exactly one.
- **Allocator.** The embedded cluster starts its workers with tcmalloc preloaded when it is installed
  (``NESTNET_ALLOCATOR=system`` or ``glibc`` leaves it out); every worker calls
  :func:`reconstruct.app.runtime.tune_allocator` before an item. The record names the allocator used.

Modules: :mod:`~reconstruct.app.batch.items` (inputs and manifests), :mod:`~reconstruct.app.batch.params`
(parameters from the specs, the hash), :mod:`~reconstruct.app.geometry` (output grids, shared with the CLI and MONAI),
:mod:`~reconstruct.app.batch.worker` (one item), :mod:`~reconstruct.app.batch.runner` (the run, Dask),
:mod:`~reconstruct.app.batch.cli` (``nestnet batch``), :mod:`~reconstruct.app.batch.phantoms` (test data).
Names are loaded on first use, so importing a part pulls in no runner.

Example::

    from reconstruct.batch import run_batch

    summary = run_batch("ct", ["sinograms/"], "recon/", params={"steps": 300, "angles": "0:180:100"})
    print(summary.n_ok, summary.n_failed, summary.summary_csv)
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BATCH_TASKS",
    "BATCH_OPTIONS",
    "SUMMARY_NAME",
    "RECORD_VERSION",
    "BatchItem",
    "ItemResult",
    "BatchSummary",
    "BatchInterrupted",
    "SchedulerError",
    "parse_angles",
    "collect_items",
    "param_hash",
    "batch_params",
    "run_item",
    "run_batch",
    "add_batch_parser",
    "run_batch_command",
    "write_phantom_sinograms",
]

_WHERE = {
    "BATCH_TASKS": ".params", "BATCH_OPTIONS": ".params", "RECORD_VERSION": ".params", "param_hash": ".params",
    "batch_params": ".params", "SUMMARY_NAME": ".runner", "ItemResult": ".runner", "BatchSummary": ".runner",
    "run_batch": ".runner", "BatchInterrupted": ".runner", "SchedulerError": ".cluster",
    "BatchItem": ".items", "collect_items": ".items", "run_item": ".worker",
    "add_batch_parser": ".cli", "run_batch_command": ".cli", "write_phantom_sinograms": ".phantoms",
    "parse_angles": "..angles",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
