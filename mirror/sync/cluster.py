"""Open a Dask client: an existing scheduler, or an embedded LocalCluster. Kept thin."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import dask

from mirror.config import EMBEDDED_DASK_CONFIG, ClusterConfig
from mirror.errors import UsageError

log = logging.getLogger(__name__)

HTTP_RESOURCE = "tcia_http"


@dataclass(frozen=True, slots=True)
class ClusterHandle:
    client: Any  # distributed.Client (untyped library)
    kind: str
    workers: int
    threads: int
    use_resources: bool  # every worker advertises tcia_http, so tasks may ask for it

    def download_slots(self, per_worker: int) -> int:
        """How many series can download at once across the cluster."""
        if self.use_resources:
            return max(1, min(self.threads, self.workers * per_worker))
        return max(1, self.threads)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "threads": self.threads}

    def cpu_probe(self) -> HostCpu | None:
        """What the download window reads to see a CPU-bound run: this host's CPUs, which
        run an embedded cluster's workers; nothing for a cluster given by --scheduler."""
        return None if self.kind == "address" else HostCpu()


class HostCpu:
    """The busy fraction of this host's CPUs since the previous call (psutil, as distributed
    itself uses). Steal time counts as busy: a VM's host took that CPU from the run."""

    def __init__(self) -> None:
        import psutil

        self._times = psutil.cpu_times
        self._last = self._times()

    def __call__(self) -> float | None:
        now = self._times()
        total = sum(now) - sum(self._last)
        idle = _idle(now) - _idle(self._last)
        self._last = now
        return None if total <= 0 else max(0.0, min(1.0, 1.0 - idle / total))


def _idle(times: Any) -> float:
    return float(times.idle + getattr(times, "iowait", 0.0))


@contextmanager
def open_cluster(config: ClusterConfig, preload: tuple[str, ...] = ()) -> Iterator[ClusterHandle]:
    """``preload``: modules an embedded cluster's workers import as they start, so the first
    task does not pay for them (a cluster given by --scheduler brings its own workers)."""
    from distributed import Client

    if config.scheduler:
        try:
            client = Client(config.scheduler, timeout="30s")  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise UsageError(f"cannot reach Dask scheduler {config.scheduler}: {exc}") from exc
        with closing(client):
            yield _handle(client, config.kind)
        return
    processes = config.workers > 0
    settings = dict(EMBEDDED_DASK_CONFIG)
    if processes and start_worker_server(preload):
        _skip_distributed_preload()
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
    with dask.config.set(settings):
        cluster = _local_cluster(config, processes, preload)
    # closing(), not the Client's own ``with``: that sets a context variable which must be
    # reset in the same context, and EarlyCluster opens on one thread and closes on another.
    with cluster, closing(Client(cluster)) as client:  # type: ignore[no-untyped-call]
        yield _handle(client, config.kind)


def start_worker_server(preload: tuple[str, ...]) -> bool:
    """Start (once per process) the fork server embedded workers are forked from, with
    distributed and ``preload`` imported in it; False where the platform has none.

    A spawned worker starts an interpreter and imports distributed and the task code (about
    0.5 s of CPU each) only once the scheduler is up; a worker forked from this server starts
    in milliseconds, and the server does its imports on another core while the driver lists.
    Forking the server is safe where forking the driver (which runs threads) is not: it is a
    fresh single-threaded interpreter (the default start method from Python 3.14 on).
    """
    import multiprocessing
    from multiprocessing import forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    # The preload only reaches a server started after it: the first run's list stays (a
    # later run's modules are then imported by each worker as it starts, as with spawn).
    multiprocessing.get_context("forkserver").set_forkserver_preload(["distributed", *preload])
    try:
        forkserver.ensure_running()
    except OSError as exc:  # no Unix socket or no process to spare: spawn, as before
        log.warning("cannot start the worker fork server (%s); spawning workers instead", exc)
        return False
    return True


def _skip_distributed_preload() -> None:
    # The first time distributed sees "forkserver" it imports numpy, pandas and lz4 here, in
    # the driver, to try them for its own preload list (0.4 s before any worker starts), and
    # sets that list, which a server already running ignores. The flag is its "done that".
    import distributed.utils

    if hasattr(distributed.utils, "_forkserver_preload_set"):
        distributed.utils._forkserver_preload_set = True


def _local_cluster(config: ClusterConfig, processes: bool, preload: tuple[str, ...]) -> Any:
    from distributed import LocalCluster

    # A worker forked from the fork server starts with the server's environment, from when
    # it started; each nanny hands its worker the driver's environment of now instead, as a
    # spawned worker would have inherited it (credentials set between two library calls).
    more: dict[str, Any] = {"env": dict(os.environ)} if processes else {}
    return LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=max(config.workers, 1),
        preload=[*preload, "mirror.sync.workerlog"] if processes else [],
        threads_per_worker=config.threads,
        processes=processes,
        resources={HTTP_RESOURCE: config.http_slots},
        dashboard_address=None,
        # The scheduler's HTTP endpoints (health, metrics) would still claim :8787.
        scheduler_kwargs={"dashboard_address": ":0"},
        silence_logs=logging.WARNING,
        **more,
    )


def _handle(client: Any, kind: str) -> ClusterHandle:
    workers = client.scheduler_info().get("workers", {})
    threads = sum(int(w.get("nthreads", 0)) for w in workers.values())
    with_resource = [w for w in workers.values() if HTTP_RESOURCE in (w.get("resources") or {})]
    use_resources = bool(workers) and len(with_resource) == len(workers)
    if workers and not use_resources:
        # A task asking for a resource no worker offers would wait forever.
        log.warning(
            "workers do not advertise the %s resource (start them with "
            "--resources %s=4); per-worker download caps are off",
            HTTP_RESOURCE,
            HTTP_RESOURCE,
        )
    return ClusterHandle(client, kind, len(workers), threads, use_resources)


class EarlyCluster:
    """The cluster opened on a thread while the driver lists and plans: starting worker
    processes and their imports takes 1-2 s, as long as listing a first mirror. ``handle``
    waits for it (and raises what opening raised); ``close`` shuts it down either way."""

    def __init__(self, config: ClusterConfig, preload: tuple[str, ...] = ()) -> None:
        if config.kind == "local-processes":
            start_worker_server(preload)  # now, on this thread: it imports while we list
        self._stack = ExitStack()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mirror-cluster-start")
        self._opening = self._pool.submit(self._stack.enter_context, open_cluster(config, preload))

    def handle(self) -> ClusterHandle:
        return self._opening.result()

    def close(self) -> None:
        # An opening error matters only to a run that needed the cluster, and that run
        # got it from handle(); a run with nothing to fetch just shuts down what started.
        with suppress(Exception):
            self._opening.result()
        try:
            self._stack.close()
        finally:
            self._pool.shutdown(wait=False)
