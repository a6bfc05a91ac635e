"""verify_series, read_sidecar and iter_sidecars: what `mirror verify` and `ledger rebuild` see."""

from __future__ import annotations

import pytest
from task_zips import FakeArchive, build_zip, record_for, series_files

from mirror.errors import IntegrityError, ObjectNotFound
from mirror.sync.task import SeriesTask, iter_sidecars, read_sidecar, sync_series, verify_series


def _commit(store, settings, uid: str, count: int = 3):
    files = series_files(uid, count=count)
    archive = FakeArchive()
    archive.queue(uid, build_zip(files))
    path = f"TEST/P-1/1.2.3.4/{uid}"
    res = sync_series(SeriesTask(record_for(uid, files), path, 1, "run1"), archive, store, settings)
    assert res.outcome == "committed"
    return res.sidecar


def test_clean_series_verifies(store, settings) -> None:
    side = _commit(store, settings, "1.2.5.1")
    assert verify_series(store, side, deep=False) == []
    assert verify_series(store, side, deep=True) == []


def test_missing_and_resized_files_reported(store, settings) -> None:
    side = _commit(store, settings, "1.2.5.2")
    a, b = side.instances[0].name, side.instances[1].name
    store.delete(f"{side.path}/{a}")
    store.put_bytes(f"{side.path}/{b}", b"short")
    problems = verify_series(store, side, deep=False)
    assert problems == [f"{side.path}/{a}: missing",
                        f"{side.path}/{b}: size 5, expected {side.instances[1].size}"]


def test_same_size_corruption_needs_deep_unless_store_records_md5(store, settings) -> None:
    side = _commit(store, settings, "1.2.5.3")
    inst = side.instances[2]
    key = f"{side.path}/{inst.name}"
    data = bytearray(store.get_bytes(key))
    data[-1] ^= 0x01
    store.put_bytes(key, bytes(data))  # S3 records the new (wrong) MD5 in metadata
    shallow = verify_series(store, side, deep=False)
    if store.capabilities.object_metadata:
        assert shallow == [f"{key}: stored MD5 {store.info(key).md5}, expected {inst.md5}"]
    else:
        assert shallow == []
    deep = verify_series(store, side, deep=True)
    assert len(deep) == 1 and deep[0].startswith(f"{key}:") and inst.md5 in deep[0]


def test_unlisted_objects_reported(store, settings) -> None:
    side = _commit(store, settings, "1.2.5.4")
    store.put_bytes(f"{side.path}/stray.dcm", b"?")
    assert verify_series(store, side, deep=False) == [
        f"{side.path}/stray.dcm: not listed in _series.json"]


def test_read_sidecar(store, settings) -> None:
    side = _commit(store, settings, "1.2.5.5")
    assert read_sidecar(store, side.path) == side
    with pytest.raises(ObjectNotFound):
        read_sidecar(store, "TEST/P-1/1.2.3.4/9.9")
    store.put_bytes("TEST/moved/_series.json", side.to_json())
    with pytest.raises(IntegrityError):
        read_sidecar(store, "TEST/moved")  # a sidecar copied elsewhere does not count


def test_iter_sidecars_skips_reserved_and_reports_corrupt(store, settings) -> None:
    sides = {_commit(store, settings, uid).path for uid in ("1.2.6.1", "1.2.6.2")}
    good = next(iter(sides))
    store.put_bytes(f"_attic/r/{good}/_series.json", store.get_bytes(f"{good}/_series.json"))
    store.put_bytes(f".staging/r/{good}/_series.json", b"{}")
    assert {s.path for s in iter_sidecars(store)} == sides
    store.put_bytes("TEST/P-2/1.2.3/1.2.6.9/_series.json", b"not json")
    with pytest.raises(IntegrityError):
        list(iter_sidecars(store))
    errors: list[str] = []
    found = {s.path for s in iter_sidecars(store, on_error=lambda p, e: errors.append(p))}
    assert found == sides and errors == ["TEST/P-2/1.2.3/1.2.6.9"]
