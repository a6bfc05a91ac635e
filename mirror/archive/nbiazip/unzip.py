"""Extract a series ZIP in one pass, straight from the HTTP body into a staging folder.

The archive streams the ZIP with no Content-Length and no Range support (nbia-api.md §5.11),
entries DEFLATEd with data descriptors by Java's ``ZipOutputStream``. Writing it to scratch
and reading it back cost a full extra write and read of every byte, so instead
:func:`stream_unzip` walks the local headers as the bytes arrive and each instance is hashed
while it is written into the (invisible) staging folder.

Nothing is trusted. Names are checked before a file is created, sizes are bounded while
streaming, and once the body has ended the central directory (which arrives last and alone
holds file modes) is read back from a tail window sized by the listing's ImageCount and
must agree with what was streamed: same names in the same order, same sizes, plain files,
stored or DEFLATE.
Only then are the MD5s compared with ``md5hashes.csv`` and the count and size with the listing.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import stream_unzip as su

from mirror.archive.nbiazip import verify as vz
from mirror.archive.port import FetchMeter, SeriesRecord
from mirror.errors import (
    ArchiveProtocolError,
    ChecksumMismatch,
    IncompleteSeries,
    TruncatedDownload,
    UnsafeArchiveEntry,
)
from mirror.layout import InstanceEntry, hierarchy_md5, normalize_md5

# A ZIP of N files of total size S is at most S plus headers, descriptors and DEFLATE's
# worst-case expansion of incompressible data (~0.03 %): 1 % and 64 KiB/entry is ample.
_SLACK_FRACTION = 0.01
_SLACK_PER_ENTRY = 64 * 1024
_SLACK_FIXED = 4 * 2**20


def stream_limit(record: SeriesRecord, max_series_bytes: int) -> int:
    """How many bytes a ZIP of ``record`` may plausibly take on the wire."""
    if not record.file_size:
        return max_series_bytes
    plausible = (
        record.file_size * (1 + _SLACK_FRACTION)
        + _SLACK_PER_ENTRY * max(record.image_count, 1)
        + _SLACK_FIXED
    )
    return min(max_series_bytes, int(plausible))


# A central-directory entry is 46 bytes plus a name of at most ~110 and small extras, so
# 1 KiB per entry (instances, LICENSE, CSV) is ample: a 4,000-instance series keeps ~4 MiB
# of tail rather than a fixed 16 MiB copied and held for every download in flight.
_TAIL_PER_ENTRY = 1024
_TAIL_FIXED = 64 * 1024
_TAIL_MAX = 16 * 2**20


def tail_bytes(record: SeriesRecord) -> int:
    """How much of the stream's end to keep for reading back the central directory."""
    if not record.image_count:
        return _TAIL_MAX
    return min(_TAIL_MAX, _TAIL_FIXED + _TAIL_PER_ENTRY * (record.image_count + 2))


# Bytes received so far; kept by the caller so failed attempts still count.
StreamMeter = FetchMeter


@dataclass(slots=True)
class _Tail:
    """The last ``keep`` or more bytes of the stream, as the chunks that carried them."""

    keep: int
    chunks: collections.deque[bytes] = field(default_factory=collections.deque)
    size: int = 0

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.chunks[0]) >= self.keep:
            self.size -= len(self.chunks.popleft())

    def directory(self) -> list[zipfile.ZipInfo]:
        # zipfile locates the central directory relative to the end-of-directory record, so
        # a buffer holding only the tail of the stream reads like the whole ZIP would.
        try:
            with zipfile.ZipFile(io.BytesIO(b"".join(self.chunks))) as zf:
                return zf.infolist()
        except (zipfile.BadZipFile, ValueError) as exc:
            raise TruncatedDownload(f"ZIP central directory unreadable: {exc}") from exc


@dataclass(slots=True)
class _Streamed:
    """What the local headers and bodies showed, in stream order."""

    folded: set[str] = field(default_factory=set)
    entries: dict[str, InstanceEntry] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # every entry, in stream order
    csv: bytes | None = None
    has_license: bool = False
    instance_bytes: int = 0
    overflow: str = ""  # the first entry that ran past the listing's FileSize


