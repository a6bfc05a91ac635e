"""Frozen configuration, built once at the edge (CLI flags + environment) and passed down.

Environment variables (flags win):

``MIRROR_ARCHIVE_URL``       base URL of the NBIA API (default: TCIA's public v4 services)
``MIRROR_STATE_DIR``         where the ledger and the run lock live (local disk only)
``DASK_SCHEDULER_ADDRESS``   use this Dask scheduler instead of an embedded LocalCluster
``MIRROR_S3_ENDPOINT_URL``   S3-compatible endpoint for ``s3://`` destinations
``MIRROR_LEASE_SECONDS``     destination lease duration (default 120; renewed every third)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror.errors import UsageError
from mirror.guards import DEFAULT_MAX_DELETE, MaxDelete
from mirror.layout import DEFAULT_TEMPLATE, safe_component

DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_ARCHIVE_URL = "https://services.cancerimagingarchive.net/nbia-api/services/"
LEDGER_NAME = "ledger.sqlite"


# A sync starts with 16 series at once (tcia-utils runs 10 threads, the Data Retriever 8
# connections per host, and 20 are known to run cleanly against TCIA, nbia-api.md §9) and
# grows while throughput grows, backing off on 429/503/timeouts (mirror.sync.adaptive). The
# embedded workers therefore offer room to grow: 32 download threads each, 64 on the default
# 2 workers; --max-connections caps the growth, --threads/--downloads-per-worker the room.
INITIAL_DOWNLOADS = 16
DEFAULT_THREADS = 32
DEFAULT_HTTP_SLOTS = 32


# Settings for an embedded LocalCluster (a cluster given by --scheduler keeps its own).
# * The worker profiler samples every thread's stack 100 times a second: CPU the mirror
#   needs for hashing and header parsing, for a dashboard nobody reads here.
# * The event-loop tick (20 ms), the worker memory monitor (100 ms) and the system monitor
#   (500 ms) wake every scheduler, nanny and worker loop, each wake taking the GIL from the
#   task thread: 6-10 % of a core on an idle 2-worker cluster, 1 % at these intervals, and
#   index builds went from 1.77x to 1.85x from 1 to 2 workers (medians of 6 rounds, 2 cores).
#   Only the freshness of dashboard figures and of the "event loop was unresponsive"
#   warning depends on them.
EMBEDDED_DASK_CONFIG: dict[str, object] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where tasks run: an address, or an embedded LocalCluster (``workers=0``: threads only)."""

    scheduler: str | None = None
    workers: int = 2
    threads: int = DEFAULT_THREADS
    http_slots: int = DEFAULT_HTTP_SLOTS  # tcia_http per worker: concurrent downloads per process
    max_connections: int | None = None  # cluster-wide politeness cap (distributed.Semaphore)

    def __post_init__(self) -> None:
        if self.workers < 0 or self.threads < 1 or self.http_slots < 1:
            raise UsageError("--workers must be >= 0, --threads and http slots >= 1")
        if self.max_connections is not None and self.max_connections < 1:
            raise UsageError("--max-connections must be >= 1")

    @property
    def downloads_per_worker(self) -> int:
        """The most series one worker downloads at once (its threads, capped by tcia_http)."""
        return min(self.threads, self.http_slots)

    @property
    def kind(self) -> str:
        if self.scheduler:
            return "address"
        return "local-processes" if self.workers > 0 else "local-threads"


@dataclass(frozen=True, slots=True)
class Selection:
    """What a sync is about (empty = every mirrored collection, or all on a first run)."""

    collections: tuple[str, ...] = ()
    manifest_uids: tuple[str, ...] | None = None
    modalities: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()

    @property
    def filtered(self) -> bool:
        return bool(self.modalities or self.patients or self.manifest_uids is not None)


@dataclass(frozen=True, slots=True)
class SyncConfig:
    dest: str
    archive_url: str = DEFAULT_ARCHIVE_URL
    selection: Selection = field(default_factory=Selection)
    full: bool = False
    dry_run: bool = False
    delete: bool = False
    max_delete: MaxDelete = DEFAULT_MAX_DELETE
    allow_empty: tuple[str, ...] = ()  # collections confirmed emptied upstream (--allow-empty)
    state_dir: str | None = None
    layout: str = DEFAULT_TEMPLATE
    summary_json: str | None = None
    metrics: str | None = None
    changed_files: str | None = None  # one series folder per line: committed or withdrawn
    scratch_dir: str | None = None  # where workers stream series ZIPs (default: $TMPDIR)
    overlap_days: int = 3
    retry_pass: bool = True
    drain_seconds: float = 120.0  # on a stop or fatal error: wait this long for running series
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    store_options: Mapping[str, Any] = field(default_factory=dict)
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # the destination lease (mirror.sync.lease)

    def __post_init__(self) -> None:
        if not self.lease_seconds > 0:
            raise UsageError("the lease duration (MIRROR_LEASE_SECONDS) must be > 0 seconds")

    @property
    def mode(self) -> str:
        return "dry-run" if self.dry_run else ("full" if self.full else "sync")

    @property
    def ledger_path(self) -> Path:
        return resolve_state_dir(self.dest, self.state_dir) / LEDGER_NAME


def is_local_dest(dest: str) -> bool:
    return "://" not in dest or dest.startswith("file://")


def local_dest_path(dest: str) -> Path:
    return Path(dest.removeprefix("file://")).expanduser()


def resolve_state_dir(
    dest: str, state_dir: str | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``--state-dir`` > ``MIRROR_STATE_DIR`` > ``<dest>/_state`` (local) > per-user folder."""
    environ = os.environ if env is None else env
    chosen = state_dir or environ.get("MIRROR_STATE_DIR")
    if chosen:
        return Path(chosen).expanduser()
    if is_local_dest(dest):
        return local_dest_path(dest) / "_state"
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    digest = hashlib.sha1(dest.encode()).hexdigest()[:10]
    return Path(base) / "tcia-mirror" / f"{safe_component(dest)[:60]}-{digest}"


def store_options_from_env(dest: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if env is None else env
    endpoint = environ.get("MIRROR_S3_ENDPOINT_URL")
    if dest.startswith("s3://") and endpoint:
        return {"endpoint_url": endpoint}
    return {}


def lease_seconds_from_env(env: Mapping[str, str] | None = None) -> float:
    environ = os.environ if env is None else env
    raw = environ.get("MIRROR_LEASE_SECONDS", "")
    try:
        return float(raw) if raw else DEFAULT_LEASE_SECONDS
    except ValueError:
        msg = f"MIRROR_LEASE_SECONDS must be a number of seconds (got {raw!r})"
        raise UsageError(msg) from None


def archive_url_from_env(url: str | None, env: Mapping[str, str] | None = None) -> str:
    environ = os.environ if env is None else env
    return url or environ.get("MIRROR_ARCHIVE_URL") or DEFAULT_ARCHIVE_URL


def scheduler_from_env(address: str | None, env: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if env is None else env
    return address or environ.get("DASK_SCHEDULER_ADDRESS") or None
