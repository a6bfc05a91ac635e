"""``IdcArchive``: NCI Imaging Data Commons as a source, in the Archive port's shape.

Listing comes from the release's Parquet index (:mod:`mirror.archive.idc.listing`), objects
from the public buckets read anonymously (:mod:`mirror.archive.idc.wire`), and a series is
fetched instance by instance into a staging folder (:mod:`mirror.archive.idc.fetch`).

Where the port fits and where it does not
-----------------------------------------
The listing half of :class:`~mirror.archive.port.Archive` fits: collections, patients,
studies and series map onto ``idc_index`` rows (``image_count`` = ``instanceCount``,
``file_size`` = ``series_size_MB`` x 1e6, ``date_released`` = the release date of
``series_revised_idc_version``). The download half does not: ``stream_series`` promises
NBIA's ZIP with ``md5hashes.csv`` and ``sop_instance_uids`` a per-instance list, and IDC has
neither (its index lists no instances; digests are ETags, MD5 only for single-PUT objects).
Both raise here. ``SeriesRecord.fingerprint`` also cannot carry IDC's version token.

The generalised source port issue #10 needs (the engine then stops unzipping)::

    class SourceSeries(Protocol):          # one listed series, any source
        series_uid: str; collection: str; patient_id: str; study_uid: str; modality: str
        version_token: str                 # NBIA: today's fingerprint; IDC: crdc_series_uuid
        instance_count: int; total_bytes: int

    @dataclass(frozen=True) class ExpectedInstance:  # what can be checked, before a byte
        name: str; size: int | None
        digest: tuple[Literal["md5"], str] | None      # None: the source has no digest
        series_uid: str                                  # the DICOM identity it must have

    class Source(Protocol):
        url: str
        def collections(self) -> list[CollectionRecord]: ...
        def list_series(self, collections: Sequence[str] | None) -> Iterable[SourceSeries]: ...
        def watermark(self) -> str: ...               # NBIA: a date; IDC: the release
        def changed_since(self, mark: str) -> Iterable[SourceSeries]: ...
        def fetch_series(self, s: SourceSeries, staging: Path) -> SeriesFetch: ...
        # SeriesFetch: the staged instances, each with the checks it passed
        # (size, md5, dicom_series, sop_unique: passed | failed | not_applicable),
        # staged whole and verified, or the staging folder is gone and an error raised.

NBIA's adapter implements ``fetch_series`` by moving ``sync/unzip.py`` and
``sync/verify_zip.py`` behind it; the engine then sees only ``SeriesFetch`` and publishes
the staging folder through the Store port.
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
from mirror.archive.idc.wire import Endpoint, endpoint_from
from mirror.archive.port import CollectionRecord, PatientRecord, SeriesRecord, StudyRecord
from mirror.errors import ArchiveProtocolError, MirrorError

_PUBLIC = {"aws": "https://s3.amazonaws.com", "gcs": "https://storage.googleapis.com"}


class IdcArchive:
    """IDC's current release. ``index``: a DIR or URL (``--idc-index``), default the installed
    ``idc-index-data``; ``endpoint``: any S3-compatible URL (``--idc-endpoint`` or
    ``$MIRROR_IDC_ENDPOINT``), else GCS when ``gcs``, else AWS. Picklable: it holds settings
    and opens a connection pool per fetch call."""

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
            f"IDC serves {series_uid} as separate objects, not NBIA's ZIP: use IdcArchive.fetch "
            "(the generalised source port of issue #10)"
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

    def listed_digests(self, series: IdcSeries) -> dict[str, str | None]:
        """Object name -> MD5 per the prefix listing's ETags, None where an ETag is no MD5
        (``mirror verify --cross-source`` without downloading)."""
        return listed_digests(series, endpoint=self.endpoint)

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
    )


def _same(wanted: str | None, value: str) -> bool:
    return wanted is None or wanted.lower() == value.lower()


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


__all__ = ["IdcArchive", "to_record"]
