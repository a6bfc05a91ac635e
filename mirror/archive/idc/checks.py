"""What was checked, per instance and per series, and with what outcome.

Per instance (``InstanceCheck.checks``):

- ``size``: the bytes received equal the listing's Size (a short or long body fails);
- ``md5_etag``: the MD5 of the bytes received equals the object's ETag, when the ETag is a
  plain MD5 (single PUT); a multipart ETag (``<hex>-<n>``) is no MD5: ``not_applicable``;
- ``dicom_series``: the header parses as DICOM and carries the series' SeriesInstanceUID.

Per series (``SeriesFetch.checks``): ``count`` (objects under the prefix = instanceCount),
``bytes`` (their total = series_size_MB x 1e6, exact to the byte) and ``sop_unique`` (no
SOPInstanceUID twice). A check that could not be made is recorded as ``not_applicable``,
never counted as passed; one that fails raises, so a returned fetch passed all the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from mirror.archive.idc.header import (
    HEAD_BYTES,
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    fast_identity,
)
from mirror.archive.idc.listing import IdcSeries
from mirror.archive.idc.names import EtagKind
from mirror.errors import ChecksumMismatch, IncompleteSeries, WrongInstance

Outcome = Literal["passed", "failed", "not_applicable"]


@dataclass(frozen=True, slots=True)
class InstanceCheck:
    """One object of a series, fetched and checked."""

    name: str  # ``<crdc_instance_uuid>.dcm``
    size: int
    md5: str  # of the bytes received (hex)
    etag: str
    etag_kind: EtagKind
    sop_uid: str
    checks: Mapping[str, Outcome] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "size": self.size, "md5": self.md5, "etag": self.etag,
            "etag_kind": self.etag_kind, "sop_uid": self.sop_uid, "checks": dict(self.checks),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class SeriesFetch:
    """A series staged whole and verified; ``instances`` sorted by name."""

    series: IdcSeries
    instances: tuple[InstanceCheck, ...]
    checks: Mapping[str, Outcome]
    retries: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(i.size for i in self.instances)


def check_md5(name: str, md5: str, etag: str, kind: EtagKind) -> Outcome:
    """The ETag is compared only when it is a plain MD5 (single PUT, no SSE-KMS)."""
    if kind != "md5":
        return "not_applicable"
    expected = etag.strip().strip('"').lower()
    if md5 != expected:
        raise ChecksumMismatch(f"{name}: MD5 {md5} but the ETag says {expected}")
    return "passed"


def dicom_identity(stream: BinaryIO, expected_series: str) -> str:
    """Parse the header only; return the SOPInstanceUID after checking the series.

    The raw-element reader (:mod:`mirror.archive.idc.header`) answers for plain headers;
    anything else is read by pydicom, whose errors decide what is no DICOM.
    """
    fast = fast_identity(stream.read(HEAD_BYTES))
    if fast is None:
        stream.seek(0)
        series, sop = _pydicom_identity(stream)
    else:
        series, sop = fast
    if series != expected_series:
        raise WrongInstance(f"SeriesInstanceUID {series}, expected {expected_series}")
    if not sop:
        raise WrongInstance("no SOPInstanceUID")
    return sop


def _pydicom_identity(stream: BinaryIO) -> tuple[str, str]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(
            stream, stop_before_pixels=True,
            specific_tags=[SOP_INSTANCE_UID, SERIES_INSTANCE_UID],
        )  # fmt: skip
        series, sop = str(ds.get(SERIES_INSTANCE_UID).value), str(ds.get(SOP_INSTANCE_UID).value)
    except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError) as exc:
        raise WrongInstance(f"not a readable DICOM instance ({exc})") from exc
    return series, sop


def check_listing(series: IdcSeries, count: int, total: int) -> None:
    """Before any GET: the prefix must hold what the index promises."""
    if count != series.instance_count:
        raise IncompleteSeries(
            f"{series.series_uid}: {count} objects under {series.crdc_series_uuid}/, "
            f"the index says instanceCount={series.instance_count}"
        )
    check_bytes(series, total)


def check_bytes(series: IdcSeries, total: int) -> None:
    # series_size_MB is bytes / 1e6 rounded to 6 decimals: exact to the byte (±1 for floats).
    if abs(total - series.expected_bytes) > 1:
        raise IncompleteSeries(
            f"{series.series_uid}: {total} bytes, the index says {series.size_mb} MB"
        )


def check_unique(checks: list[InstanceCheck]) -> None:
    seen: dict[str, str] = {}
    for item in checks:
        if item.sop_uid in seen:
            raise WrongInstance(
                f"{item.name} repeats SOPInstanceUID {item.sop_uid} of {seen[item.sop_uid]}"
            )
        seen[item.sop_uid] = item.name


__all__ = [
    "InstanceCheck",
    "Outcome",
    "SeriesFetch",
    "check_bytes",
    "check_listing",
    "check_md5",
    "check_unique",
    "dicom_identity",
]