def extract_stream(
    chunks: Iterable[bytes],
    dest_dir: str,
    record: SeriesRecord,
    meter: StreamMeter,
    *,
    max_entry_bytes: int,
    max_series_bytes: int,
) -> vz.ExtractedSeries:
    """Extract the ZIP carried by ``chunks`` into ``dest_dir`` (must exist) and verify it.

    More than ``max_series_bytes`` on the wire is hostile (UnsafeArchiveEntry, not retried);
    more than the listing's FileSize allows means the listing is stale (IncompleteSeries).
    """
    tail = _Tail(tail_bytes(record))
    limit = stream_limit(record, max_series_bytes)
    body = _bounded(chunks, record, meter, tail, max_series_bytes=max_series_bytes, limit=limit)
    streamed = _Streamed()
    with _unzip_errors(record.series_uid):
        for raw_name, _size, data in su.stream_unzip(body, allowed_encryption_mechanisms=()):
            _take(raw_name, data, streamed, dest_dir, record, max_entry_bytes=max_entry_bytes)
    _check_directory(tail.directory(), streamed, max_entry_bytes)
    return _verified(streamed, dest_dir, record)


def _bounded(
    chunks: Iterable[bytes],
    record: SeriesRecord,
    meter: StreamMeter,
    tail: _Tail,
    *,
    max_series_bytes: int,
    limit: int,
) -> Iterator[bytes]:
    """The body, refused as soon as it outgrows what the listing or the settings allow."""
    for chunk in chunks:
        meter.received += len(chunk)
        if meter.received > max_series_bytes:
            raise UnsafeArchiveEntry(
                f"series {record.series_uid}: stream exceeds max_series_bytes={max_series_bytes}"
            )
        if meter.received > limit:
            raise IncompleteSeries(
                f"series {record.series_uid}: stream exceeds what FileSize={record.file_size} "
                "allows"
            )
        tail.add(chunk)
        yield chunk


def _take(
    raw_name: bytes,
    data: Iterator[bytes],
    streamed: _Streamed,
    dest_dir: str,
    record: SeriesRecord,
    *,
    max_entry_bytes: int,
) -> None:
    name = _checked_name(raw_name, streamed)
    if name == vz.CSV_NAME:
        streamed.csv = _read_capped(name, data, vz.MAX_CSV_BYTES)
        streamed.sizes[name] = len(streamed.csv)
        return
    if name == vz.LICENSE_NAME:
        license_entry = _write_entry(name, data, dest_dir, vz.MAX_LICENSE_BYTES, None)
        streamed.sizes[name] = license_entry.size
        streamed.has_license = True
        return
    budget = record.file_size - streamed.instance_bytes if record.file_size else None
    entry = _write_entry(name, data, dest_dir, max_entry_bytes, budget)
    streamed.sizes[name] = entry.size
    streamed.instance_bytes += entry.size
    if budget is not None and entry.size > budget:
        streamed.overflow = streamed.overflow or name
        return
    streamed.entries[name] = entry


def _checked_name(raw_name: bytes, streamed: _Streamed) -> str:
    try:
        name = raw_name.decode("ascii")
    except UnicodeDecodeError:
        raise UnsafeArchiveEntry(f"non-ASCII ZIP entry name {raw_name[:120]!r}") from None
    vz.check_name(name)
    # Case-folded: two names differing only in case collide on macOS/Windows disks.
    if name.casefold() in streamed.folded:
        raise UnsafeArchiveEntry(f"duplicate ZIP entry {name!r}")
    streamed.folded.add(name.casefold())
    return name


def _read_capped(name: str, data: Iterator[bytes], cap: int) -> bytes:
    buf = bytearray()
    for chunk in data:
        buf += chunk
        if len(buf) > cap:
            raise UnsafeArchiveEntry(f"{name} is larger than {cap} bytes")
    return bytes(buf)


