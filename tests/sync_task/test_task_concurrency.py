"""Dask runs many tasks per worker in threads: siblings in one study commit concurrently."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from task_consistency import assert_consistent
from task_zips import FakeArchive, build_zip, record_for, series_files

from mirror.sync.task import SeriesTask, sync_series


def _path(n: int, uid: str) -> str:
    # Series n and n+6 share a study; replacing n empties (and prunes) that study folder
    # for an instant while n+6 is being published into it.
    return f"TEST/P-1/1.2.3.{n % 6}/{uid}"


def test_threads_commit_and_replace_siblings_consistently(local_store, settings) -> None:
    uids = [f"1.2.840.55.{n}" for n in range(12)]
    archive = FakeArchive()
    v1 = {uid: series_files(uid, count=2) for uid in uids}
    for uid in uids:
        archive.queue(uid, build_zip(v1[uid]))
    first = [SeriesTask(record_for(uid, v1[uid]), _path(n, uid), 1, "r1")
             for n, uid in enumerate(uids[:6])]
    with ThreadPoolExecutor(6) as pool:
        done = list(pool.map(lambda t: sync_series(t, archive, local_store, settings), first))
    assert {r.outcome for r in done} == {"committed"}

    # Replace the first six while the other six land next to them in the same studies.
    archive2 = FakeArchive()
    v2 = {uid: series_files(uid, count=3, size=400) for uid in uids[:6]}
    tasks = []
    for n, uid in enumerate(uids):
        files = v2.get(uid, v1[uid])
        archive2.queue(uid, build_zip(files))
        tasks.append(SeriesTask(record_for(uid, files), _path(n, uid), 2, "r2"))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda t: sync_series(t, archive2, local_store, settings), tasks))
    assert [r.outcome for r in results] == ["committed"] * 12
    sidecars = assert_consistent(local_store)
    assert set(sidecars) == {_path(n, uid) for n, uid in enumerate(uids)}
    for n, uid in enumerate(uids[:6]):
        assert len(sidecars[_path(n, uid)].instances) == 3
    assert len({k.split("/")[5] for k in local_store.list("_attic/r2")}) == 6
