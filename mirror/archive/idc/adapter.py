"""``IdcArchive``: NCI Imaging Data Commons as a source, in the Archive port's shape.

Listing comes from the release's Parquet index (:mod:`mirror.archive.idc.listing`), objects
from the public buckets read anonymously (:mod:`mirror.archive.idc.wire`), and a series is
fetched instance by instance into a staging folder (:mod:`mirror.archive.idc.fetch`).

How it fills the source port
----------------------------
Listing: collections, patients, studies and series map onto ``idc_index`` rows
(``image_count`` = ``instanceCount``, ``file_size`` = ``series_size_MB`` x 1e6,
``date_released`` = the release date of ``series_revised_idc_version``,
``version_token`` = ``crdc_series_uuid``, ``location`` = ``aws_bucket``).
:meth:`IdcArchive.fetch_series` lists the series' uuid prefix and GETs every object into the
engine's staging folder, checking each (size, MD5 vs a plain-MD5 ETag, DICOM
SeriesInstanceUID) and the series (count, bytes, unique SOPInstanceUIDs); the sidecar
records which check each instance passed. It needs no index on the worker: the record
carries the uuid and bucket. ``stream_series`` (NBIA's ZIP) and ``sop_instance_uids``
raise: IDC has neither.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from mirror.archive.idc.checks import SeriesFetch
from mirror.archive.idc.fetch import fetch_many, fetch_series, listed_digests
from mirror.archive.idc.listing import IdcIndex, IdcSeries, locate
from mirror.archive.idc.names import check_series_uuid, collection_id
from mirror.archive.idc.wire import Endpoint, endpoint_from
from mirror.archive.port import (
    CollectionRecord,
    FetchLimits,
    FetchMeter,
    PatientRecord,
    SeriesRecord,
    StagedSeries,
    StudyRecord,
)
from mirror.errors import ArchiveProtocolError, MirrorError, UnsafeArchiveEntry
from mirror.layout import InstanceEntry

_PUBLIC = {"aws": "https://s3.amazonaws.com", "gcs": "https://storage.googleapis.com"}


class IdcArchive:
    """IDC's current release. ``index``: a DIR or URL (``--idc-index``), default the installed
    ``idc-index-data``; ``endpoint``: any S3-compatible URL (``--idc-endpoint`` or
    ``$MIRROR_IDC_ENDPOINT``), else GCS when ``gcs``, else AWS. Picklable: it holds settings;
    fetches run on the process's shared loop and connection pool (:mod:`.shared`)."""

    def __init__(
        self,
        index: str | None = None,
        *,
        endpoint: str | None = None,
        gcs: bool = False,
        include_analysis_results: bool = False,
        max_in_flight: int = 128,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self.endpoint: Endpoint = endpoint_from(endpoint, gcs=gcs, env=dict(environ))
        self.max_in_flight = max_in_flight
        self._index_source = index
        self._include_analysis_results = include_analysis_results
        self._index: IdcIndex | None = None

    @property
    def index(self) -> IdcIndex:
        """The release's index, located on first use (a URL is downloaded then, not before)."""
        if self._index is None:
            files = locate(self._index_source)
            self._index = IdcIndex(files, include_analysis_results=self._include_analysis_results)
        return self._index

    @property
    def url(self) -> str:
        return self.endpoint.url or _PUBLIC[self.endpoint.provider]

    @property
    def release(self) -> str:
        return self.index.release

    def __repr__(self) -> str:
        # No I/O here: the index may be a URL not downloaded yet.
        return f"IdcArchive({self.url!r}, index={self._index_source or 'idc-index-data'!r})"

    # --- listing (the Archive port) -------------------------------------------------------

    def collections(self) -> list[CollectionRecord]:
        names = self.index.collection_names()
        return [CollectionRecord(names.get(c, c)) for c in self.index.collection_ids()]

    def patients(self, collection: str) -> list[PatientRecord]:
        firsts = {s.patient_id: s for s in self.index.series([collection])}
        return [
            PatientRecord(p, s.collection, patient_sex=s.patient_sex)
            for p, s in sorted(firsts.items())
        ]

    def studies(self, collection: str, patient_id: str | None = None) -> list[StudyRecord]:
        chosen = [s for s in self.index.series([collection]) if _same(patient_id, s.patient_id)]
        counts: dict[str, int] = {}
        for s in chosen:
            counts[s.study_uid] = counts.get(s.study_uid, 0) + 1
        firsts = {s.study_uid: s for s in chosen}
        return [
            StudyRecord(u, s.patient_id, s.collection, _day(s.study_date), series_count=counts[u])
            for u, s in sorted(firsts.items())
        ]

    def series(
        self,
        collection: str | None = None,
        *,
        patient_id: str | None = None,
        study_uid: str | None = None,
        series_uid: str | None = None,
        modality: str | None = None,
    ) -> list[SeriesRecord]:
        """List series; an unknown collection is an empty list, never an error."""
        dates = self.index.release_dates()
        return [
            to_record(s, dates)
            for s in self.idc_series([collection] if collection else None, series_uid)
            if _same(patient_id, s.patient_id)
            and _same(modality, s.modality)
            and study_uid in (None, s.study_uid)
        ]

    def updated_series(self, since: date) -> list[SeriesRecord]:
        """Series new or revised in a release dated after ``since``."""
        dates = self.index.release_dates()
        later = [version for version, released in dates.items() if released > since]
        return [to_record(s, dates) for s in self.index.series(revised_in=later)]

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        raise ArchiveProtocolError(
            f"IDC's index lists no instances of {series_uid}; their SOPInstanceUIDs are known "
            "only after fetch (IdcArchive.fetch -> SeriesFetch.instances)"
        )

    @contextmanager
    def stream_series(self, series_uid: str) -> Iterator[Iterator[bytes]]:
        raise ArchiveProtocolError(
            f"IDC serves {series_uid} as separate objects, not NBIA's ZIP: use "
            "IdcArchive.fetch_series (the source port)"
        )
        yield iter(())  # pragma: no cover  (makes this a generator for @contextmanager)

    # --- IDC's own shape (what the generalised port will carry) ---------------------------

    def idc_series(
        self, collections: Sequence[str] | None = None, series_uid: str | None = None
    ) -> list[IdcSeries]:
        uids = None if series_uid is None else [series_uid]
        return self.index.series(collections, series_uids=uids)

    def versions(self) -> dict[str, str]:
        """SeriesInstanceUID -> crdc_series_uuid (the version token) for the whole release."""
        return self.index.versions()

    def fetch(self, series: IdcSeries, staging: Path) -> SeriesFetch:
        """Stage one series whole and verified in the new folder ``staging``, or raise."""
        return fetch_series(
            series, staging, endpoint=self.endpoint, max_in_flight=self.max_in_flight
        )

    # --- the source port (what the sync engine calls) -------------------------------------

    def fetch_series(
        self, record: SeriesRecord, dest: str, limits: FetchLimits, meter: FetchMeter
    ) -> StagedSeries:
        """Stage ``record`` whole and verified in the existing empty folder ``dest``."""
        series = from_record(record)
        if series.expected_bytes > limits.max_series_bytes:
            raise UnsafeArchiveEntry(
                f"series {record.series_uid}: {series.expected_bytes} bytes exceeds the limit"
            )
        inner = Path(dest) / "_objects"
        fetched = self.fetch(series, inner)
        meter.received += fetched.total_bytes
        for check in fetched.instances:
            (inner / check.name).rename(Path(dest) / check.name)
        inner.rmdir()
        return staged_series(dest, fetched)

    def listed_md5s(self, record: SeriesRecord) -> list[str] | None:
        """The objects' MD5s from one prefix listing (None if any ETag is no plain MD5)."""
        digests = self.listed_digests(from_record(record))
        if any(d is None for d in digests.values()):
            return None
        return [d for d in digests.values() if d is not None]

    def listed_digests(self, series: IdcSeries) -> dict[str, str | None]:
        """Object name -> MD5 per the prefix listing's ETags, None where an ETag is no MD5
        (``mirror verify --cross-source`` without downloading)."""
        return listed_digests(series, endpoint=self.endpoint, max_in_flight=self.max_in_flight)

    def fetch_many(
        self, work: Sequence[tuple[IdcSeries, Path]], *, series_in_flight: int = 16
    ) -> list[SeriesFetch | MirrorError]:
        return fetch_many(
            work, endpoint=self.endpoint, max_in_flight=self.max_in_flight,
            series_in_flight=series_in_flight,
        )  # fmt: skip


def to_record(s: IdcSeries, release_dates: Mapping[int, date]) -> SeriesRecord:
    """The port's record of an ``idc_index`` row (fields IDC lacks keep their defaults)."""
    return SeriesRecord(
        series_uid=s.series_uid,
        study_uid=s.study_uid,
        patient_id=s.patient_id,
        collection=s.collection,
        modality=s.modality,
        image_count=s.instance_count,
        file_size=s.expected_bytes,
        date_released=release_dates.get(s.revised_version),
        license_name=s.license,
        series_description=s.series_description,
        series_number=int(s.series_number) if s.series_number.isdigit() else None,
        body_part=s.body_part,
        manufacturer=s.manufacturer,
        manufacturer_model=s.manufacturer_model,
        series_date=_day(s.series_date),
        study_date=_day(s.study_date),
        patient_sex=s.patient_sex,
        patient_age=s.patient_age,
        data_description_uri=f"https://doi.org/{s.source_doi}" if s.source_doi else "",
        version_token=s.crdc_series_uuid,
        source="idc",
        location=s.aws_bucket,
    )


def from_record(record: SeriesRecord) -> IdcSeries:
    """What a fetch needs of an ``idc_index`` row, back from the port's record."""
    if record.source != "idc" or not record.version_token or not record.location:
        raise ArchiveProtocolError(
            f"series {record.series_uid} was not listed by IDC (no crdc_series_uuid/bucket)"
        )
    return IdcSeries(
        series_uid=record.series_uid,
        study_uid=record.study_uid,
        patient_id=record.patient_id,
        collection_id=collection_id(record.collection),
        collection=record.collection,
        modality=record.modality,
        crdc_series_uuid=check_series_uuid(record.version_token),
        aws_bucket=record.location,
        instance_count=record.image_count,
        size_mb=record.file_size / 1e6,
        init_version=0,
        revised_version=0,
    )


def staged_series(dest: str, fetched: SeriesFetch) -> StagedSeries:
    return StagedSeries(
        directory=dest,
        instances=tuple(InstanceEntry(c.name, c.md5, c.size) for c in fetched.instances),
        checks=tuple(
            (c.name, tuple(sorted({**c.checks, **fetched.checks}.items())))
            for c in fetched.instances
        ),
        source="idc",
    )


def _same(wanted: str | None, value: str) -> bool:
    return wanted is None or wanted.lower() == value.lower()


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


__all__ = ["IdcArchive", "from_record", "staged_series", "to_record"]
