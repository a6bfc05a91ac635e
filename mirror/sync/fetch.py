"""Stream one series ZIP from the archive into a local scratch file, bounded in size."""

from __future__ import annotations

import logging
import os
from typing import BinaryIO

from mirror.archive.port import Archive, SeriesRecord
from mirror.errors import IncompleteSeries, StoreError, UnsafeArchiveEntry

log = logging.getLogger(__name__)

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


def download(archive: Archive, record: SeriesRecord, dest: str, max_series_bytes: int) -> int:
    """Write the series ZIP to ``dest`` (truncating it); return the bytes received.

    More than ``max_series_bytes`` is hostile (UnsafeArchiveEntry, not retried); more than
    the listing's FileSize allows means the listing is stale (IncompleteSeries, retried).
    """
    limit = stream_limit(record, max_series_bytes)
    received = 0
    try:
        out = open(dest, "wb")  # noqa: SIM115 - closed in finally, errors mapped below
    except OSError as exc:
        raise StoreError(f"scratch file {dest}: {exc}") from exc
    try:
        with archive.stream_series(record.series_uid) as chunks:
            for chunk in chunks:
                received += len(chunk)
                _check_size(record, received, limit, max_series_bytes)
                _write(out, chunk, dest)
    finally:
        out.close()
    log.debug("series %s: %d bytes downloaded", record.series_uid, received)
    return received


def _check_size(record: SeriesRecord, received: int, limit: int, max_series_bytes: int) -> None:
    if received > max_series_bytes:
        raise UnsafeArchiveEntry(
            f"series {record.series_uid}: stream exceeds max_series_bytes={max_series_bytes}"
        )
    if received > limit:
        raise IncompleteSeries(
            f"series {record.series_uid}: stream exceeds what FileSize={record.file_size} allows"
        )


def _write(out: BinaryIO, chunk: bytes, dest: str) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        raise StoreError(f"scratch file {dest}: {exc}") from exc


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
