"""One conformance suite that every Store adapter passes (local, memory, S3 on moto)."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import zarr

from mirror.errors import ObjectNotFound, StoreError, UsageError
from mirror.storage.port import Store


def test_protocol_and_url(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.url.split("://")[0] in {"file", "memory", "s3"}


def test_round_trip_bytes_and_file(store: Store, tmp_path) -> None:
    store.put_bytes("a/b/small.json", b'{"x": 1}')
    src = tmp_path / "big.bin"
    payload = bytes(range(256)) * 4096
    src.write_bytes(payload)
    store.put_file(str(src), "a/c/big.dcm", md5=hashlib.md5(payload).hexdigest())
    assert store.get_bytes("a/b/small.json") == b'{"x": 1}'
    with store.open_read("a/c/big.dcm") as f:
        assert f.read() == payload
    assert store.info("a/c/big.dcm").size == len(payload)
    assert store.exists("a/c/big.dcm") and not store.exists("a/c/other")


def test_overwrite_replaces_whole_object(store: Store) -> None:
    store.put_bytes("k/obj", b"first version, longer")
    store.put_bytes("k/obj", b"second")
    assert store.get_bytes("k/obj") == b"second"
    assert list(store.list("k")) == ["k/obj"]


def test_list_is_recursive_sorted_and_prefix_is_a_folder(store: Store) -> None:
    for key in ["c/2", "a/x/1", "a/x/y/2", "ab/3", "a/z"]:
        store.put_bytes(key, key.encode())
    assert sorted(store.list()) == ["a/x/1", "a/x/y/2", "a/z", "ab/3", "c/2"]
    assert sorted(store.list("a")) == ["a/x/1", "a/x/y/2", "a/z"]
    assert sorted(store.list("a/x/")) == ["a/x/1", "a/x/y/2"]
    assert list(store.list("nothing/here")) == []
    assert list(store.list("a/z")) == []  # a key is not a folder


def test_missing_keys_raise_object_not_found(store: Store) -> None:
    store.put_bytes("dir/present", b"1")
    for call in (store.get_bytes, store.info, store.open_read):
        with pytest.raises(ObjectNotFound):
            call("dir/absent")
        with pytest.raises(ObjectNotFound):
            call("dir")  # a folder is not an object


def test_delete_is_idempotent(store: Store) -> None:
    store.put_bytes("d/one", b"1")
    store.put_bytes("d/two", b"2")
    store.delete("d/one")
    store.delete("d/one")
    assert list(store.list()) == ["d/two"]


def test_delete_prefix(store: Store) -> None:
    for key in ["s/1/a", "s/1/b/c", "s/10/a", "t/a"]:
        store.put_bytes(key, b"x")
    store.delete_prefix("s/1")
    assert sorted(store.list()) == ["s/10/a", "t/a"]
    store.delete_prefix("absent")
    with pytest.raises(UsageError):
        store.delete_prefix("")


def test_move_prefix(store: Store) -> None:
    store.put_bytes("coll/p/s1/a.dcm", b"A")
    store.put_bytes("coll/p/s1/sub/b.dcm", b"B")
    store.put_bytes("coll/p/s2/c.dcm", b"C")
    store.move_prefix("coll/p/s1", "_attic/run1/coll/p/s1")
    assert sorted(store.list()) == [
        "_attic/run1/coll/p/s1/a.dcm", "_attic/run1/coll/p/s1/sub/b.dcm", "coll/p/s2/c.dcm"]
    assert store.get_bytes("_attic/run1/coll/p/s1/sub/b.dcm") == b"B"
    with pytest.raises(ObjectNotFound):
        store.move_prefix("coll/p/s1", "elsewhere")
    store.put_bytes("x/1", b"1")
    with pytest.raises(StoreError):
        store.move_prefix("x", "coll/p/s2")  # never merges into an existing folder


BAD_KEYS = ["", "/etc/passwd", "../x", "a/../../b", "a//b", "a/./b", "a\\b", "C:/x", "a/", "a\x00b",
            "x/.y.tmp.mirror-partial"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_rejected(store: Store, key: str) -> None:
    with pytest.raises(UsageError):
        store.put_bytes(key, b"x")
    with pytest.raises(UsageError):
        store.get_bytes(key)
    assert list(store.list()) == []


def test_pickled_store_sees_same_objects(store: Store) -> None:
    store.put_bytes("p/q", b"shared")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.url == store.url
    assert clone.get_bytes("p/q") == b"shared"
    clone.put_bytes("p/r", b"back")
    assert store.get_bytes("p/r") == b"back"


def test_filesystem_view_reads_same_bytes(store: Store) -> None:
    store.put_bytes("f/g.txt", b"via fsspec")
    fs, root = store.filesystem()
    assert fs.cat_file(f"{root}/f/g.txt") == b"via fsspec"


def test_zarr_store_round_trip(store: Store) -> None:
    zs = store.zarr_store("_zarr/vol.zarr")
    arr = zarr.create_array(zs, shape=(4, 6), chunks=(2, 3), dtype="int16")
    arr[:] = np.arange(24, dtype="int16").reshape(4, 6)
    keys = list(store.list("_zarr/vol.zarr"))
    assert "_zarr/vol.zarr/zarr.json" in keys and len(keys) == 5
    back = zarr.open_array(store.zarr_store("_zarr/vol.zarr", read_only=True), mode="r")
    np.testing.assert_array_equal(back[:], np.arange(24).reshape(4, 6))


def test_failed_put_leaves_nothing(store: Store, tmp_path) -> None:
    with pytest.raises(StoreError):
        store.put_file(str(tmp_path / "does-not-exist"), "z/obj")
    assert list(store.list()) == []


# --- compare-and-swap: what the destination lease is built on ------------------------------


def test_put_if_absent_creates_once(store: Store) -> None:
    from mirror.errors import PreconditionFailed

    token = store.put_if("_locks/x.lease", b"first", token=None)
    with pytest.raises(PreconditionFailed):
        store.put_if("_locks/x.lease", b"second", token=None)
    assert store.get_with_token("_locks/x.lease") == (b"first", token)


def test_put_if_token_replaces_only_the_version_read(store: Store) -> None:
    from mirror.errors import PreconditionFailed

    first = store.put_if("_locks/x.lease", b"v1", token=None)
    second = store.put_if("_locks/x.lease", b"v2", token=first)
    assert second != first
    with pytest.raises(PreconditionFailed):  # a stale token loses
        store.put_if("_locks/x.lease", b"v3", token=first)
    assert store.get_with_token("_locks/x.lease") == (b"v2", second)


def test_delete_if_spares_a_changed_object(store: Store) -> None:
    from mirror.errors import PreconditionFailed

    first = store.put_if("_locks/x.lease", b"v1", token=None)
    second = store.put_if("_locks/x.lease", b"v2", token=first)
    with pytest.raises(PreconditionFailed):
        store.delete_if("_locks/x.lease", first)
    assert store.exists("_locks/x.lease")
    store.delete_if("_locks/x.lease", second)
    assert not store.exists("_locks/x.lease")
    store.delete_if("_locks/x.lease", second)  # already gone: not an error
    with pytest.raises(ObjectNotFound):
        store.get_with_token("_locks/x.lease")


def test_put_if_on_a_vanished_object_loses(store: Store) -> None:
    from mirror.errors import PreconditionFailed

    token = store.put_if("_locks/x.lease", b"v1", token=None)
    store.delete("_locks/x.lease")
    with pytest.raises(PreconditionFailed):
        store.put_if("_locks/x.lease", b"v2", token=token)
    assert not store.exists("_locks/x.lease")
