"""How many bytes a series ZIP may take on the wire (the stream is cut off beyond that)."""

from __future__ import annotations

from mirror.archive.port import SeriesRecord

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
