"""Run series tasks on Dask: bounded in-flight window, results streamed back to the driver.

The engine knows nothing about the ledger: the driver passes callbacks. Tasks are small
picklable records; the Archive and Store objects are scattered once; DICOM bytes never pass
through the scheduler (each task writes to the destination itself).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

from mirror.archive.port import SeriesRecord, Source
from mirror.errors import MirrorError, StoreError
from mirror.storage.port import Store
from mirror.sync.adaptive import AdaptiveSettings, Busy, ConcurrencyController

log = logging.getLogger(__name__)

SMALL_SERIES_BYTES = 2 * 2**20
BATCH_SIZE = 32
SEMAPHORE_NAME = "tcia-mirror-http"
REQUEUE_DELAY_MAX = 60.0  # seconds: caps an upstream Retry-After (a hostile header)


class TaskLike(Protocol):
    @property
    def record(self) -> SeriesRecord: ...


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """One Dask task: a single series, or a batch of tiny ones (per-task overhead ~1 ms)."""

    key: str
    tasks: tuple[Any, ...]  # SeriesTask records


def make_units(
    tasks: Sequence[TaskLike],
    run_id: str,
    *,
    pass_no: int = 1,
    small_bytes: int = SMALL_SERIES_BYTES,
    batch_size: int = BATCH_SIZE,
    parallelism: int = 1,
) -> list[WorkUnit]:
    """Group tiny series (listing FileSize under ``small_bytes``) into batches.

    Batches shrink so there are at least two units per download slot: batching amortises
    scheduler overhead but must never serialise a small run onto one worker thread.
    """
    small = [t for t in tasks if 0 < t.record.file_size < small_bytes]
    # Largest first: over a connection-capped, bandwidth-capped link the run cannot end
    # before its largest series does, so that one must start at once, not last.
    large = sorted(
        (t for t in tasks if not 0 < t.record.file_size < small_bytes),
        key=lambda t: -t.record.file_size,
    )
    batch_size = max(1, min(batch_size, -(-len(small) // (2 * max(1, parallelism)))))
    units = [WorkUnit(f"series-{run_id}-{pass_no}-{t.record.series_uid}", (t,)) for t in large]
    for start in range(0, len(small), batch_size):
        chunk = tuple(small[start : start + batch_size])
        units.append(WorkUnit(f"batch-{run_id}-{pass_no}-{start // batch_size}", chunk))
    return units


def run_unit(
    tasks: tuple[Any, ...], archive: Source, store: Store, settings: Any, semaphore: Any = None
) -> list[Any]:
    """Executed on a worker. Raises only StoreError (the destination is broken)."""
    from mirror.sync.task import sync_batch, sync_series

    guard: AbstractContextManager[Any] = semaphore if semaphore is not None else nullcontext()
    with guard:
        if len(tasks) == 1:
            return [sync_series(tasks[0], archive, store, settings)]
        return list(sync_batch(list(tasks), archive, store, settings))


OnResult = Callable[[Any, Any], None]  # (task, SeriesResult)
OnError = Callable[[Any, str, str, bool], None]  # (task, error_class, message, retryable)


@dataclass(slots=True)
class EngineReport:
    submitted: int = 0
    completed_units: int = 0
    fatal: StoreError | None = None
    stopped: bool = False
    unsubmitted: list[Any] = field(default_factory=list)  # tasks never sent (stop or fatal)
    requeued: int = 0  # times a series the archive refused went back to the queue
    # What the refused tries of those series cost (their results are never delivered).
    requeued_attempts: int = 0
    requeued_bytes: int = 0
    # adaptive: final, peak, backoffs, cpu_saturated
    concurrency: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineOptions:
    window: int = 16  # units in flight (when not adaptive)
    use_resources: bool = True
    max_connections: int | None = None
    drain_seconds: float = 120.0  # after a stop or fatal error, wait for running units
    adaptive: AdaptiveSettings | None = None  # units in flight follow a ConcurrencyController
    # A series whose task gave up on the archive's refusals (429) is sent again, after its
    # Retry-After, at most this many times before its failure is delivered. Its retries all
    # ran inside the window that was open when it was sent; the window has halved since.
    requeue_limit: int = 3
    # This many refusals in a row, with nothing served between, is an archive refusing
    # everything, not one asking for less: requeueing then would only multiply the run's
    # length, so the failures stand (and get the end-of-run pass).
    requeue_streak: int = 64


class Engine:
    """Submit units through a bounded window and hand every result to the driver."""

    def __init__(
        self,
        client: Any,
        archive: Source,
        store: Store,
        settings: Any,
        *,
        options: EngineOptions,
        unit_fn: Callable[..., list[Any]] = run_unit,
        clock: Callable[[], float] = time.monotonic,
        busy: Busy | None = None,
    ) -> None:
        self._client = client
        self._options = options
        self._unit_fn = unit_fn
        self._archive = client.scatter(archive, broadcast=True, hash=False)
        self._store = client.scatter(store, broadcast=True, hash=False)
        self._settings = settings
        self._semaphore = self._make_semaphore(options.max_connections)
        self._clock = clock
        # One controller per engine: a retry pass starts from what the first pass learned.
        self._control = (
            ConcurrencyController(options.adaptive, clock, busy) if options.adaptive else None
        )

    def _make_semaphore(self, max_connections: int | None) -> Any:
        if not max_connections:
            return None
        from distributed import Semaphore

        return Semaphore(max_leases=max_connections, name=SEMAPHORE_NAME)  # type: ignore[no-untyped-call]

    def _submit(self, unit: WorkUnit) -> Any:
        resources = {"tcia_http": 1} if self._options.use_resources else None
        return self._client.submit(
            self._unit_fn,
            unit.tasks,
            self._archive,
            self._store,
            self._settings,
            self._semaphore,
            key=unit.key,
            pure=False,
            retries=0,
            resources=resources,
        )

    def run(
        self,
        units: Sequence[WorkUnit],
        on_result: OnResult,
        on_error: OnError,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> EngineReport:
        report = EngineReport()
        todo: Iterator[WorkUnit] = iter(units)
        flight = _Flight()
        again = _Requeue(self._options.requeue_limit, self._clock, self._options.requeue_streak)
        control = self._control
        self._refill(flight, again, todo, report)
        try:
            while flight.units or again:
                future = flight.next_done(self._wake_in(flight, again))
                if future is None:
                    if control is not None:
                        control.tick()
                    self._refill(flight, again, todo, report)
                    continue
                unit = flight.units.pop(future)
                report.completed_units += 1
                results = self._deliver(future, unit, on_result, on_error, report, again=again)
                if control is not None:
                    _feed(control, results, flight.epochs.pop(future, None))
                if report.fatal is not None or should_stop():
                    report.stopped = report.fatal is None
                    self._drain(flight.units, on_result, on_error, report)
                    break
                self._refill(flight, again, todo, report)
        finally:
            self._cancel(flight.units)
        if control is not None:
            report.concurrency = {
                "final": control.limit, "peak": control.peak, "backoffs": control.backoffs,
                "cpu_saturated": control.saturations,
            }
        for unit in [*flight.units.values(), *again.pending(), *todo]:
            report.unsubmitted.extend(unit.tasks)
        return report

    def _limit(self) -> int:
        return self._control.limit if self._control is not None else self._options.window

    def _wake_in(self, flight: _Flight, again: _Requeue) -> float | None:
        """How long to wait for a finished unit before looking again. With an adaptive
        window, wake up now and then even when nothing finishes: a window of long downloads
        must be able to grow before the first one completes. A requeued series wakes the
        loop when it is due, if the window has room for it then."""
        waits = [self._control.interval / 2] if self._control is not None else []
        due = again.due_in()
        if due is not None and len(flight.units) < self._limit():
            waits.append(due)
        return min(waits, default=None)

    def _refill(
        self, flight: _Flight, again: _Requeue, todo: Iterator[WorkUnit], r: EngineReport
    ) -> None:
        """Submit up to the window, requeued series that are due first. A shrunken adaptive
        limit submits nothing until enough units drain; it never drops below one, so an
        empty window always refills."""
        room = self._limit() - len(flight.units)
        due = again.take_due(room)
        for unit in [*due, *_take(todo, room - len(due))]:
            future = self._submit(unit)
            flight.add(future, unit, self._control.epoch if self._control is not None else 0)
            r.submitted += 1

    def _deliver(
        self,
        future: Any,
        unit: WorkUnit,
        on_result: OnResult,
        on_error: OnError,
        r: EngineReport,
        *,
        again: _Requeue | None = None,
    ) -> list[Any]:
        try:
            results: list[Any] = future.result()
        except (Exception, CancelledError) as exc:
            self._failed_unit(unit, exc, on_error, r)
            return []
        by_uid = {res.series_uid: res for res in results}
        for task in unit.tasks:
            res = by_uid.get(task.record.series_uid)
            if res is None:
                on_error(task, "MissingResult", "the task returned no result", True)
            elif again is not None and again.offer(unit.key, task, res):
                r.requeued += 1
                r.requeued_attempts += int(res.attempts)
                r.requeued_bytes += int(res.bytes_downloaded)
            else:
                on_result(task, res)
        return results

    def _failed_unit(
        self, unit: WorkUnit, exc: BaseException, on_error: OnError, r: EngineReport
    ) -> None:
        bare_os_error = isinstance(exc, OSError) and not isinstance(
            exc, MirrorError | ConnectionError | TimeoutError
        )
        if isinstance(exc, StoreError) or bare_os_error:
            # StoreError, or a bare OSError from the destination or the scratch disk (the
            # archive client maps its own errors): the destination is broken, stop the run.
            r.fatal = exc if isinstance(exc, StoreError) else StoreError(str(exc))
            for task in unit.tasks:
                on_error(task, type(exc).__name__, str(exc), False)
            return
        # KilledWorker, a lost or cancelled future, a bug in the task: the series is
        # recorded failed-retryable, never silently lost.
        log.warning("task %s failed on the cluster: %s: %s", unit.key, type(exc).__name__, exc)
        for task in unit.tasks:
            on_error(task, type(exc).__name__, str(exc) or repr(exc), True)

    def _drain(
        self, inflight: dict[Any, WorkUnit], on_result: OnResult, on_error: OnError, r: EngineReport
    ) -> None:
        """Give running units a bounded time to finish and hand their results over.

        Cancelling a running task does not stop it: it may still commit. Waiting here
        lets the driver record what lands; the next run reconciles whatever still slips
        past (a sidecar the ledger does not know).
        """
        if not inflight or self._options.drain_seconds <= 0:
            return
        from distributed import wait

        log.info("waiting up to %gs for %d running units", self._options.drain_seconds,
                 len(inflight))  # fmt: skip
        try:
            wait(list(inflight), timeout=self._options.drain_seconds)  # type: ignore[no-untyped-call]
        except TimeoutError:
            log.warning("some units still running after %gs", self._options.drain_seconds)
        for future, unit in list(inflight.items()):
            if future.done():
                del inflight[future]
                r.completed_units += 1
                self._deliver(future, unit, on_result, on_error, r)

    def _cancel(self, inflight: dict[Any, WorkUnit]) -> None:
        if inflight:
            self._client.cancel(list(inflight), force=True)


class _Flight:
    """Units in flight, the controller epoch each was sent in, and a queue that Dask's done
    callbacks fill (finished, failed or cancelled alike), so the driver can wait with a
    timeout instead of blocking until the next completion."""

    def __init__(self) -> None:
        self.units: dict[Any, WorkUnit] = {}
        self.epochs: dict[Any, int] = {}
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def add(self, future: Any, unit: WorkUnit, epoch: int) -> None:
        self.units[future] = unit
        self.epochs[future] = epoch
        future.add_done_callback(self._done.put)

    def next_done(self, timeout: float | None) -> Any:
        """The next finished future still in flight, or None after ``timeout`` seconds."""
        while True:
            try:
                future = self._done.get(timeout=timeout)
            except queue.Empty:
                return None
            if future in self.units:
                return future


class _Requeue:
    """Series the archive refused until their task gave up, each waiting out its
    Retry-After before it is sent again as a unit of its own."""

    def __init__(self, limit: int, clock: Callable[[], float], streak: int) -> None:
        self._limit = limit
        self._clock = clock
        self._max_streak = streak
        self._streak = 0  # refused results since the last one that was not
        self._sent: dict[str, int] = {}  # series UID -> times requeued
        self._heap: list[tuple[float, int, WorkUnit]] = []
        self._order = itertools.count()  # ties at the same due time go out in arrival order

    def __len__(self) -> int:
        return len(self._heap)

    def offer(self, key: str, task: Any, res: Any) -> bool:
        """Take a refused series back (True), unless it has used up its requeues or the
        archive has refused everything lately."""
        if not getattr(res, "refused", False):
            self._streak = 0
            return False
        self._streak += 1
        uid = str(res.series_uid)
        n = self._sent.get(uid, 0)
        if n >= self._limit or self._streak > self._max_streak:
            return False
        self._sent[uid] = n + 1
        delay = min(max(float(getattr(res, "retry_after", 0.0)), 0.0), REQUEUE_DELAY_MAX)
        unit = WorkUnit(f"{key}-again{n + 1}-{uid}", (task,))
        heapq.heappush(self._heap, (self._clock() + delay, next(self._order), unit))
        return True

    def take_due(self, n: int) -> list[WorkUnit]:
        """Up to ``n`` units whose wait is over, the longest-waiting first."""
        now, out = self._clock(), list[WorkUnit]()
        while self._heap and len(out) < n and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def due_in(self) -> float | None:
        """Seconds until the next unit is due (0 if one is), None if none waits."""
        return max(0.0, self._heap[0][0] - self._clock()) if self._heap else None

    def pending(self) -> list[WorkUnit]:
        return [entry[2] for entry in sorted(self._heap)]


def _feed(control: ConcurrencyController, results: list[Any], epoch: int | None) -> None:
    """One finished unit: its bytes, and any push-back its series met."""
    control.finished(
        sum(int(getattr(res, "bytes_downloaded", 0)) for res in results),
        throttled=any(getattr(res, "pushback", 0) for res in results),
        retry_after=max((float(getattr(res, "retry_after", 0.0)) for res in results), default=0.0),
        epoch=epoch,
    )


def _take(it: Iterator[WorkUnit], n: int) -> list[WorkUnit]:
    out: list[WorkUnit] = []
    if n <= 0:
        return out
    for unit in it:
        out.append(unit)
        if len(out) >= n:
            break
    return out
