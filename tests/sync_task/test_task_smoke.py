from __future__ import annotations

from task_zips import FakeArchive, build_zip, record_for, series_files

from mirror.sync.task import SeriesTask, sync_series, verify_series

UID = "1.2.3.4.5"


def test_commit_then_unchanged(store, settings, sleeps) -> None:
    files = series_files(UID)
    archive = FakeArchive()
    archive.queue(UID, build_zip(files))
    task = SeriesTask(record_for(UID, files), f"TEST/P-1/1.2.3.4/{UID}", 1, "run1")
    res = sync_series(task, archive, store, settings, sleep=sleeps.append)
    assert res.outcome == "committed", res
    assert sorted(store.list()) == sorted(
        [f"TEST/P-1/1.2.3.4/{UID}/{n}" for n in [*files, "LICENSE", "_series.json"]]
    )
    assert verify_series(store, res.sidecar, deep=True) == []
    res2 = sync_series(SeriesTask(task.record, task.path, 2, "run2", res.sidecar), archive, store, settings)
    assert res2.outcome == "unchanged"
