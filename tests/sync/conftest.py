"""Fixtures for sync tests: a threads-only config against the simulated archive."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import SimArchive, SimServer
from mirror.cli.compose import sync
from mirror.config import ClusterConfig, SyncConfig
from mirror.sync.report import RunSummary
from mirror.sync.task import FetchSettings

# Backoff inside the task never waits in tests (the archive client's waits are recorded).
NO_WAIT = FetchSettings(backoff_initial=0.0, backoff_max=0.0)
THREADS = ClusterConfig(workers=0, threads=4)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "mirror"


@pytest.fixture
def config(dest: Path, archive_server: SimServer) -> SyncConfig:
    return SyncConfig(dest=str(dest), archive_url=archive_server.base_url, cluster=THREADS)


from synchelp import SyncFn  # noqa: E402


@pytest.fixture
def run_sync(config: SyncConfig, archive: NbiaArchive, sim: SimArchive) -> SyncFn:
    """``run_sync(full=True, ...)``: one in-process sync on the sim's calendar."""

    def go(progress: Any = None, **overrides: Any) -> RunSummary:
        cfg = replace(config, **overrides)
        return sync(cfg, archive=archive, today=lambda: sim.today, progress=progress,
                    fetch_settings=NO_WAIT)

    return go
