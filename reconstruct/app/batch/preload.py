"""Dask worker preload of the embedded cluster: its worker processes ignore SIGINT.

Ctrl-C in a terminal signals the whole process group; the driver (``nestnet batch``) handles it, closes
the cluster and writes the summary, so the workers need no traceback of their own.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_setup(worker: Any) -> None:
    """Nothing more to set up (the module's import did it)."""
