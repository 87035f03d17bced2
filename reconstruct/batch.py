"""Batch runs over many items: ``nestnet batch <task>`` and :func:`run_batch`, on Dask.

Kept for the public API (``configs/inference.json``, the README, the benchmarks and user scripts import
these names from here). The code lives in the application floor, :mod:`reconstruct.app.batch` (its
docstring states the rules: resumable, faults isolated, Dask, GPUs, allocator, exit codes);
:func:`parse_angles` in :mod:`reconstruct.app.angles`.

This is an application module: the science modules of :mod:`reconstruct` never import it.

Example::

    from reconstruct.batch import run_batch

    summary = run_batch("ct", ["sinograms/"], "recon/", params={"steps": 300, "angles": "0:180:100"})
    print(summary.n_ok, summary.n_failed, summary.summary_csv)
"""

from __future__ import annotations

from .app.batch import *  # noqa: F403 - the public names, listed once in reconstruct.app.batch
from .app.batch import __all__  # noqa: F401
