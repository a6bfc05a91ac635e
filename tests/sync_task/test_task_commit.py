"""Commit, replace, unchanged detection and idempotence on every store."""

from __future__ import annotations

import dataclasses
import os
from datetime import date

import pytest
from task_consistency import assert_consistent, snapshot
from task_zips import FakeArchive, build_zip, csv_text, md5_rows, record_for, series_files

from mirror.errors import StoreError
from mirror.layout import content_hash
from mirror.storage.local import LocalStore
from mirror.sync.task import FetchSettings, SeriesTask, sync_batch, sync_series

UID = "1.2.840.77.1"
PATH = f"TEST/P-1/1.2.3.4/{UID}"


def _sync(store, settings, files, *, version=1, run="run1", previous=None, record=None, zipped=None):
    archive = FakeArchive()
    archive.queue(UID, zipped if zipped is not None else build_zip(files))
    task = SeriesTask(record or record_for(UID, files), PATH, version, run, previous)
    return sync_series(task, archive, store, settings, sleep=lambda s: None)


def test_commit_layout_and_sidecar(store, settings) -> None:
    files = series_files(UID, count=4)
    res = _sync(store, settings, files)
    assert (res.outcome, res.attempts, res.error_class) == ("committed", 1, "")
    assert res.bytes_downloaded == len(build_zip(files))
    assert sorted(store.list()) == sorted(f"{PATH}/{n}" for n in [*files, "LICENSE", "_series.json"])
    for name, data in files.items():
        assert store.get_bytes(f"{PATH}/{name}") == data
    assert store.get_bytes(f"{PATH}/LICENSE").startswith(b"License Information.")
    side = res.sidecar
    assert (side.series_uid, side.path, side.series_version, side.run_id) == (UID, PATH, 1, "run1")
    assert side.fingerprint == record_for(UID, files).fingerprint
    assert side.extra["date_released"] == "2024-01-02"
    assert [i.name for i in side.instances] == sorted(files)
    assert assert_consistent(store) == {PATH: side}


def test_s3_objects_carry_verified_md5(store, settings) -> None:
    files = series_files(UID)
    res = _sync(store, settings, files)
    for inst in res.sidecar.instances:
        info = store.info(f"{PATH}/{inst.name}")
        assert info.size == inst.size
        assert info.md5 == (inst.md5 if store.capabilities.object_metadata else None)


def test_rerun_is_idempotent(store, settings) -> None:
    files = series_files(UID)
    first = _sync(store, settings, files)
    before = snapshot(store)
    again = _sync(store, settings, files, version=2, run="run2")  # previous unknown to ledger
    assert again.outcome == "unchanged"
    assert again.sidecar == first.sidecar
    assert snapshot(store) == before


def test_unchanged_even_when_upstream_renames_entries(store, settings) -> None:
    files = series_files(UID)
    first = _sync(store, settings, files)
    renamed = {f"1-{i:03d}.dcm": data for i, data in enumerate(files.values(), 1)}
    res = _sync(store, settings, renamed, version=2, run="run2", previous=first.sidecar)
    assert res.outcome == "unchanged"
    assert sorted(i.name for i in res.sidecar.instances) == sorted(files)
    assert_consistent(store)


def test_unchanged_content_with_new_fingerprint_rewrites_sidecar(store, settings) -> None:
    files = series_files(UID)
    first = _sync(store, settings, files)
    rereleased = record_for(UID, files, released=date(2025, 6, 1))
    res = _sync(store, settings, files, version=2, run="run2", previous=first.sidecar, record=rereleased)
    assert res.outcome == "unchanged"
    assert res.sidecar.fingerprint == rereleased.fingerprint
    assert res.sidecar.series_version == 1 and res.sidecar.run_id == "run1"
    assert assert_consistent(store)[PATH] == res.sidecar
    for name, data in files.items():
        assert store.get_bytes(f"{PATH}/{name}") == data


