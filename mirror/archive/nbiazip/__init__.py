"""NBIA's series ZIP (``md5hashes.csv`` inside), extracted and verified behind the source port.

:class:`ZipSeriesSource` gives any archive that streams NBIA's ZIP (``stream_series``) the
port's :meth:`~mirror.archive.port.Source.fetch_series`: the ZIP is unpacked as it arrives
into the caller's staging folder, each instance hashed while written and compared with the
CSV, the count and size compared with the listing (:mod:`.unzip`, :mod:`.verify`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

from mirror.archive.nbiazip.unzip import extract_stream
from mirror.archive.port import FetchLimits, FetchMeter, SeriesRecord, StagedSeries


class ZipSeriesSource:
    """Mixin: ``fetch_series`` on top of ``stream_series`` (NBIA and anything NBIA-shaped)."""

    def stream_series(self, series_uid: str) -> AbstractContextManager[Iterator[bytes]]:
        raise NotImplementedError

    def fetch_series(
        self, record: SeriesRecord, dest: str, limits: FetchLimits, meter: FetchMeter
    ) -> StagedSeries:
        with self.stream_series(record.series_uid) as chunks:
            return extract_stream(
                chunks,
                dest,
                record,
                meter,
                max_entry_bytes=limits.max_entry_bytes,
                max_series_bytes=limits.max_series_bytes,
            )

    def listed_md5s(self, record: SeriesRecord) -> list[str] | None:
        """NBIA lists no per-instance digests without downloading the series."""
        return None


__all__ = ["ZipSeriesSource"]
