"""NCI Imaging Data Commons as a source (issue #10): listing from the release's Parquet
index, anonymous reads from the public buckets, every object verified.

See :mod:`mirror.archive.idc.adapter` for how it fills the source port
(:class:`mirror.archive.port.Source`) the sync engine calls.
"""

from __future__ import annotations

from mirror.archive.idc.adapter import IdcArchive
from mirror.archive.idc.changes import ReleaseDiff, Revision, diff_releases
from mirror.archive.idc.checks import InstanceCheck, SeriesFetch
from mirror.archive.idc.listing import IdcIndex, IdcSeries
from mirror.archive.idc.wire import ENDPOINT_ENV, Endpoint, endpoint_from

__all__ = [
    "ENDPOINT_ENV",
    "Endpoint",
    "IdcArchive",
    "IdcIndex",
    "IdcSeries",
    "InstanceCheck",
    "ReleaseDiff",
    "Revision",
    "SeriesFetch",
    "diff_releases",
    "endpoint_from",
]