def _write_entry(
    name: str, data: Iterator[bytes], dest_dir: str, cap: int, budget: int | None
) -> InstanceEntry:
    """Write one member into ``dest_dir`` while hashing it (stream_unzip checks its CRC-32).

    Bytes past ``budget`` (what the listing's FileSize leaves) are counted but not written;
    the caller reports the overflow only after the central directory had its say, so a
    hostile entry is called hostile rather than a stale listing.
    """
    digest = hashlib.md5()
    size = 0
    with open(os.path.join(dest_dir, name), "xb") as out:
        for chunk in data:
            size += len(chunk)
            if size > cap:
                raise UnsafeArchiveEntry(f"ZIP entry {name!r} is larger than {cap} bytes")
            if budget is not None and size > budget:
                continue
            digest.update(chunk)
            out.write(chunk)
    return InstanceEntry(name=name, md5=digest.hexdigest(), size=size)


@contextlib.contextmanager
def _unzip_errors(series_uid: str) -> Iterator[None]:
    """stream_unzip's exceptions, mapped onto the error tree (and so onto retry rules)."""
    try:
        yield
    except su.TruncatedDataError as exc:
        raise TruncatedDownload(f"series {series_uid}: ZIP ends early") from exc
    except su.UnexpectedSignatureError as exc:
        # An HTML error page or garbage where a ZIP should be: a broken response.
        raise TruncatedDownload(f"series {series_uid}: not a ZIP stream ({exc!r})") from exc
    except (su.CRC32IntegrityError, su.SizeIntegrityError) as exc:
        raise ChecksumMismatch(
            f"series {series_uid}: a ZIP entry changed in transit ({type(exc).__name__})"
        ) from exc
    except (su.UncompressError, su.TruncatedExtraError, su.MissingExtraError) as exc:
        raise TruncatedDownload(f"series {series_uid}: corrupt ZIP data ({exc!r})") from exc
    except su.NotStreamUnzippable as exc:
        # A STORED entry whose size only follows its data: Java's ZipOutputStream never
        # writes that (STORED entries carry their size up front), so this is not NBIA.
        raise ArchiveProtocolError(
            f"series {series_uid}: STORED entry without a size in its header ({exc!r})"
        ) from exc
    except (su.UnsupportedFeatureError, su.PasswordError, su.UnzipValueError) as exc:
        raise UnsafeArchiveEntry(
            f"series {series_uid}: unsupported ZIP feature ({type(exc).__name__})"
        ) from exc


def _check_directory(
    infos: list[zipfile.ZipInfo], streamed: _Streamed, max_entry_bytes: int
) -> None:
    """The central directory must describe exactly the plain files that were streamed."""
    for info in infos:
        vz.check_entry(info, max_entry_bytes)
    listed = [info.filename for info in infos]
    held = list(streamed.sizes)
    if listed != held:
        raise UnsafeArchiveEntry(
            f"ZIP central directory lists {listed[:3]}..., the stream held {held[:3]}..."
        )
    for info in infos:
        if info.file_size != streamed.sizes.get(info.filename):
            raise UnsafeArchiveEntry(
                f"ZIP entry {info.filename!r}: central directory says {info.file_size} bytes"
            )


def _verified(streamed: _Streamed, dest_dir: str, record: SeriesRecord) -> vz.ExtractedSeries:
    if streamed.overflow:
        raise IncompleteSeries(
            f"series {record.series_uid}: {streamed.overflow} runs past FileSize="
            f"{record.file_size} (the listing says less than the ZIP holds)"
        )
    if streamed.csv is None:
        # A server-side failure mid-stream still closes the ZIP properly, but without
        # the CSV: that is a short download, worth another try.
        raise IncompleteSeries(f"ZIP has no {vz.CSV_NAME} ({len(streamed.entries)} entries)")
    stored = vz.stored_md5s(streamed.csv)
    expected = {name: normalize_md5(digest) for name, digest in stored.items()}
    entries = tuple(streamed.entries.values())
    vz.check_listing(entries, expected, record)
    for entry in entries:
        if entry.md5 != expected[entry.name]:
            raise ChecksumMismatch(
                f"{entry.name}: MD5 {entry.md5}, archive says {expected[entry.name]}"
            )
    return vz.ExtractedSeries(
        dest_dir,
        entries,
        extra_files=(vz.LICENSE_NAME,) if streamed.has_license else (),
        md5_hierarchy=hierarchy_md5(stored.values()),
        source="nbia",
    )
