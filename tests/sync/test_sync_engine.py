"""The Dask engine against fake unit functions: window, batching, failures, worker loss."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster

from mirror.archive.port import SeriesRecord
from mirror.errors import StoreError
from mirror.storage.memory import MemoryStore
from mirror.sync.engine import REQUEUE_DELAY_MAX, Engine, EngineOptions, _Requeue, make_units


@dataclass(frozen=True)
class FakeTask:
    record: SeriesRecord


@dataclass(frozen=True)
class FakeResult:
    series_uid: str


def task(i: int, size: int = 10 * 2**20) -> FakeTask:
    return FakeTask(SeriesRecord(f"1.2.{i}", "1.3", "P", "C", file_size=size))


class Recorder:
    def __init__(self) -> None:
        self.results: list[str] = []
        self.errors: list[tuple[str, str, bool]] = []

    def on_result(self, t: Any, r: Any) -> None:
        self.results.append(r.series_uid)

    def on_error(self, t: Any, cls: str, msg: str, retryable: bool) -> None:
        self.errors.append((t.record.series_uid, cls, retryable))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": ":0"}, resources={"tcia_http": 2}) as cluster, Client(cluster) as c:
        yield c


def engine(client: Client, fn: Any, window: int = 2) -> Engine:
    return Engine(client, object(), MemoryStore("e"), None,  # type: ignore[arg-type]
                  options=EngineOptions(window=window), unit_fn=fn)


def test_make_units_batches_tiny_series_only() -> None:
    tasks = [task(i, size=1000) for i in range(40)] + [task(100), task(101, size=0)]
    units = make_units(tasks, "run", pass_no=2)  # type: ignore[arg-type]
    sizes = sorted(len(u.tasks) for u in units)
    assert sizes == [1, 1, 20, 20]
    many = make_units([task(i, size=1000) for i in range(100)], "run")  # type: ignore[arg-type]
    assert [len(u.tasks) for u in many] == [32, 32, 32, 4], "at most 32 per batch"
    assert len({u.key for u in units}) == 4 and all("-2-" in u.key for u in units)
    spread = make_units(tasks[:40], "run", parallelism=4)  # type: ignore[arg-type]
    assert [len(u.tasks) for u in spread] == [5] * 8, "two units per download slot"


class _GaugeState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0


# Tasks are pickled even on an in-process cluster: the gauge travels as its name and finds
# its (test-process) state here.
_GAUGES: dict[str, _GaugeState] = {}


@dataclass(frozen=True)
class Gauge:
    name: str

    def __post_init__(self) -> None:
        _GAUGES[self.name] = _GaugeState()

    @property
    def peak(self) -> int:
        return _GAUGES[self.name].peak

    def __call__(self, tasks: tuple[Any, ...], *args: Any) -> list[Any]:
        state = _GAUGES[self.name]
        with state.lock:
            state.now += 1
            state.peak = max(state.peak, state.now)
        threading.Event().wait(0.05)
        with state.lock:
            state.now -= 1
        return [FakeResult(t.record.series_uid) for t in tasks]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_gauge_by_name, (self.name,))


def _gauge_by_name(name: str) -> Gauge:
    gauge = object.__new__(Gauge)
    object.__setattr__(gauge, "name", name)
    return gauge


def test_bounded_window_and_every_result_delivered(client: Client) -> None:
    gauge, rec = Gauge("window"), Recorder()
    units = make_units([task(i) for i in range(12)], "w")  # type: ignore[arg-type]
    report = engine(client, gauge, window=3).run(units, rec.on_result, rec.on_error)
    assert sorted(rec.results) == sorted(f"1.2.{i}" for i in range(12))
    assert gauge.peak <= 2, "tcia_http=2 on the only worker caps concurrency"
    assert report.submitted == 12 and not report.unsubmitted


def _store_broken(tasks: tuple[Any, ...], *args: Any) -> list[Any]:
    if tasks[0].record.series_uid == "1.2.0":
        raise StoreError("disk full")
    return [FakeResult(t.record.series_uid) for t in tasks]


def test_store_error_stops_the_run(client: Client) -> None:
    rec = Recorder()
    units = make_units([task(i) for i in range(6)], "s")  # type: ignore[arg-type]
    report = engine(client, _store_broken, window=1).run(units, rec.on_result, rec.on_error)
    assert isinstance(report.fatal, StoreError)
    assert rec.errors == [("1.2.0", "StoreError", False)]
    assert len(report.unsubmitted) == 5 and rec.results == []


def _store_broken_beside_a_slow_unit(tasks: tuple[Any, ...], *args: Any) -> list[Any]:
    if tasks[0].record.series_uid == "1.2.0":
        raise StoreError("disk full")
    threading.Event().wait(0.2)  # still running when the fatal error arrives
    return [FakeResult(t.record.series_uid) for t in tasks]


def test_fatal_store_error_drains_the_running_unit(client: Client) -> None:
    rec = Recorder()
    units = make_units([task(i) for i in range(6)], "f")  # type: ignore[arg-type]
    report = engine(client, _store_broken_beside_a_slow_unit, window=2).run(
        units, rec.on_result, rec.on_error
    )
    assert isinstance(report.fatal, StoreError)
    assert rec.results == ["1.2.1"], "the unit running beside the failed one is recorded"
    assert len(report.unsubmitted) == 4


def _buggy(tasks: tuple[Any, ...], *args: Any) -> list[Any]:
    if tasks[0].record.series_uid == "1.2.1":
        raise RuntimeError("bug")
    if tasks[0].record.series_uid == "1.2.2":
        return []
    return [FakeResult(t.record.series_uid) for t in tasks]


def test_task_crash_or_missing_result_is_a_retryable_failure(client: Client) -> None:
    rec = Recorder()
    units = make_units([task(i) for i in range(4)], "b")  # type: ignore[arg-type]
    engine(client, _buggy).run(units, rec.on_result, rec.on_error)
    assert sorted(rec.results) == ["1.2.0", "1.2.3"]
    assert sorted(rec.errors) == [("1.2.1", "RuntimeError", True), ("1.2.2", "MissingResult", True)]


@dataclass(frozen=True)
class Refused:
    series_uid: str
    retry_after: float = 0.0
    attempts: int = 4
    bytes_downloaded: int = 100
    refused: bool = True


_SENT: dict[str, int] = {}


def _refuses_twice(tasks: tuple[Any, ...], *args: Any) -> list[Any]:
    """1.2.0 is refused on its first two sends, 1.2.1 on every send, the rest never."""
    out: list[Any] = []
    for t in tasks:
        uid = t.record.series_uid
        _SENT[uid] = _SENT.get(uid, 0) + 1
        refused = uid == "1.2.1" or (uid == "1.2.0" and _SENT[uid] <= 2)
        out.append(Refused(uid) if refused else FakeResult(uid))
    return out


def test_a_refused_series_goes_back_to_the_queue_until_its_requeues_run_out(
    client: Client,
) -> None:
    _SENT.clear()
    rec, delivered = Recorder(), {}
    units = make_units([task(i) for i in range(4)], "q")  # type: ignore[arg-type]
    eng = Engine(client, object(), MemoryStore("e"), None,  # type: ignore[arg-type]
                 options=EngineOptions(window=2, requeue_limit=3), unit_fn=_refuses_twice)
    report = eng.run(units, lambda t, r: delivered.setdefault(r.series_uid, r), rec.on_error)
    assert _SENT == {"1.2.0": 3, "1.2.1": 4, "1.2.2": 1, "1.2.3": 1}
    assert isinstance(delivered["1.2.0"], FakeResult), "committed on its third send"
    assert isinstance(delivered["1.2.1"], Refused), "its failure arrives after 3 requeues"
    assert len(delivered) == 4 and not rec.errors and not report.unsubmitted
    assert (report.requeued, report.requeued_attempts, report.requeued_bytes) == (5, 20, 500)
    assert report.submitted == 9


def test_requeue_waits_out_retry_after_capped_and_in_order() -> None:
    now = [100.0]
    again = _Requeue(limit=1, clock=lambda: now[0], streak=64)
    assert again.due_in() is None and not again
    assert again.offer("u1", task(1), Refused("1.2.1", retry_after=5.0))
    assert again.offer("u2", task(2), Refused("1.2.2", retry_after=1e9))  # hostile header
    assert again.offer("u3", task(3), Refused("1.2.3", retry_after=5.0))
    assert not again.offer("u4", task(1), Refused("1.2.1")), "its one requeue is used"
    assert not again.offer("u5", task(5), FakeResult("1.2.5")), "only refusals come back"
    assert again.due_in() == 5.0 and again.take_due(10) == []
    now[0] = 105.0
    due = again.take_due(1)
    assert [u.tasks[0].record.series_uid for u in due] == ["1.2.1"], "window room of one"
    assert due[0].key == "u1-again1-1.2.1"
    assert [u.tasks[0].record.series_uid for u in again.take_due(10)] == ["1.2.3"]
    assert again.due_in() == REQUEUE_DELAY_MAX - 5.0 and len(again) == 1
    assert [u.key for u in again.pending()] == ["u2-again1-1.2.2"]


def test_an_archive_refusing_everything_stops_the_requeues() -> None:
    again = _Requeue(limit=3, clock=lambda: 0.0, streak=2)
    assert again.offer("u", task(1), Refused("1.2.1"))
    assert again.offer("u", task(2), Refused("1.2.2"))
    assert not again.offer("u", task(3), Refused("1.2.3")), "a third refusal in a row"
    assert not again.offer("u", task(4), FakeResult("1.2.4"))  # served: the streak ends
    assert again.offer("u", task(3), Refused("1.2.3"))
    assert len(again) == 3


def test_stop_request_drains_running_units_and_leaves_the_rest_unsubmitted(
    client: Client,
) -> None:
    rec = Recorder()
    units = make_units([task(i) for i in range(10)], "x")  # type: ignore[arg-type]
    report = engine(client, Gauge("stop"), window=2).run(
        units, rec.on_result, rec.on_error, should_stop=lambda: bool(rec.results)
    )
    # the unit running beside the first one is waited for and recorded, nothing new starts
    assert report.stopped and len(rec.results) == 2
    assert len(rec.results) + len(report.unsubmitted) == 10


def test_stop_without_drain_time_cancels_running_units(client: Client) -> None:
    rec = Recorder()
    units = make_units([task(i) for i in range(10)], "y")  # type: ignore[arg-type]
    quick = Engine(client, object(), MemoryStore("e"), None,  # type: ignore[arg-type]
                   options=EngineOptions(window=2, drain_seconds=0), unit_fn=Gauge("stop0"))
    report = quick.run(units, rec.on_result, rec.on_error, should_stop=lambda: bool(rec.results))
    assert report.stopped and len(rec.results) == 1
    assert len(rec.results) + len(report.unsubmitted) == 10


def _die_on_first(tasks: tuple[Any, ...], *args: Any) -> list[Any]:
    if tasks[0].record.series_uid == "1.2.0":
        os._exit(1)
    return [FakeResult(t.record.series_uid) for t in tasks]


@pytest.mark.slow
def test_worker_process_death_is_recorded_retryable_not_lost() -> None:
    rec = Recorder()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"}, resources={"tcia_http": 2},
    ) as cluster, Client(cluster) as c:
        units = make_units([task(i) for i in range(4)], "k")  # type: ignore[arg-type]
        report = engine(c, _die_on_first, window=4).run(units, rec.on_result, rec.on_error)
    assert report.fatal is None
    assert ("1.2.0", "KilledWorker", True) in rec.errors
    delivered = set(rec.results) | {uid for uid, *_ in rec.errors}
    assert delivered == {f"1.2.{i}" for i in range(4)}
