"""The task against the simulated archive over real HTTP on 127.0.0.1, with its faults."""

from __future__ import annotations

import hashlib
import os

import pytest
from task_consistency import assert_consistent, snapshot

from mirror.archive.sim import FaultConfig
from mirror.layout import series_path
from mirror.sync.task import SeriesTask, sync_series, verify_series


def _task(record, *, version=1, run="run1", previous=None) -> SeriesTask:
    path = series_path(collection=record.collection, patient_id=record.patient_id,
                       study_uid=record.study_uid, series_uid=record.series_uid)
    return SeriesTask(record, path, version, run, previous)


def _record(archive, uid):
    (record,) = archive.series(series_uid=uid)
    return record


@pytest.mark.slow
def test_whole_tiny_archive_mirrors_verified(archive, sim, store, settings, sleeps) -> None:
    records = archive.series()
    assert len(records) == 6
    if store.url.startswith("s3://"):
        records = records[:2]  # ~40 ms per moto request: the rest is the same code path
    for record in records:
        res = sync_series(_task(record), archive, store, settings, sleep=sleeps.append)
        assert (res.outcome, res.attempts) == ("committed", 1), res
        assert sorted(i.md5 for i in res.sidecar.instances) == sorted(sim.true_md5s(record.series_uid))
        assert verify_series(store, res.sidecar, deep=True) == []
    sidecars = assert_consistent(store)
    assert {s.series_uid for s in sidecars.values()} == {r.series_uid for r in records}
    assert sleeps == []
    before = snapshot(store)
    again = [sync_series(_task(r, run="run2"), archive, store, settings) for r in records]
    assert {r.outcome for r in again} == {"unchanged"}
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "fault, attempts",
    [
        (FaultConfig(truncate_next=1, truncate_after=700), 2),
        (FaultConfig(short_next=1), 2),
        (FaultConfig(license_only_next=1), 2),
        (FaultConfig(fail_next=1), 2),
        (FaultConfig(rate_limit_next=1, retry_after=7), 2),
    ],
    ids=["truncated", "short", "license-only", "http-500", "http-429"],
)
def test_transient_faults_are_retried_then_committed(
    archive, sim, local_store, settings, sleeps, fault, attempts
) -> None:
    uid = sim.series_uids("Sim-Lung")[0]
    record = _record(archive, uid)
    sim.faults = fault
    res = sync_series(_task(record), archive, local_store, settings, sleep=sleeps.append)
    assert (res.outcome, res.attempts) == ("committed", attempts), res
    assert len(sleeps) == attempts - 1
    if fault.rate_limit_next:
        assert sleeps == [7.0]
    assert verify_series(local_store, res.sidecar, deep=True) == []
    assert_consistent(local_store)


def test_stored_md5_wrong_upstream_fails_after_retries(archive, sim, store, settings, sleeps) -> None:
    uid = sim.series_uids("Sim-Brain")[0]
    record = _record(archive, uid)
    sim.faults = FaultConfig(wrong_md5=frozenset({(uid, 1)}))
    res = sync_series(_task(record), archive, store, settings, sleep=sleeps.append)
    assert (res.outcome, res.error_class, res.retryable) == ("failed", "ChecksumMismatch", True)
    assert res.attempts == settings.max_attempts and len(sleeps) == settings.max_attempts - 1
    assert list(store.list()) == []


def test_withdrawn_between_listing_and_download(archive, sim, local_store, settings, sleeps) -> None:
    uid = sim.series_uids("Sim-Brain")[1]
    record = _record(archive, uid)
    sim.faults = FaultConfig(withdraw_next=1)
    res = sync_series(_task(record), archive, local_store, settings, sleep=sleeps.append)
    assert (res.outcome, res.error_class, res.attempts, res.retryable) == (
        "failed", "AccessDenied", 1, False)
    assert sleeps == [] and list(local_store.list()) == []


def test_upstream_change_replaces_and_keeps_old_in_attic(archive, sim, local_store, settings) -> None:
    uid = sim.series_uids("Sim-Lung")[1]
    first = sync_series(_task(_record(archive, uid)), archive, local_store, settings)
    sim.replace_instance(uid, 0)
    sim.add_instances(uid, 2)
    record = _record(archive, uid)
    assert record.fingerprint != first.sidecar.fingerprint
    res = sync_series(_task(record, version=2, run="run2", previous=first.sidecar),
                      archive, local_store, settings)
    assert res.outcome == "committed" and res.sidecar.series_version == 2
    assert len(res.sidecar.instances) == len(first.sidecar.instances) + 2
    assert sorted(i.md5 for i in res.sidecar.instances) == sorted(sim.true_md5s(uid))
    attic = os.path.join(local_store.root, "_attic", "run2", *first.sidecar.path.split("/"))
    for inst in first.sidecar.instances:
        with open(os.path.join(attic, inst.name), "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == inst.md5
    assert assert_consistent(local_store)[res.sidecar.path] == res.sidecar


@pytest.mark.slow
@pytest.mark.parametrize("store", ["s3"], indirect=True)  # memory:// is per process
def test_task_runs_in_another_process_with_pickled_store(archive, sim, store, settings) -> None:
    """What a multi-process Dask worker does: unpickle archive + store, open clients lazily."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mirror.sync.task import sync_batch

    tasks = [_task(r) for r in archive.series(collection="Sim-Brain")]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = pool.submit(sync_batch, tasks, archive, store, settings).result(timeout=240)
    assert [r.outcome for r in results] == ["committed"] * len(tasks)
    sidecars = assert_consistent(store)
    assert {s.series_uid for s in sidecars.values()} == {t.record.series_uid for t in tasks}
