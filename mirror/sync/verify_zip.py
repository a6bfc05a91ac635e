"""Open a downloaded series ZIP as hostile input, check it, extract it while hashing.

The archive's ZIP (nbia-api.md §5.11/§5.12) holds an optional ``LICENSE`` first, the
instance files (``00000001.dcm`` or ``1-001.dcm`` …), and ``md5hashes.csv`` last with a
``Filename,MD5Hash`` row per instance in arbitrary order. Nothing is trusted: entry names,
declared sizes, compression and the CSV are all checked before a byte is written, and each
instance's MD5 is computed in the same pass that writes it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass

from mirror.archive.port import SeriesRecord
from mirror.errors import (
    ArchiveProtocolError,
    ChecksumMismatch,
    IncompleteSeries,
    IntegrityError,
    TruncatedDownload,
    UnsafeArchiveEntry,
)
from mirror.layout import InstanceEntry, normalize_md5

LICENSE_NAME = "LICENSE"
CSV_NAME = "md5hashes.csv"
_CSV_HEADER = ["Filename", "MD5Hash"]
_MAX_CSV_BYTES = 64 * 2**20
_MAX_LICENSE_BYTES = 2**20
# Upstream names are ``%08d`` + the stored extension or ``<acq>-<inst>.dcm``.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}(\.[A-Za-z0-9]{1,10})?")
# DEFLATE cannot exceed ~1032:1, so this only trips on exotic or forged headers; the
# budget that really bounds extraction is the listing's FileSize (checked up front).
_MAX_RATIO = 1100
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ExtractedSeries:
    """Verified instance files written to ``directory`` (plus ``LICENSE`` if shipped)."""

    directory: str
    instances: tuple[InstanceEntry, ...]
    has_license: bool


def extract_verified(
    zip_path: str, dest_dir: str, record: SeriesRecord, *, max_entry_bytes: int
) -> ExtractedSeries:
    """Check ``zip_path`` against ``record`` and extract it into ``dest_dir`` (must exist)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = _classify(zf.infolist(), max_entry_bytes)
            expected = _read_csv(zf, members)
            _check_listing(members.instances, expected, record)
            entries = tuple(_extract_one(zf, i, expected, dest_dir) for i in members.instances)
            if members.license is not None:
                _extract_license(zf, members.license, dest_dir)
    except zipfile.BadZipFile as exc:
        raise TruncatedDownload(f"series {record.series_uid}: not a complete ZIP ({exc})") from exc
    except EOFError as exc:
        raise TruncatedDownload(f"series {record.series_uid}: ZIP ends early") from exc
    return ExtractedSeries(dest_dir, entries, members.license is not None)


@dataclass(frozen=True, slots=True)
class _Members:
    instances: tuple[zipfile.ZipInfo, ...]
    license: zipfile.ZipInfo | None
    csv: zipfile.ZipInfo | None


def _classify(infos: list[zipfile.ZipInfo], max_entry_bytes: int) -> _Members:
    seen: set[str] = set()
    instances: list[zipfile.ZipInfo] = []
    special: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        check_entry(info, max_entry_bytes)
        # Case-folded: two names differing only in case collide on macOS/Windows disks.
        folded = info.filename.casefold()
        if folded in seen:
            raise UnsafeArchiveEntry(f"duplicate ZIP entry {info.filename!r}")
        seen.add(folded)
        if info.filename in (LICENSE_NAME, CSV_NAME):
            special[info.filename] = info
        else:
            instances.append(info)
    return _Members(tuple(instances), special.get(LICENSE_NAME), special.get(CSV_NAME))


