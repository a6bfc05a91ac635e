"""Every hostile or broken download is refused, retried only when retrying can help,
and leaves the destination exactly as it was (checked from outside)."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import stat
import zipfile

import pytest
from task_consistency import assert_consistent, snapshot
from task_zips import (
    FakeArchive,
    build_zip,
    csv_text,
    instance_bytes,
    md5_rows,
    record_for,
    series_files,
)

from mirror.errors import AccessDenied, ArchiveUnavailable, RateLimited
from mirror.sync.task import SeriesTask, sync_series

UID = "1.2.840.99.1"
PATH = f"TEST/P-1/1.2.3.4/{UID}"
FILES = series_files(UID, count=3)


def _info(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    return info


def _with_entry(name: str, data: bytes = b"x", mode: int | None = None) -> bytes:
    files = dict(FILES)
    rows = [*md5_rows(files), (name, hashlib.md5(data).hexdigest())]
    return build_zip(files, extra=[(_info(name, mode), data)], csv=csv_text(rows))


def _duplicate_entry() -> bytes:
    name = next(iter(FILES))
    with pytest.warns(UserWarning, match="Duplicate name"):
        return build_zip(FILES, extra=[(_info(name), FILES[name])])


def _bzip2_entry() -> bytes:
    info = _info("00000009.dcm")
    info.compress_type = zipfile.ZIP_BZIP2
    rows = [*md5_rows(FILES), ("00000009.dcm", hashlib.md5(b"abc").hexdigest())]
    return build_zip(FILES, extra=[(info, b"abc")], csv=csv_text(rows))


def _wrong_md5() -> bytes:
    rows = md5_rows(FILES)
    rows[1] = (rows[1][0], "0" * 32)
    return build_zip(FILES, csv=csv_text(rows))


def _corrupt_stored_bytes() -> bytes:
    """A STORED entry with one byte flipped in transit: CRC-32 no longer matches."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in FILES.items():
            zf.writestr(name, data)
        zf.writestr("md5hashes.csv", csv_text(md5_rows(FILES)))
    raw = bytearray(buf.getvalue())
    at = raw.index(FILES["00000002.dcm"][:40]) + 10
    raw[at] ^= 0xFF
    return bytes(raw)


def _directory_disagrees() -> bytes:
    """The central directory (read after streaming) names a file the stream never held."""
    raw = build_zip(FILES)
    at = raw.rindex(b"00000002.dcm")
    return raw[:at] + b"00000007.dcm" + raw[at + 12 :]


# name -> (response, error_class, retryable)
CASES = {
    "zip-slip-dotdot": (_with_entry("../x.dcm"), "UnsafeArchiveEntry", False),
    "absolute-path": (_with_entry("/etc/x"), "UnsafeArchiveEntry", False),
    "drive-letter": (_with_entry("C:\\x"), "UnsafeArchiveEntry", False),
    "nested-folder": (_with_entry("sub/x.dcm"), "UnsafeArchiveEntry", False),
    "hidden-name": (_with_entry(".x.dcm"), "UnsafeArchiveEntry", False),
    "symlink": (_with_entry("00000009.dcm", b"/etc/passwd", stat.S_IFLNK | 0o777),
                "UnsafeArchiveEntry", False),
    "directory-entry": (_with_entry("00000009.dcm", b"", stat.S_IFDIR | 0o755),
                        "UnsafeArchiveEntry", False),
    "duplicate-entry": (_duplicate_entry, "UnsafeArchiveEntry", False),
    "case-duplicate": (_with_entry("00000001.DCM"), "UnsafeArchiveEntry", False),
    "bzip2-member": (_bzip2_entry(), "UnsafeArchiveEntry", False),
    "directory-disagrees": (_directory_disagrees(), "UnsafeArchiveEntry", False),
    "missing-csv-row": (build_zip(FILES, csv=csv_text(md5_rows(FILES)[:-1])),
                        "ArchiveProtocolError", False),
    "extra-csv-row": (build_zip(FILES, csv=csv_text([*md5_rows(FILES), ("00000099.dcm", "a" * 32)])),
                      "IncompleteSeries", True),
    "duplicate-csv-row": (build_zip(FILES, csv=csv_text([*md5_rows(FILES), md5_rows(FILES)[0]])),
                          "ArchiveProtocolError", False),
    "bad-csv-header": (build_zip(FILES, csv=csv_text(md5_rows(FILES), header="name,md5")),
                       "ArchiveProtocolError", False),
    "bad-csv-digest": (build_zip(FILES, csv=csv_text([("00000001.dcm", "zz"), *md5_rows(FILES)[1:]])),
                       "ArchiveProtocolError", False),
    "odd-entry-name": (build_zip(FILES, csv=b"").replace(b"md5hashes.csv", b"md5hashes.cs_"),
               "UnsafeArchiveEntry", False),
    "wrong-md5": (_wrong_md5(), "ChecksumMismatch", True),
    "crc-corruption": (_corrupt_stored_bytes(), "ChecksumMismatch", True),
    "license-only": (build_zip({}), "IncompleteSeries", True),
    "short-zip": (build_zip(dict(list(FILES.items())[:2])), "IncompleteSeries", True),
    "truncated-forever": (build_zip(FILES)[:-200], "TruncatedDownload", True),
    "not-a-zip": (b"<html>502 Bad Gateway</html>", "TruncatedDownload", True),
    "access-denied": (AccessDenied("not been granted the access"), "AccessDenied", False),
    "unavailable": (ArchiveUnavailable("503"), "ArchiveUnavailable", True),
}


