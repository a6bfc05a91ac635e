"""Library entry points the CLI calls: ``sync``, ``status``, ``verify``, ``rebuild_ledger``.

Each takes frozen configuration, does the work, and returns a small report object; the CLI
turns that into text and an exit code. ``sync`` lives here and takes both ports ready made
(library callers wanting the defaults composed use :func:`mirror.cli.compose.sync`); the
read-back operations live in :mod:`mirror.sync.ops`; the demo (:mod:`mirror.sync.demo`) calls
``sync`` and so is not re-exported here (that made the two modules import each other).
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from types import FrameType
from typing import Any

from mirror.archive.port import Source
from mirror.config import SyncConfig
from mirror.errors import EXIT_LOCKED, StoreError
from mirror.storage.port import Store
from mirror.sync.lease import DestinationLease
from mirror.sync.ledger import Ledger
from mirror.sync.lock import RunLock
from mirror.sync.ops import (
    RebuildReport,
    StatusReport,
    VerifyReport,
    rebuild_ledger,
    status,
    verify,
)
from mirror.sync.report import RunSummary, write_metrics, write_summary
from mirror.sync.run import ProgressFn, RunContext, SyncRun

__all__ = [
    "RebuildReport",
    "StatusReport",
    "VerifyReport",
    "rebuild_ledger",
    "status",
    "sync",
    "verify",
]

log = logging.getLogger(__name__)


def new_run_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def sync(
    config: SyncConfig,
    *,
    archive: Source,
    store: Store,
    today: Callable[[], date] | None = None,
    progress: ProgressFn | None = None,
    fetch_settings: Any = None,
) -> RunSummary:
    """One sync run of ``archive`` into ``store`` under the state dir's lock and the
    destination's lease; the summary carries the exit code. The caller composes both ports
    (:mod:`mirror.cli.compose`): the engine opens no adapter.

    Raises only for problems before the run starts (LockHeld).
    """
    run_id = new_run_id()
    state_dir = config.ledger_path.parent
    lock = RunLock(state_dir, run_id, datetime.now(UTC).isoformat(timespec="seconds"))
    with (
        lock,
        _hold_lease(config, store, run_id) as lease,
        Ledger.open(config.ledger_path) as ledger,
        _stop_on_signals() as stopped,
    ):
        ctx = RunContext(
            config=config,
            archive=archive,
            store=store,
            ledger=ledger,
            run_id=run_id,
            today=(today or _utc_today)(),
            progress=progress,
            should_stop=lambda: stopped.is_set() or _lost(lease),
            fetch_settings=fetch_settings,
        )
        blocked = lease if isinstance(lease, StoreError) else None
        held = lease if isinstance(lease, DestinationLease) else None
        summary = _settle_lease(held, SyncRun(ctx).execute(blocked))
        _publish_reports(config, store, ledger, summary)
    return summary


@contextmanager
def _hold_lease(
    config: SyncConfig, store: Store, run_id: str
) -> Iterator[DestinationLease | StoreError | None]:
    """Hold the destination lease (not for a dry run, which writes nothing).

    LockHeld propagates (exit 75 before any work, like the state-dir lock); a destination
    that cannot even take the lease yields its StoreError, so the run is recorded as
    failing with exit 4 and a summary, as any other destination error.
    """
    if config.dry_run:
        yield None
        return
    lease = DestinationLease(store, run_id, duration=config.lease_seconds)
    try:
        lease.start()
    except StoreError as exc:  # LockHeld is no StoreError: it propagates
        yield exc
        return
    try:
        yield lease
    finally:
        lease.release()


def _lost(lease: DestinationLease | StoreError | None) -> bool:
    return isinstance(lease, DestinationLease) and lease.lost


def _settle_lease(lease: DestinationLease | None, summary: RunSummary) -> RunSummary:
    """Release before reporting: a lease taken over from this run turns it into exit 75."""
    if lease is None:
        return summary
    lease.release()
    if not lease.lost:
        return summary
    error = "the destination lease was taken over by another run (this one stalled); stopped"
    return replace(summary, exit_code=EXIT_LOCKED, error=error)


def _utc_today() -> date:
    return datetime.now(UTC).date()


def _publish_reports(config: SyncConfig, store: Store, ledger: Ledger, summary: RunSummary) -> None:
    if config.summary_json:
        write_summary(summary, config.summary_json)
    if config.metrics:
        write_metrics(config.metrics, summary, ledger.counts_by_state(), now=time.time())
    if config.dry_run:
        return
    try:
        store.put_bytes(f"_runs/{summary.run_id}.json", summary.to_json().encode())
    except StoreError as exc:  # the summary is a trace; the run's outcome stands
        log.warning("could not write _runs/%s.json: %s", summary.run_id, exc)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM: stop submitting, keep what finished, exit 130 (main thread only)."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stopped.is_set():  # a second signal: stop waiting for in-flight series
            raise KeyboardInterrupt
        log.warning(
            "%s received: finishing in-flight bookkeeping, then stopping",
            signal.Signals(signum).name,
        )
        stopped.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
