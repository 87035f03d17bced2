"""Process start-up tuning: the memory allocator (and how often progress bars redraw).

Why: glibc's malloc serves every large tensor with a fresh ``mmap`` and returns it on free, so each
CPU train step page-faults gigabytes anew.  Measured here (2-core CPU, torch 2.13, 65,536
coordinates): whole steps 1.4–2.6× faster for every model once that stops.  Two remedies:

* tcmalloc (Debian ``libtcmalloc-minimal4``) preloaded at process start — fast with normal memory
  use; :func:`reexec_with_tcmalloc` restarts a command-line process with it when it is installed;
* glibc's own switches (no mmap for large blocks, a huge trim threshold) set in-process by
  :func:`tune_allocator` — as fast, but the heap can fragment (naive NestNet at 512² grew to
  11.7 GB), so it is the fallback when tcmalloc is absent.

Set ``NESTNET_ALLOCATOR=system`` to leave the allocator alone (e.g. to measure the difference).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["tune_allocator", "reexec_with_tcmalloc", "tcmalloc_path", "allocator_in_use", "bar_interval"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_state: dict[str, str] = {}

_TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def tcmalloc_path() -> str | None:
    """Path of an installed tcmalloc shared library, or ``None``."""
    for candidate in _TCMALLOC_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    found = ctypes.util.find_library("tcmalloc_minimal")
    return found


def _tcmalloc_loaded() -> bool:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "tcmalloc" in os.environ.get("LD_PRELOAD", "")
    return "tcmalloc" in maps


def allocator_in_use() -> str:
    """``"tcmalloc"``, ``"glibc-tuned"``, or ``"system"``."""
    if _tcmalloc_loaded():
        return "tcmalloc"
    return _state.get("allocator", "system")


def tune_allocator() -> str:
    """Make large tensor allocations reuse memory; returns the allocator now in use.

    Does nothing under tcmalloc, off Linux/glibc, or with ``NESTNET_ALLOCATOR=system``.  Idempotent.
    """
    if _tcmalloc_loaded():
        return "tcmalloc"
    if os.environ.get("NESTNET_ALLOCATOR", "").lower() == "system" or not sys.platform.startswith("linux"):
        return "system"
    if "allocator" in _state:
        return _state["allocator"]
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        ok = False
    _state["allocator"] = "glibc-tuned" if ok else "system"
    return _state["allocator"]


def reexec_with_tcmalloc(argv: list[str] | None = None) -> None:
    """Restart this Python process with tcmalloc preloaded, when it is installed and not yet loaded.

    For command-line entry points only (call it first thing in ``main``).  Falls back silently;
    ``NESTNET_ALLOCATOR=system`` or ``=glibc`` disables it.
    """
    if os.environ.get("NESTNET_ALLOCATOR", "").lower() in ("system", "glibc") or _tcmalloc_loaded():
        return
    if os.environ.get("_NESTNET_REEXEC") == "1":  # already tried once: never loop
        return
    lib = tcmalloc_path()
    if lib is None or not sys.platform.startswith("linux"):
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = (lib + " " + env.get("LD_PRELOAD", "")).strip()
    env["_NESTNET_REEXEC"] = "1"
    args = [sys.executable] + (sys.orig_argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, args, env)
    except OSError:
        return


def bar_interval(stream: Any) -> float:
    """Seconds between a tqdm bar's redraws on ``stream``: 0.1 on a terminal, 30 in a log file or pipe.

    Why: a bar redrawn ten times a second writes a carriage-return update each time; in a log (``make
    demo > log``, a batch job's output) that was thousands of characters per fit.
    """
    isatty = getattr(stream, "isatty", None)
    return 0.1 if callable(isatty) and isatty() else 30.0