@pytest.fixture
def committed_v1(store, settings):
    """The destination already holds a good v1 of another series and of this one."""
    archive = FakeArchive()
    other = "1.2.840.99.2"
    other_files = series_files(other, count=2)
    archive.queue(other, build_zip(other_files))
    record = record_for(other, other_files)
    res = sync_series(SeriesTask(record, f"TEST/P-1/1.2.3.4/{other}", 1, "run0"), archive, store, settings)
    assert res.outcome == "committed"
    v1 = series_files(UID, count=3, size=100)
    archive.queue(UID, build_zip(v1))
    res = sync_series(SeriesTask(record_for(UID, v1), PATH, 1, "run0"), archive, store, settings)
    assert res.outcome == "committed"
    return res.sidecar


# Failures happen before anything is written, through the same code on every store; S3
# (40 ms per request on moto) runs a representative subset to keep the suite fast.
S3_CASES = {"zip-slip-dotdot", "wrong-md5"}
# The remaining tests fail before the store is touched; S3 would add only latency.
NO_S3 = pytest.mark.parametrize("store", ["local", "memory"], indirect=True)
STORE_CASES = [
    (kind, case)
    for case in sorted(CASES)
    for kind in ("local", "memory", "s3")
    if kind != "s3" or case in S3_CASES
]


@pytest.mark.parametrize("store, case", STORE_CASES, indirect=["store"])
def test_rejected_and_nothing_partial(case, store, settings, sleeps, committed_v1) -> None:
    response, error_class, retryable = CASES[case]
    response = response() if callable(response) else response
    before = snapshot(store)
    archive = FakeArchive()
    archive.queue(UID, response)
    task = SeriesTask(record_for(UID, FILES), PATH, 2, "run1", previous=committed_v1)
    res = sync_series(task, archive, store, settings, sleep=sleeps.append)
    assert (res.outcome, res.error_class, res.retryable) == ("failed", error_class, retryable), res
    assert res.sidecar is None and res.message
    expected_attempts = settings.max_attempts if retryable else 1
    assert res.attempts == expected_attempts == len(archive.calls)
    assert len(sleeps) == expected_attempts - 1
    assert snapshot(store) == before
    assert_consistent(store)
    assert not [k for k in store.list() if k.startswith((".staging", "_attic"))]


@NO_S3
def test_no_csv_at_all_is_incomplete(store, settings, sleeps) -> None:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("LICENSE", b"x")
        for name, data in FILES.items():
            zf.writestr(name, data)
    archive = FakeArchive()
    archive.queue(UID, buf.getvalue())
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, settings,
                      sleep=sleeps.append)
    assert (res.outcome, res.error_class) == ("failed", "IncompleteSeries")
    assert list(store.list()) == []


@NO_S3
def test_oversize_member_refused(store, settings) -> None:
    archive = FakeArchive()
    archive.queue(UID, build_zip(FILES))
    small = dataclasses.replace(settings, max_entry_bytes=200)
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, small)
    assert (res.error_class, res.attempts) == ("UnsafeArchiveEntry", 1)
    assert list(store.list()) == []


@NO_S3
def test_absurd_stream_refused_while_streaming(store, settings) -> None:
    rng = random.Random(5)  # incompressible, so the ZIP outgrows the cap on the wire
    big = {f"0000000{i}.dcm": rng.randbytes(20_000) for i in (1, 2, 3)}
    archive = FakeArchive()
    archive.queue(UID, build_zip(big))
    tight = dataclasses.replace(settings, max_series_bytes=10_000)
    res = sync_series(SeriesTask(record_for(UID, big), PATH, 1, "r"), archive, store, tight)
    assert (res.error_class, res.attempts) == ("UnsafeArchiveEntry", 1)
    assert res.bytes_downloaded <= 11_000
    assert list(store.list()) == []


@NO_S3
def test_garbage_stream_is_refused_at_its_first_bytes(store, settings, sleeps) -> None:
    archive = FakeArchive()
    archive.queue(UID, b"\0" * 50_000)
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, settings,
                      sleep=sleeps.append)
    assert (res.error_class, res.retryable) == ("TruncatedDownload", True)
    # Streaming extraction stops at the first bad signature: one chunk per attempt.
    assert res.bytes_downloaded == archive.chunk * res.attempts


