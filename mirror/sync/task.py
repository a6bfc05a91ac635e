"""The per-series unit of work: fetch → verify → commit, idempotent and picklable.

``sync_series`` is what the engine maps over a Dask cluster. It never touches the ledger;
it returns a small :class:`SeriesResult`. Archive and integrity failures of one series
become ``outcome="failed"`` (after in-task retries with backoff for retryable ones);
destination failures (:class:`~mirror.errors.StoreError`) propagate, since no other
series can succeed either.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mirror.archive.port import FetchLimits, FetchMeter, SeriesRecord, Source, StagedSeries
from mirror.errors import (
    ArchiveUnavailable,
    IntegrityError,
    MirrorError,
    ObjectNotFound,
    RateLimited,
    StoreError,
    UsageError,
)
from mirror.layout import RESERVED_PREFIXES, SeriesSidecar, check_uid, content_hash
from mirror.storage.keys import check_key
from mirror.storage.oserrors import store_errors
from mirror.storage.port import Store
from mirror.sync import commit
from mirror.sync.audit import iter_sidecars, read_sidecar, verify_series

__all__ = [
    "FetchSettings",
    "SeriesResult",
    "SeriesTask",
    "iter_sidecars",
    "read_sidecar",
    "sync_batch",
    "sync_series",
    "verify_series",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FetchSettings:
    scratch_dir: str | None = None  # where series are extracted for non-local stores
    max_attempts: int = 4  # whole-series download attempts for retryable errors
    backoff_initial: float = 1.0  # seconds, exponential with jitter
    backoff_max: float = 60.0  # also caps an upstream Retry-After
    max_series_bytes: int = 256 * 2**30  # refuse absurd streams (hostile sizes)
    max_entry_bytes: int = 8 * 2**30


@dataclass(frozen=True, slots=True)
class SeriesTask:
    record: SeriesRecord  # from the listing (ImageCount, FileSize, fingerprint…)
    path: str  # relative series folder (layout.series_path(...))
    series_version: int  # 1 for new; previous+1 when content changes
    run_id: str
    previous: SeriesSidecar | None = None  # what the ledger believes is committed at `path`


@dataclass(frozen=True, slots=True)
class SeriesResult:
    series_uid: str
    outcome: str  # "committed" | "unchanged" | "failed"
    sidecar: SeriesSidecar | None  # the committed sidecar ("committed"/"unchanged")
    bytes_downloaded: int
    attempts: int
    seconds: float
    error_class: str = ""  # e.g. "ChecksumMismatch", "AccessDenied"
    message: str = ""
    retryable: bool = False
    pushback: int = 0  # attempts the archive refused or dropped (429/503/timeouts)
    retry_after: float = 0.0  # the longest Retry-After it sent (the engine backs off as long)
    # It gave up on an explicit 429 (or 503 with Retry-After): the archive is up and asked
    # for fewer downloads, so the engine queues the series again under its halved window.
    refused: bool = False


@dataclass(slots=True)
class _Meter:
    bytes: int = 0
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)
    pushback: int = 0
    retry_after: float = 0.0

    def note(self, exc: MirrorError) -> None:
        """Count push-back: the engine's concurrency controller backs off on it."""
        if isinstance(exc, ArchiveUnavailable):
            self.pushback += 1
        if isinstance(exc, RateLimited) and exc.retry_after:
            self.retry_after = max(self.retry_after, exc.retry_after)


