"""The rules a series ZIP must satisfy, shared by the streaming extractor (``unzip.py``).

The archive's ZIP (nbia-api.md §5.11/§5.12) holds an optional ``LICENSE`` first, the
instance files (``00000001.dcm`` or ``1-001.dcm`` …), and ``md5hashes.csv`` last with a
``Filename,MD5Hash`` row per instance in arbitrary order. Nothing is trusted: entry names,
declared sizes, modes and compression, and the CSV are all checked.
"""

from __future__ import annotations

import csv
import io
import re
import stat
import zipfile
from collections.abc import Sequence

from mirror.archive.port import SeriesRecord, StagedSeries
from mirror.errors import ArchiveProtocolError, IncompleteSeries, IntegrityError, UnsafeArchiveEntry
from mirror.layout import LICENSE, InstanceEntry, normalize_md5

LICENSE_NAME = LICENSE
CSV_NAME = "md5hashes.csv"
_CSV_HEADER = ["Filename", "MD5Hash"]
MAX_CSV_BYTES = 64 * 2**20
MAX_LICENSE_BYTES = 2**20
# Upstream names are ``%08d`` + the stored extension or ``<acq>-<inst>.dcm``.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}(\.[A-Za-z0-9]{1,10})?")
# DEFLATE cannot exceed ~1032:1, so this only trips on exotic or forged headers; the
# budget that really bounds extraction is the listing's FileSize.
_MAX_RATIO = 1100
_CHUNK = 1 << 20


# Verified instance files written to ``directory`` (plus ``LICENSE`` if shipped).
ExtractedSeries = StagedSeries


def check_name(name: str) -> None:
    """A plain file name: no folders, no dot files, no drive letters, nothing exotic."""
    if not _NAME_RE.fullmatch(name) and name not in (LICENSE_NAME, CSV_NAME):
        raise UnsafeArchiveEntry(f"unsafe ZIP entry name {name[:120]!r}")


def check_entry(info: zipfile.ZipInfo, max_entry_bytes: int) -> None:
    """Reject anything but a plain, modestly sized, safely named file entry."""
    name = info.filename
    check_name(name)
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


def parse_md5_csv(raw: bytes) -> dict[str, str]:
    """``Filename,MD5Hash`` rows → {name: normalised md5}; exactly one row per name."""
    return {name: normalize_md5(stored) for name, stored in stored_md5s(raw).items()}


def stored_md5s(raw: bytes) -> dict[str, str]:
    """``Filename,MD5Hash`` rows → {name: digest as the archive stores it}, each checked
    to be hex; exactly one row per name. The archive's series hash is over these."""
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
            normalize_md5(digest)
        except IntegrityError as exc:
            raise ArchiveProtocolError(f"{CSV_NAME}: {name!r}: {exc}") from exc
        table[name] = digest.strip()
    return table


def check_listing(
    instances: Sequence[InstanceEntry], expected: dict[str, str], record: SeriesRecord
) -> None:
    """The CSV names exactly the instances; count and bytes agree with the listing."""
    names = {i.name for i in instances}
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
    total = sum(i.size for i in instances)
    if record.file_size and total != record.file_size:
        raise IncompleteSeries(
            f"series {record.series_uid}: {total} bytes, listing says {record.file_size}"
        )
