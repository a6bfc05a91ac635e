"""Adapter-specific guarantees: local atomicity and errors, S3 metadata and multipart."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from mirror.errors import ObjectNotFound, StoreError, UsageError
from mirror.storage import open_store
from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore
from mirror.storage.s3 import S3Store


def test_open_store_dispatches_on_scheme(tmp_path, moto_endpoint) -> None:
    assert open_store(str(tmp_path)) == LocalStore(str(tmp_path))
    assert open_store(f"file://{tmp_path}") == LocalStore(str(tmp_path))
    assert isinstance(open_store("memory://x"), MemoryStore)
    s3 = open_store("s3://bucket/pre", endpoint_url=moto_endpoint)
    assert isinstance(s3, S3Store) and s3.url == "s3://bucket/pre"
    with pytest.raises(UsageError):
        open_store("ftp://host/x")
    with pytest.raises(UsageError):
        open_store(str(tmp_path), endpoint_url="http://x")
    with pytest.raises(UsageError):
        open_store("s3://")


def test_capabilities_are_declared() -> None:
    local = LocalStore("/tmp/unused").capabilities
    assert local.atomic_rename and local.local and not local.object_metadata
    s3 = S3Store("s3://b").capabilities
    assert s3.object_metadata and not s3.atomic_rename and not s3.local


# --- local --------------------------------------------------------------------------------


def test_local_failed_write_leaves_no_object_and_no_temp(tmp_path, monkeypatch) -> None:
    store = LocalStore(str(tmp_path / "dest"))
    store.put_bytes("a/keep", b"old")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StoreError, match="destination is full"):
        store.put_bytes("a/new", b"x" * 1000)
    with pytest.raises(StoreError):
        store.put_bytes("a/keep", b"replacement")
    monkeypatch.undo()
    assert os.listdir(tmp_path / "dest" / "a") == ["keep"]
    assert store.get_bytes("a/keep") == b"old"


def test_local_list_hides_in_flight_temp_files(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    store.put_bytes("s/x.dcm", b"1")
    (tmp_path / "s" / ".y.dcm.abc123.mirror-partial").write_bytes(b"half")
    assert list(store.list()) == ["s/x.dcm"]


def test_local_unwritable_root_is_store_error(tmp_path) -> None:
    (tmp_path / "file").write_bytes(b"")
    store = LocalStore(str(tmp_path / "file" / "mirror"))
    with pytest.raises(StoreError) as info:
        store.put_bytes("a/b", b"x")
    assert not isinstance(info.value, ObjectNotFound)
    assert list(store.list()) == []


def test_local_move_is_a_rename(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    store.put_bytes("a/b/c", b"1")
    inode = os.stat(tmp_path / "a" / "b").st_ino
    store.move_prefix("a/b", "_attic/r/a/b")
    assert os.stat(tmp_path / "_attic" / "r" / "a" / "b").st_ino == inode
    assert not (tmp_path / "a").exists()  # emptied parents are pruned


# --- S3 -----------------------------------------------------------------------------------


def test_s3_md5_metadata_recorded_and_survives_move(s3_store, s3_client, tmp_path) -> None:
    src = tmp_path / "i.dcm"
    src.write_bytes(b"dicom bytes")
    digest = hashlib.md5(b"dicom bytes").hexdigest()
    s3_store.put_file(str(src), "s/i.dcm", md5=digest)
    bucket = s3_store.url.split("/")[2]
    head = s3_client.head_object(Bucket=bucket, Key="root/s/i.dcm")
    assert head["Metadata"] == {"md5": digest}
    assert s3_store.info("s/i.dcm").md5 == digest
    s3_store.put_bytes("s/_series.json", b"{}")
    assert s3_store.info("s/_series.json").md5 == hashlib.md5(b"{}").hexdigest()
    s3_store.move_prefix("s", "_attic/r/s")
    assert s3_store.info("_attic/r/s/i.dcm").md5 == digest


def test_s3_info_without_metadata_is_none(s3_store, s3_client) -> None:
    bucket = s3_store.url.split("/")[2]
    s3_client.put_object(Bucket=bucket, Key="root/foreign", Body=b"abc")
    assert s3_store.info("foreign").md5 is None


def test_s3_failed_multipart_upload_leaves_nothing(s3_store, s3_client, tmp_path, monkeypatch) -> None:
    import s3fs.core

    src = tmp_path / "big.dcm"
    src.write_bytes(os.urandom(12 * 2**20))
    monkeypatch.setattr(s3fs.core, "calculate_chunksize", lambda size, chunksize=None: 5 * 2**20)
    fs = s3_store.fs
    real = fs._call_s3

    async def flaky(method, *args, **kwargs):
        if method == "upload_part" and kwargs.get("PartNumber") == 2:
            raise OSError(errno.ECONNRESET, "connection reset by peer")
        return await real(method, *args, **kwargs)

    monkeypatch.setattr(fs, "_call_s3", flaky)
    with pytest.raises(StoreError):
        s3_store.put_file(str(src), "s/big.dcm", md5="0" * 32)
    monkeypatch.undo()
    assert list(s3_store.list()) == []
    bucket = s3_store.url.split("/")[2]
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    s3_store.put_file(str(src), "s/big.dcm", md5="1" * 32)  # a retry then succeeds
    assert s3_store.info("s/big.dcm").size == 12 * 2**20


def test_s3_missing_bucket_is_store_error(moto_endpoint, s3_options) -> None:
    store = S3Store("s3://no-such-bucket/x", endpoint_url=moto_endpoint, storage_options=s3_options)
    with pytest.raises(StoreError):
        store.put_bytes("a", b"x")


def test_s3_bucket_required() -> None:
    with pytest.raises(UsageError):
        S3Store("s3:///x")


def test_local_objects_are_world_readable(tmp_path) -> None:
    store = LocalStore(str(tmp_path))
    store.put_bytes("a/b", b"x")
    assert (os.stat(tmp_path / "a" / "b").st_mode & 0o777) == 0o644


def test_ensure_parent_survives_a_racing_prune(tmp_path) -> None:
    from mirror.storage.local import ensure_parent

    target = tmp_path / "p" / "q"
    calls: list[int] = []

    def create() -> str:
        calls.append(1)
        if len(calls) == 1:  # a sibling task pruned the empty folder right after makedirs
            os.rmdir(target)
            raise FileNotFoundError(target)
        (target / "f").write_bytes(b"1")
        return "made"

    assert ensure_parent(str(target), create) == "made"
    assert len(calls) == 2 and (target / "f").read_bytes() == b"1"


def test_ensure_parent_survives_a_prune_inside_makedirs(tmp_path, monkeypatch) -> None:
    from mirror.storage import publish

    target = tmp_path / "p" / "q"
    real_makedirs, raced = os.makedirs, []

    def makedirs(path, exist_ok=False):  # type: ignore[no-untyped-def]
        if not raced:  # mkdir met the folder, a sibling pruned it before the isdir check
            raced.append(path)
            raise FileExistsError(17, "File exists", path)
        real_makedirs(path, exist_ok=exist_ok)

    monkeypatch.setattr(publish.os, "makedirs", makedirs)
    assert publish.ensure_parent(str(target), lambda: (target / "f").write_bytes(b"1")) == 1
    assert raced == [str(target)] and (target / "f").read_bytes() == b"1"


PUT_PEAK_CHILD = r"""
import resource, sys
from mirror.storage.s3 import S3Store
url, endpoint, path, md5 = sys.argv[1:5]
store = S3Store(url, endpoint_url=endpoint, storage_options={
    "key": "testing", "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}})
store.exists("warm-up")  # open the client before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
store.put_file(path, "big/1.dcm", md5=md5)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_s3_put_of_a_large_file_holds_bounded_parts_not_the_file(s3_store, s3_client, moto_endpoint, tmp_path) -> None:
    """96 MiB went up as one in-memory PUT before (s3fs holds whole files under 100 MiB,
    and 10 x 50 MiB parts above): the peak grew with the file. Now it is bounded by the
    part buffers, and the object still carries its MD5 and round-trips byte for byte."""
    import subprocess
    import sys

    from mirror.storage.s3 import PART_BYTES, PART_CONCURRENCY

    src = tmp_path / "big.dcm"
    block = os.urandom(2**20)
    with open(src, "wb") as f:
        for _ in range(96):
            f.write(block)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    out = subprocess.run([sys.executable, "-c", PUT_PEAK_CHILD, s3_store.url, moto_endpoint, str(src), md5],
                         capture_output=True, text=True, check=True, timeout=300)
    growth = int(out.stdout.strip())
    assert growth < 2 * PART_BYTES * PART_CONCURRENCY < 96 * 2**20, growth
    info = s3_store.info("big/1.dcm")
    assert info.size == 96 * 2**20 and info.md5 == md5
    bucket, _, prefix = s3_store.url.removeprefix("s3://").partition("/")
    etag = s3_client.head_object(Bucket=bucket, Key=f"{prefix}/big/1.dcm")["ETag"]
    assert etag.strip('"').endswith(f"-{96 * 2**20 // PART_BYTES}")  # multipart, bounded parts
    assert hashlib.md5(s3_store.get_bytes("big/1.dcm")).hexdigest() == md5