def check_entry(info: zipfile.ZipInfo, max_entry_bytes: int) -> None:
    """Reject anything but a plain, modestly sized, safely named file entry."""
    name = info.filename
    if not _NAME_RE.fullmatch(name) and name not in (LICENSE_NAME, CSV_NAME):
        raise UnsafeArchiveEntry(f"unsafe ZIP entry name {name[:120]!r}")
    mode = info.external_attr >> 16
    # Java's ZipOutputStream leaves the mode 0; only a set, non-regular type is refused.
    if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise UnsafeArchiveEntry(f"ZIP entry {name!r} is not a regular file (mode {mode:o})")
    if info.flag_bits & 0x1:
        raise UnsafeArchiveEntry(f"ZIP entry {name!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise UnsafeArchiveEntry(f"ZIP entry {name!r} uses compression {info.compress_type}")
    if info.file_size > max_entry_bytes:
        raise UnsafeArchiveEntry(f"ZIP entry {name!r} declares {info.file_size} bytes")
    if info.file_size > _CHUNK and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
        raise UnsafeArchiveEntry(f"ZIP entry {name!r} has a compression-bomb ratio")


def _read_csv(zf: zipfile.ZipFile, members: _Members) -> dict[str, str]:
    if members.csv is None:
        # A server-side failure mid-stream still closes the ZIP properly, but without
        # the CSV: that is a short download, worth another try.
        raise IncompleteSeries(f"ZIP has no {CSV_NAME} ({len(members.instances)} entries)")
    if members.csv.file_size > _MAX_CSV_BYTES:
        raise UnsafeArchiveEntry(f"{CSV_NAME} declares {members.csv.file_size} bytes")
    return parse_md5_csv(_read_small(zf, members.csv))


def parse_md5_csv(raw: bytes) -> dict[str, str]:
    """``Filename,MD5Hash`` rows → {name: normalised md5}; exactly one row per name."""
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ArchiveProtocolError(f"unreadable {CSV_NAME}: {exc}") from exc
    if not rows or [c.strip() for c in rows[0]] != _CSV_HEADER:
        raise ArchiveProtocolError(f"{CSV_NAME} header is {rows[0] if rows else []!r}")
    table: dict[str, str] = {}
    for row in rows[1:]:
        if not row:
            continue
        if len(row) != 2:
            raise ArchiveProtocolError(f"{CSV_NAME}: malformed row {row[:3]!r}")
        name, digest = row[0].strip(), row[1]
        if name in table:
            raise ArchiveProtocolError(f"{CSV_NAME}: {name!r} listed twice")
        try:
            table[name] = normalize_md5(digest)
        except IntegrityError as exc:
            raise ArchiveProtocolError(f"{CSV_NAME}: {name!r}: {exc}") from exc
    return table


def _check_listing(
    instances: tuple[zipfile.ZipInfo, ...], expected: dict[str, str], record: SeriesRecord
) -> None:
    names = {i.filename for i in instances}
    unlisted = sorted(names - expected.keys())
    if unlisted:
        raise ArchiveProtocolError(f"{CSV_NAME} has no row for {unlisted[:3]}")
    absent = sorted(expected.keys() - names)
    if absent:
        raise IncompleteSeries(f"{CSV_NAME} lists {len(absent)} files the ZIP lacks: {absent[:3]}")
    if not instances:
        raise IncompleteSeries(f"series {record.series_uid}: ZIP holds no images")
    if record.image_count and len(instances) != record.image_count:
        raise IncompleteSeries(
            f"series {record.series_uid}: {len(instances)} images, listing says "
            f"{record.image_count}"
        )
    total = sum(i.file_size for i in instances)
    if record.file_size and total != record.file_size:
        raise IncompleteSeries(
            f"series {record.series_uid}: {total} bytes, listing says {record.file_size}"
        )


def _extract_one(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, expected: dict[str, str], dest_dir: str
) -> InstanceEntry:
    digest = hashlib.md5()
    size = 0
    target = os.path.join(dest_dir, info.filename)
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                digest.update(chunk)
                out.write(chunk)
    except zlib.error as exc:
        raise TruncatedDownload(f"ZIP entry {info.filename!r} does not inflate: {exc}") from exc
    except zipfile.BadZipFile as exc:
        # zipfile reports a CRC-32 mismatch this way: the bytes changed in transit.
        raise ChecksumMismatch(f"ZIP entry {info.filename!r}: {exc}") from exc
    actual = digest.hexdigest()
    if actual != expected[info.filename]:
        raise ChecksumMismatch(
            f"{info.filename}: MD5 {actual}, archive says {expected[info.filename]}"
        )
    return InstanceEntry(name=info.filename, md5=actual, size=size)


def _extract_license(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest_dir: str) -> None:
    if info.file_size > _MAX_LICENSE_BYTES:
        raise UnsafeArchiveEntry(f"{LICENSE_NAME} declares {info.file_size} bytes")
    with open(os.path.join(dest_dir, LICENSE_NAME), "xb") as out:
        out.write(_read_small(zf, info))


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with zf.open(info) as src:
            return src.read(info.file_size + 1)
    except (zlib.error, zipfile.BadZipFile) as exc:
        raise TruncatedDownload(f"ZIP entry {info.filename!r} is corrupt: {exc}") from exc