def test_missing_file_under_unchanged_sidecar_is_repaired(store, settings) -> None:
    files = series_files(UID)
    first = _sync(store, settings, files)
    store.delete(f"{PATH}/00000002.dcm")
    res = _sync(store, settings, files, version=2, run="run2", previous=first.sidecar)
    assert res.outcome == "committed"
    assert store.get_bytes(f"{PATH}/00000002.dcm") == files["00000002.dcm"]
    assert_consistent(store)


def test_replace_with_new_content(store, settings) -> None:
    v1 = series_files(UID, count=4)
    first = _sync(store, settings, v1)
    v2 = {f"1-{i}.dcm": d for i, d in enumerate(series_files(UID, count=2, size=500).values(), 1)}
    res = _sync(store, settings, v2, version=2, run="run2", previous=first.sidecar)
    assert res.outcome == "committed"
    assert res.sidecar.series_version == 2
    assert res.sidecar.content_hash != first.sidecar.content_hash
    visible = {k for k in store.list() if not k.startswith("_attic/")}
    assert visible == {f"{PATH}/{n}" for n in [*v2, "LICENSE", "_series.json"]}
    assert assert_consistent(store)[PATH] == res.sidecar


def test_local_replace_moves_old_version_to_attic(local_store, settings) -> None:
    v1 = series_files(UID, count=3)
    first = _sync(local_store, settings, v1)
    v2 = series_files(UID, count=3, size=900)
    _sync(local_store, settings, v2, version=2, run="run2", previous=first.sidecar)
    attic = f"_attic/run2/{PATH}"
    assert sorted(local_store.list("_attic")) == sorted(
        f"{attic}/{n}" for n in [*v1, "LICENSE", "_series.json"]
    )
    for name, data in v1.items():
        assert local_store.get_bytes(f"{attic}/{name}") == data
    # A second replacement in the same run gets its own attic slot.
    v3 = series_files(UID, count=1, size=50)
    _sync(local_store, settings, v3, version=3, run="run2")
    assert any(k.startswith(f"{attic}~2/") for k in local_store.list("_attic"))
    assert_consistent(local_store)


def test_stale_staging_from_crashed_run_is_collected(local_store, settings) -> None:
    stale = os.path.join(local_store.root, ".staging", "crashed-run", UID)
    os.makedirs(stale)
    with open(os.path.join(stale, "00000001.dcm"), "wb") as f:
        f.write(b"half")
    res = _sync(local_store, settings, series_files(UID))
    assert res.outcome == "committed"
    assert not os.path.exists(os.path.join(local_store.root, ".staging"))
    assert_consistent(local_store)


def test_crash_between_attic_move_and_rename_recovers(local_store, settings, monkeypatch) -> None:
    v1 = series_files(UID)
    first = _sync(local_store, settings, v1)
    v2 = series_files(UID, size=700)
    real_rename = os.rename

    def crash_on_publish(src, dst):
        if ".staging" in str(src):
            raise KeyboardInterrupt  # stands in for a kill -9 at the worst moment
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", crash_on_publish)
    with pytest.raises(KeyboardInterrupt):
        _sync(local_store, settings, v2, version=2, run="run2", previous=first.sidecar)
    monkeypatch.setattr(os, "rename", real_rename)
    assert assert_consistent(local_store) == {}  # the window: series absent, never partial
    res = _sync(local_store, settings, v2, version=2, run="run2", previous=first.sidecar)
    assert res.outcome == "committed"
    assert assert_consistent(local_store)[PATH] == res.sidecar
    assert not os.path.exists(os.path.join(local_store.root, ".staging"))


def test_unwritable_destination_raises_store_error(tmp_path, settings) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = LocalStore(str(blocker / "mirror"))
    files = series_files(UID)
    with pytest.raises(StoreError):
        _sync(store, settings, files)


def test_missing_scratch_dir_raises_store_error(store, tmp_path) -> None:
    bad = FetchSettings(scratch_dir=str(tmp_path / "absent"))
    if store.capabilities.local:
        # A local store extracts straight into its own .staging/: scratch is never used.
        assert _sync(store, bad, series_files(UID)).outcome == "committed"
        return
    with pytest.raises(StoreError):
        _sync(store, bad, series_files(UID))