def sync_series(
    task: SeriesTask,
    archive: Source,
    store: Store,
    settings: FetchSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> SeriesResult:
    """Fetch, verify and commit one series; see the module docstring for failure rules."""
    check_uid(task.record.series_uid)
    if check_key(task.path).split("/", 1)[0] in RESERVED_PREFIXES:
        raise UsageError(f"series path {task.path!r} lies in a reserved folder")
    commit.check_run_id(task.run_id)
    meter = _Meter()
    rng = random.Random(task.record.series_uid)  # deterministic jitter per series
    while True:
        meter.attempts += 1
        try:
            outcome, sidecar = _attempt(task, archive, store, settings, meter)
            return _result(task, meter, outcome, sidecar)
        except StoreError:
            raise
        except MirrorError as exc:
            meter.note(exc)
            if not exc.retryable or meter.attempts >= settings.max_attempts:
                log.warning("series %s failed: %s", task.record.series_uid, exc)
                return _failed(task, meter, exc)
            delay = backoff_delay(meter.attempts, exc, settings, rng)
            log.info("series %s: %s; retry in %.1fs", task.record.series_uid, exc, delay)
            sleep(delay)


def sync_batch(
    tasks: Sequence[SeriesTask], archive: Source, store: Store, settings: FetchSettings
) -> list[SeriesResult]:
    """Several (tiny) series in one Dask task, to amortise per-task scheduler overhead."""
    return [sync_series(task, archive, store, settings) for task in tasks]


def backoff_delay(
    attempt: int, exc: MirrorError, settings: FetchSettings, rng: random.Random
) -> float:
    """Exponential backoff with jitter (0.5 to 1 times); an upstream Retry-After wins if longer."""
    base = min(settings.backoff_max, settings.backoff_initial * 2 ** (attempt - 1))
    delay = base * (0.5 + rng.random() / 2)
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after > delay:
        return min(float(retry_after), settings.backoff_max)
    return float(delay)


# --- one attempt -------------------------------------------------------------------------


def _attempt(
    task: SeriesTask, archive: Source, store: Store, settings: FetchSettings, meter: _Meter
) -> tuple[str, SeriesSidecar]:
    held = _held_as_listed(task, archive, store)
    if held is not None:
        return "unchanged", held
    staging = store.staging(
        task.run_id, task.record.series_uid, scratch_dir=settings.scratch_dir
    )
    with staging as staged_dir:
        staged = _fetch_verified(task, archive, settings, staged_dir, meter)
        return _publish(task, store, staged)


def _held_as_listed(task: SeriesTask, archive: Source, store: Store) -> SeriesSidecar | None:
    """The held copy, refreshed, when the source's listed MD5s equal its instances' MD5s
    and it re-hashes clean: a new version token (IDC revision, or a change of source) with
    the same digests is not fetched again. None: fetch as usual."""
    if task.series_version <= 1 and task.previous is None:
        return None  # nothing held: the fetch lists the series anyway
    listed = archive.listed_md5s(task.record)
    if listed is None:
        return None
    current = _current_sidecar(task, store)
    if current is None:
        return None
    if sorted(listed) != sorted(i.md5 for i in current.instances):
        return None
    if verify_series(store, current, deep=True):
        return None  # damaged: fetch and publish a fresh copy
    updated = commit.refreshed(current, task.record)
    if updated != current:
        store.put_bytes(commit.sidecar_key(task.path), updated.to_json())
    log.info("series %s: listed digests match the held copy; not fetched", task.record.series_uid)
    return updated


def _fetch_verified(
    task: SeriesTask, archive: Source, settings: FetchSettings, dest: str, meter: _Meter
) -> StagedSeries:
    uid = task.record.series_uid
    limits = FetchLimits(settings.max_series_bytes, settings.max_entry_bytes)
    fetched = FetchMeter()
    try:
        with store_errors(f"stage series {uid} in {dest}", missing_ok=True):
            return archive.fetch_series(task.record, dest, limits, fetched)
    finally:
        meter.bytes += fetched.received


def _publish(task: SeriesTask, store: Store, staged: StagedSeries) -> tuple[str, SeriesSidecar]:
    current = _current_sidecar(task, store)
    same = current is not None and current.content_hash == content_hash(staged.instances)
    if current is not None and same:
        # "Unchanged" is a claim about the files readers see, not about the sidecar: the
        # fresh copy is verified already, so re-hash the held one (sizes, stored MD5s,
        # bytes, stray files) and publish the fresh copy over any damage.
        damage = verify_series(store, current, deep=True)
        if not damage:
            updated = commit.refreshed(current, task.record, staged.md5_hierarchy)
            if updated != current:
                store.put_bytes(commit.sidecar_key(task.path), updated.to_json())
            return "unchanged", updated
        log.warning(
            "series %s: held copy is damaged (%s); publishing the fresh download",
            task.record.series_uid,
            "; ".join(damage[:3]),
        )
    sidecar = commit.build_sidecar(
        task.record,
        task.path,
        staged.instances,
        series_version=current.series_version if current and same else task.series_version,
        run_id=task.run_id,
        md5_hierarchy=staged.md5_hierarchy,
        checks=staged.checks,
    )
    commit.publish(store, staged, sidecar)
    return "committed", sidecar


def _current_sidecar(task: SeriesTask, store: Store) -> SeriesSidecar | None:
    """What is committed at ``task.path`` now; the store is the truth, not the hint."""
    try:
        current = read_sidecar(store, task.path)
    except ObjectNotFound:
        return None
    except IntegrityError as exc:
        log.warning("series %s: ignoring unreadable sidecar: %s", task.record.series_uid, exc)
        return None
    if current.series_uid != task.record.series_uid:
        return None
    if task.previous is not None and task.previous.content_hash != current.content_hash:
        log.info(
            "series %s: ledger and destination disagree; trusting the destination",
            task.record.series_uid,
        )
    return current


def _result(task: SeriesTask, meter: _Meter, outcome: str, sidecar: SeriesSidecar) -> SeriesResult:
    return SeriesResult(
        series_uid=task.record.series_uid,
        outcome=outcome,
        sidecar=sidecar,
        bytes_downloaded=meter.bytes,
        attempts=meter.attempts,
        seconds=time.monotonic() - meter.started,
        pushback=meter.pushback,
        retry_after=meter.retry_after,
    )


def _failed(task: SeriesTask, meter: _Meter, exc: MirrorError) -> SeriesResult:
    return SeriesResult(
        series_uid=task.record.series_uid,
        outcome="failed",
        sidecar=None,
        bytes_downloaded=meter.bytes,
        attempts=meter.attempts,
        seconds=time.monotonic() - meter.started,
        error_class=type(exc).__name__,
        message=str(exc),
        retryable=exc.retryable,
        pushback=meter.pushback,
        retry_after=meter.retry_after,
        refused=isinstance(exc, RateLimited),
    )
