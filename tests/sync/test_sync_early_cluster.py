"""The cluster starts while a first mirror lists (its worker processes take as long to start
as the listing), and is shut down whatever the plan turns out to be."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from synchelp import SyncFn, assert_mirror_equals_archive

from mirror.archive.sim import SimArchive
from mirror.config import Selection
from mirror.sync import cluster as cluster_mod
from mirror.sync.run import expects_downloads

HELD = {"Sim-Lung": date(2026, 1, 1), "Sim-Brain": None}


def test_a_first_mirror_or_a_manifest_expects_downloads() -> None:
    assert expects_downloads(Selection(), {})  # nothing held yet: everything is new
    assert expects_downloads(Selection(collections=("Sim-Colon",)), HELD)
    assert expects_downloads(Selection(collections=("Sim-Lung", "Sim-Colon")), HELD)
    assert expects_downloads(Selection(manifest_uids=("1.2.3",)), HELD)


def test_a_run_over_held_collections_does_not_start_workers_early() -> None:
    assert not expects_downloads(Selection(), HELD)  # the nightly over everything held
    assert not expects_downloads(Selection(collections=("Sim-Lung",)), HELD)
    assert not expects_downloads(Selection(collections=("Sim-Lung", "Sim-Brain")), HELD)


class Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        real = cluster_mod.EarlyCluster

        spy = self

        class Recording(real):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                spy.opened.append("early")
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(cluster_mod, "EarlyCluster", Recording)


def no_cluster_left() -> bool:
    from distributed import default_client

    starters = [t for t in threading.enumerate() if t.name.startswith("mirror-cluster-start")]
    try:
        default_client()
    except ValueError:
        return not [t for t in starters if t.is_alive()]
    return False


@pytest.mark.slow
def test_first_mirror_uses_the_early_cluster_and_a_no_op_shuts_it_down(
    run_sync: SyncFn, sim: SimArchive, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(monkeypatch)
    first = run_sync()
    assert first.exit_code == 0, first.error
    assert spy.opened == ["early"]
    assert first.cluster["threads"] > 0  # the early cluster did the downloads
    assert_mirror_equals_archive(dest, sim)
    assert no_cluster_left()

    held = sim.series_uids()[:2]
    again = run_sync(selection=Selection(manifest_uids=tuple(held)))
    assert again.exit_code == 0, again.error
    assert again.counts["unchanged"] == 2 and again.counts.get("downloaded", 0) == 0
    assert spy.opened == ["early", "early"]  # started for a manifest, closed unused
    assert no_cluster_left()

    nightly = run_sync()
    assert nightly.exit_code == 0 and spy.opened == ["early", "early"]


def test_a_first_mirror_of_a_named_collection_lists_it_without_asking_for_all_collections(
    run_sync: SyncFn, sim: SimArchive, archive_server: Any
) -> None:
    """One round trip less before the downloads start: the collection list is fetched only
    to explain an empty listing (an unknown name)."""
    archive_server.requests.clear()
    first = run_sync(selection=Selection(collections=("Sim-Lung",)), dry_run=True)
    assert first.exit_code == 0, first.error
    paths = [r.path.rsplit("/", 1)[-1] for r in archive_server.requests]
    assert "getSeries" in paths and "getCollectionValues" not in paths

    archive_server.requests.clear()
    unknown = run_sync(selection=Selection(collections=("Sim-Lungs",)), dry_run=True)
    assert unknown.exit_code == 2 and "did you mean Sim-Lung?" in unknown.error
    paths = [r.path.rsplit("/", 1)[-1] for r in archive_server.requests]
    assert paths.count("getCollectionValues") == 1


def test_the_cpu_probe_reads_this_host_for_an_embedded_cluster_only() -> None:
    from mirror.sync.cluster import ClusterHandle, HostCpu

    embedded = ClusterHandle(None, "local-processes", 2, 64, True).cpu_probe()
    assert isinstance(embedded, HostCpu)
    sum(i * i for i in range(200_000))  # some CPU between two reads
    busy = embedded()
    assert busy is None or 0.0 <= busy <= 1.0
    # The driver's host says nothing about the workers of a cluster given by --scheduler.
    assert ClusterHandle(None, "address", 4, 32, True).cpu_probe() is None


def _worker_view() -> tuple[int, bool, tuple[object, ...]]:
    import logging
    import os
    import sys

    import dask

    from mirror.config import EMBEDDED_DASK_CONFIG
    from mirror.sync.workerlog import ClosingHeartbeat

    settings = tuple(dask.config.get(key) for key in EMBEDDED_DASK_CONFIG)
    filters = logging.getLogger("distributed.worker").filters
    filtered = any(isinstance(f, ClosingHeartbeat) for f in filters)
    return os.getppid(), "mirror.sync.task" in sys.modules and filtered, settings


@pytest.mark.slow
def test_embedded_workers_are_forked_from_the_warm_server_with_the_quiet_settings() -> None:
    """Workers come from the fork server started as the run begins (distributed and the task
    code already imported there), not a fresh interpreter each, and still get the settings."""
    import os

    import psutil

    from mirror.config import EMBEDDED_DASK_CONFIG, ClusterConfig
    from mirror.sync.cluster import open_cluster

    with open_cluster(ClusterConfig(workers=2, threads=2), ("mirror.sync.task",)) as handle:
        views = handle.client.run(_worker_view)
    assert len(views) == 2
    parents = {parent for parent, _, _ in views.values()}
    assert os.getpid() not in parents and len(parents) == 1  # one server forked both
    server = psutil.Process(parents.pop())
    assert server.ppid() == os.getpid()
    assert "multiprocessing.forkserver" in " ".join(server.cmdline())
    assert all(preloaded for _, preloaded, _ in views.values())  # task code and log filter
    assert {settings for _, _, settings in views.values()} == {tuple(EMBEDDED_DASK_CONFIG.values())}


def _worker_env(name: str) -> str | None:
    import os

    return os.environ.get(name)


@pytest.mark.slow
def test_forked_workers_see_the_environment_of_now_not_of_the_server_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A spawned worker inherits the driver's environment as the cluster opens; a forked one
    would inherit the fork server's, from its start. Credentials or proxy settings a library
    caller sets between two syncs must still reach the workers."""
    from mirror.config import ClusterConfig
    from mirror.sync.cluster import open_cluster, start_worker_server

    assert start_worker_server(("mirror.sync.task",))  # running before the variable is set
    monkeypatch.setenv("MIRROR_TEST_SET_LATER", "after-the-server-started")
    with open_cluster(ClusterConfig(workers=1, threads=1), ("mirror.sync.task",)) as handle:
        seen = handle.client.run(_worker_env, "MIRROR_TEST_SET_LATER")
    assert list(seen.values()) == ["after-the-server-started"]


def test_a_fork_server_that_cannot_start_leaves_workers_spawned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from multiprocessing import forkserver

    from mirror.sync.cluster import start_worker_server

    def refuse() -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(forkserver, "ensure_running", refuse)
    assert start_worker_server(("mirror.sync.task",)) is False