@NO_S3
def test_stream_larger_than_listing_is_incomplete(store, settings, sleeps) -> None:
    archive = FakeArchive()
    archive.queue(UID, build_zip(FILES) + b"\0" * (5 * 2**20))
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, settings,
                      sleep=sleeps.append)
    assert (res.error_class, res.retryable) == ("IncompleteSeries", True)


@NO_S3
@pytest.mark.parametrize("field, delta", [("image_count", 1), ("file_size", -1)])
def test_count_and_size_must_match_listing(field, delta, store, settings, sleeps) -> None:
    archive = FakeArchive()
    archive.queue(UID, build_zip(FILES))
    record = record_for(UID, FILES)
    record = dataclasses.replace(record, **{field: getattr(record, field) + delta})
    res = sync_series(SeriesTask(record, PATH, 1, "r"), archive, store, settings, sleep=sleeps.append)
    assert (res.outcome, res.error_class) == ("failed", "IncompleteSeries")
    assert str(getattr(record, field)) in res.message
    assert list(store.list()) == []


def _payload_with_leading_zero_md5(n_start: int) -> bytes:
    for n in range(n_start, n_start + 10_000):
        data = instance_bytes("lz", n)
        if hashlib.md5(data).hexdigest().startswith("0"):
            return data
    raise AssertionError("no payload with a leading-zero MD5 found")


def test_unpadded_and_uppercase_md5_accepted(store, settings) -> None:
    files = {"00000001.dcm": _payload_with_leading_zero_md5(0), **{
        f"0000000{i}.dcm": instance_bytes(UID, i) for i in (2, 3)}}
    rows = md5_rows(files)
    rows[0] = (rows[0][0], rows[0][1].lstrip("0"))  # CTP BigInteger.toString(16)
    rows[1] = (rows[1][0], rows[1][1].upper())
    assert len(rows[0][1]) < 32
    archive = FakeArchive()
    archive.queue(UID, build_zip(files, csv=csv_text(rows)))
    res = sync_series(SeriesTask(record_for(UID, files), PATH, 1, "r"), archive, store, settings)
    assert res.outcome == "committed", res
    assert {i.md5 for i in res.sidecar.instances} == {hashlib.md5(d).hexdigest() for d in files.values()}
    assert_consistent(store)


def test_truncated_then_good_is_retried_and_committed(store, settings, sleeps) -> None:
    good = build_zip(FILES)
    archive = FakeArchive()
    archive.queue(UID, good[: len(good) // 2], good)
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, settings,
                      sleep=sleeps.append)
    assert (res.outcome, res.attempts) == ("committed", 2)
    assert res.bytes_downloaded == len(good) // 2 + len(good)
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5
    assert_consistent(store)


@NO_S3
def test_rate_limited_honours_retry_after(store, settings, sleeps) -> None:
    archive = FakeArchive()
    archive.queue(UID, RateLimited("429", retry_after=30.0), RateLimited("429", retry_after=600.0),
                  build_zip(FILES))
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, settings,
                      sleep=sleeps.append)
    assert (res.outcome, res.attempts) == ("committed", 3)
    assert sleeps == [30.0, settings.backoff_max]


@NO_S3
@pytest.mark.parametrize(
    "refusal, refused",
    [(RateLimited("429", retry_after=2.0), True), (ArchiveUnavailable("503"), False)],
)
def test_a_series_refused_to_the_end_says_so_for_the_engine_to_requeue(
    refusal, refused, store, settings, sleeps
) -> None:
    archive = FakeArchive()
    archive.queue(UID, *[refusal] * settings.max_attempts)
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, settings,
                      sleep=sleeps.append)
    assert (res.outcome, res.retryable, res.refused) == ("failed", True, refused)
    assert res.pushback == settings.max_attempts
    assert res.retry_after == (2.0 if refused else 0.0)


@NO_S3
def test_scratch_is_cleaned_after_success_and_failure(store, settings) -> None:
    import os

    archive = FakeArchive()
    archive.queue(UID, _wrong_md5(), build_zip(FILES))
    res = sync_series(SeriesTask(record_for(UID, FILES), PATH, 1, "r"), archive, store, settings,
                      sleep=lambda s: None)
    assert res.outcome == "committed"
    assert os.listdir(settings.scratch_dir) == []
    archive.queue("1.2.840.99.7", AccessDenied("no"))
    other = record_for("1.2.840.99.7", FILES)
    sync_series(SeriesTask(other, f"TEST/P-1/1.2.3.4/{other.series_uid}", 1, "r"), archive, store, settings)
    assert os.listdir(settings.scratch_dir) == []
