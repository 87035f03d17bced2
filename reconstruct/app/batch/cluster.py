"""The Dask side of a batch run: the embedded cluster (loopback only, no HTTP), or a client of an existing one.

The embedded :class:`distributed.LocalCluster` serves nothing beyond what the run needs. In this
version of Dask, ``dashboard_address=None`` does not mean "no HTTP server": the scheduler still starts
one on port 8787 (health, Prometheus metrics, info pages, a proxy to the workers; warning on every
run when the port is taken), and every worker one on a random port. So the cluster is started on
127.0.0.1 with no HTTP routes at all (``distributed.{scheduler,worker}.http.routes = []``), its HTTP
servers on a random loopback port (never 8787, so never a warning), and once it runs those servers
are stopped: nothing listens but the scheduler's and workers' own comms, on 127.0.0.1.

Worker processes ignore SIGINT: Ctrl-C in a terminal signals the whole process group, and the driver
(not each worker, with its own traceback) handles it. They are spawned while SIGINT is ignored (an
ignored signal stays ignored across ``exec``), and a worker the nanny restarts later ignores it from
its preload (:mod:`reconstruct.app.batch.preload`) on.

An external scheduler (``tcp://HOST:PORT``, a scheduler file) that cannot be reached, or a service
at that address that is not a Dask scheduler, ends the run before it starts with one line
(:class:`SchedulerError`, exit status 126).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..files import one_line

__all__ = ["SchedulerError", "open_client", "default_workers", "QUIET_HTTP"]

_PRELOAD = "reconstruct.app.batch.preload"  # worker processes ignore SIGINT

#: Dask configuration of the embedded cluster: no HTTP routes on the scheduler or the workers.
QUIET_HTTP: dict[str, Any] = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}


class SchedulerError(OSError):
    """The Dask scheduler cannot be reached, or what answers at its address is not a Dask scheduler."""


def default_workers(n_pending: int) -> int:
    """Worker processes of the embedded cluster: one per GPU, else one per core, at most one per 2 GB."""
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


def _spawned_workers() -> int:
    """Worker processes of this process that have started (exec'd) their own interpreter."""
    import psutil

    count = 0
    for child in psutil.Process().children():
        try:
            count += "--multiprocessing-fork" in child.cmdline()
        except psutil.Error:
            continue
    return count


@contextlib.contextmanager
def _children_ignore_sigint(n_workers: int, timeout: float = 60.0) -> Iterator[None]:
    """SIGINT ignored while the worker processes are spawned, restored as soon as they exist.

    An ignored signal stays ignored across ``exec``, and Python then installs no KeyboardInterrupt
    handler: the workers ignore Ctrl-C for their whole life, their imports included. The driver ignores
    it only for the moment the processes take to appear (milliseconds), not while they start up.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
        before, deadline = time.monotonic(), time.monotonic() + timeout
        while _spawned_workers() < n_workers and time.monotonic() < deadline:
            time.sleep(0.005 if time.monotonic() - before < 1 else 0.05)
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_http(client: Any) -> None:
    """Stop the (route-less) HTTP servers of the embedded scheduler and workers: nothing is served."""
    def stop(dask_scheduler: Any = None, dask_worker: Any = None) -> None:
        server = getattr(dask_scheduler or dask_worker, "http_server", None)
        if server is not None:
            server.stop()

    with contextlib.suppress(Exception):  # best effort: a server that stays up serves only 404s on 127.0.0.1
        client.run_on_scheduler(stop)
        client.run(stop)


def _local_cluster(n_workers: int, retries: int) -> tuple[Any, Any]:
    import dask
    from distributed import Client, LocalCluster

    # the embedded scheduler and the nannies live in this process, so this config reaches them
    config: dict[str, Any] = {"distributed.scheduler.allowed-failures": int(retries), **QUIET_HTTP,
                              "distributed.worker.preload": [_PRELOAD]}
    preload = _tcmalloc_preload()
    if preload:  # the allocator must be chosen before a worker process starts
        config["distributed.nanny.pre-spawn-environ.LD_PRELOAD"] = preload
    with dask.config.set(config):
        cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                               silence_logs=40)
        try:
            with _children_ignore_sigint(n_workers):
                cluster.scale(n_workers)  # spawned on the cluster's event loop, while SIGINT is ignored
            client = Client(cluster)
            client.wait_for_workers(n_workers, timeout=120)
        except BaseException:
            with contextlib.suppress(Exception):
                cluster.close()
            raise
    _stop_http(client)
    return client, cluster


def _connect(scheduler: str) -> Any:
    from distributed import Client

    try:
        if scheduler.endswith(".json"):
            return Client(scheduler_file=scheduler, timeout="30s")
        return Client(scheduler, timeout="30s")
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:  # the first bytes read as a message length: whatever answered speaks another protocol
        reason = "what answers there is not a Dask scheduler (its reply is no Dask message)"
    except Exception as exc:  # OSError, TimeoutError, CommClosedError, a bad scheduler file ...
        reason = one_line(str(exc), limit=200, keep="first", fallback=type(exc).__name__)
    raise SchedulerError(f"cannot connect to the Dask scheduler {scheduler}: {reason}; check the address and that "
                         "a Dask scheduler runs there") from None


def open_client(scheduler: Any, n_workers: int | None, retries: int, n_jobs: int
                ) -> tuple[Any, Any, bool, int | None, int | None]:
    """``(client, cluster or None, whether the client is ours, torch threads per worker, workers)`` of a run."""
    from distributed import Client

    if scheduler is None or scheduler == "local":
        n_workers = n_workers or default_workers(n_jobs)
        torch_threads = max(1, (os.cpu_count() or 1) // n_workers)
        client, cluster = _local_cluster(n_workers, retries)
        return client, cluster, True, torch_threads, n_workers
    if isinstance(scheduler, Client):
        return scheduler, None, False, None, n_workers
    return _connect(str(scheduler)), None, True, None, n_workers