def test_sync_batch_keeps_order_and_isolates_failures(store, settings) -> None:
    archive = FakeArchive()
    tasks = []
    for n in range(3):
        uid = f"1.2.840.77.{10 + n}"
        files = series_files(uid, count=2)
        bad = n == 1
        rows = md5_rows(files)
        if bad:
            rows = [(rows[0][0], "f" * 32), rows[1]]
        archive.queue(uid, build_zip(files, csv=csv_text(rows)))
        tasks.append(SeriesTask(record_for(uid, files), f"TEST/P-1/1.2.3.4/{uid}", 1, "b"))
    fast = dataclasses.replace(settings, max_attempts=1)
    results = sync_batch(tasks, archive, store, fast)
    assert [r.series_uid for r in results] == [t.record.series_uid for t in tasks]
    assert [r.outcome for r in results] == ["committed", "failed", "committed"]
    assert results[1].error_class == "ChecksumMismatch"
    assert set(assert_consistent(store)) == {tasks[0].path, tasks[2].path}


def test_records_pickle(settings) -> None:
    import pickle

    files = series_files(UID)
    task = SeriesTask(record_for(UID, files), PATH, 1, "r")
    assert pickle.loads(pickle.dumps(task)) == task
    assert pickle.loads(pickle.dumps(settings)) == settings


def test_content_hash_matches_layout(store, settings) -> None:
    files = series_files(UID)
    res = _sync(store, settings, files)
    assert res.sidecar.content_hash == content_hash(res.sidecar.instances)


@pytest.mark.parametrize("store", ["memory", "s3"], indirect=True)
def test_object_store_failure_mid_commit_hides_new_series(store, settings, monkeypatch) -> None:
    """A destination error after some PUTs: StoreError propagates, and the objects this
    commit added are removed again, so the new series is not half-visible."""
    files = series_files(UID, count=6)
    real_put = type(store).put_file
    calls: list[str] = []

    def failing_put(self, local_path, key, *, md5=None):
        calls.append(key)
        if key.endswith("00000004.dcm"):
            raise StoreError(f"put {key}: quota exceeded")
        real_put(self, local_path, key, md5=md5)

    monkeypatch.setattr(type(store), "put_file", failing_put)
    with pytest.raises(StoreError, match="quota"):
        _sync(store, settings, files)
    monkeypatch.undo()
    assert len(calls) >= 4
    assert list(store.list()) == []


def test_object_store_failure_mid_update_keeps_old_sidecar_truthful(s3_store_for_task, settings, monkeypatch) -> None:
    store = s3_store_for_task
    v1 = series_files(UID, count=3)
    first = _sync(store, settings, v1)
    v2 = {f"1-{i}.dcm": d for i, d in enumerate(series_files(UID, count=3, size=900).values(), 1)}
    real_put = type(store).put_file

    def failing_put(self, local_path, key, *, md5=None):
        if key.endswith("1-3.dcm"):
            raise StoreError("put: connection lost")
        real_put(self, local_path, key, md5=md5)

    monkeypatch.setattr(type(store), "put_file", failing_put)
    with pytest.raises(StoreError):
        _sync(store, settings, v2, version=2, run="run2", previous=first.sidecar)
    monkeypatch.undo()
    assert assert_consistent(store) == {PATH: first.sidecar}


@pytest.mark.parametrize(
    "path, run_id, uid",
    [("_attic/x/1.2", "r", UID), (".staging/r/1.2", "r", UID), ("../x", "r", UID),
     (PATH, "a/b", UID), (PATH, ".hidden", UID), (PATH, "r", "1.2.abc")],
)
def test_bad_task_inputs_are_refused_before_any_io(memory_store_for_task, settings, path, run_id, uid) -> None:
    from mirror.errors import IntegrityError, UsageError

    archive = FakeArchive()
    files = series_files(UID)
    record = dataclasses.replace(record_for(UID, files), series_uid=uid)
    with pytest.raises((UsageError, IntegrityError)):
        sync_series(SeriesTask(record, path, 1, run_id), archive, memory_store_for_task, settings)
    assert archive.calls == []
