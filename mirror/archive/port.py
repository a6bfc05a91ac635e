"""The source port: everything the sync engine may ask of an upstream archive.

The engine imports only this module. Adapters (the NBIA REST client, the simulated archive
seen through that same client, the IDC bucket reader) implement :class:`Source`: the
listing half of :class:`Archive` plus :meth:`Source.fetch_series`, which stages one series
whole and verified as plain instance files (:class:`StagedSeries`). A source's wire format
(NBIA's ZIP and ``md5hashes.csv``, IDC's prefix listing and ETags) stays in its adapter.
Records are small frozen dataclasses so they pickle cheaply into Dask tasks.

Version tokens: a listed series carries what says "the content may have changed". For NBIA
that is the fingerprint (ImageCount, FileSize, MaxSubmissionTimestamp, DateReleased); for
IDC it is ``crdc_series_uuid`` (:attr:`SeriesRecord.version_token`), which then takes the
submission slot of the fingerprint, so the ledger's fingerprint columns hold either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, Protocol, runtime_checkable

from mirror.layout import InstanceEntry

SourceName = Literal["nbia", "idc"]


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    name: str


@dataclass(frozen=True, slots=True)
class PatientRecord:
    patient_id: str
    collection: str
    patient_name: str = ""
    patient_sex: str = ""
    ethnic_group: str = ""
    species_description: str = ""


@dataclass(frozen=True, slots=True)
class StudyRecord:
    study_uid: str
    patient_id: str
    collection: str
    study_date: date | None = None
    study_description: str = ""
    study_id: str = ""
    patient_age: str = ""
    series_count: int = 0


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """One row of ``getSeries`` / ``getUpdatedSeries`` (v4 column names in comments).

    Every field but the three UIDs, the patient and the collection is optional upstream
    (null columns are omitted from the JSON), so defaults stand in for absent keys.
    """

    series_uid: str  # SeriesInstanceUID
    study_uid: str  # StudyInstanceUID
    patient_id: str  # PatientID
    collection: str  # Collection
    modality: str = ""  # Modality
    image_count: int = 0  # ImageCount: live count(*) of images
    file_size: int = 0  # FileSize: sum of stored DICOM file sizes (bytes, before zipping)
    date_released: date | None = None  # DateReleased (MM-DD-YYYY upstream, day resolution)
    max_submission: date | None = None  # MaxSubmissionTimestamp
    license_name: str = ""  # LicenseName
    license_uri: str = ""  # LicenseURI
    series_description: str = ""  # SeriesDescription
    series_number: int | None = None  # SeriesNumber
    body_part: str = ""  # BodyPartExamined
    manufacturer: str = ""  # Manufacturer
    manufacturer_model: str = ""  # ManufacturerModelName
    series_date: date | None = None  # SeriesDate
    study_date: date | None = None  # StudyDate
    study_description: str = ""  # StudyDesc
    patient_sex: str = ""  # PatientSex
    patient_age: str = ""  # PatientAge
    site: str = ""  # Site
    data_description_uri: str = ""  # DataDescriptionURI
    version_token: str = ""  # IDC: crdc_series_uuid (a revision gets a new one); NBIA: ""
    source: str = ""  # which source listed it ("idc"; "" or "nbia" = NBIA, the default)
    location: str = ""  # where the source keeps it, when it says (IDC: the aws_bucket)

    @property
    def fingerprint(self) -> tuple[int, int, str, str]:
        """What the listing says about the content; a change means 'fetch and compare'.

        A source with an explicit version token (IDC) puts it in the submission slot.
        """
        if self.version_token:
            stamp = f"uuid:{self.version_token}"
        else:
            stamp = self.max_submission.isoformat() if self.max_submission else ""
        return (
            self.image_count,
            self.file_size,
            stamp,
            self.date_released.isoformat() if self.date_released else "",
        )


@dataclass(frozen=True, slots=True)
class HashNode:
    """One level of NBIA's MD5 hierarchy: a collection, a patient in it, a study or a
    series (the most specific UID given names the level)."""

    collection: str
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""

    @property
    def level(self) -> str:
        if self.series_uid:
            return "series"
        if self.study_uid:
            return "study"
        return "patient" if self.patient_id else "collection"


@runtime_checkable
class HashedArchive(Protocol):
    """An archive that serves NBIA's ``getMD5Hierarchy`` (an optional capability)."""

    def hierarchy_md5(self, node: HashNode) -> str:
        """32 lowercase hex, or "" when the archive knows nothing at that node."""
        ...


@dataclass(frozen=True, slots=True)
class ExpectedInstance:
    """What one instance of a series can be checked against, as its source describes it.

    ``digest`` is the source's MD5 (NBIA: ``md5hashes.csv``; IDC: a plain-MD5 ETag), or ""
    when the source has none (a multipart ETag); ``series_uid`` is the DICOM identity the
    file must carry.
    """

    name: str
    size: int | None
    digest: str
    series_uid: str


@dataclass(frozen=True, slots=True)
class StagedSeries:
    """One series staged whole and verified in ``directory`` by :meth:`Source.fetch_series`.

    ``instances`` holds the MD5 each file had as it landed (verified against the source's
    digest where it has one); ``extra_files`` are published with them (NBIA's ``LICENSE``);
    ``checks`` records, per instance name, which checks it passed (``passed`` /
    ``not_applicable``; a failed check raises instead of staging).
    """

    directory: str
    instances: tuple[InstanceEntry, ...]
    extra_files: tuple[str, ...] = ()
    md5_hierarchy: str = ""  # NBIA's getMD5Hierarchy series hash, from md5hashes.csv
    checks: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    source: str = ""

    @property
    def has_license(self) -> bool:
        return "LICENSE" in self.extra_files


@dataclass(frozen=True, slots=True)
class FetchLimits:
    max_series_bytes: int = 256 * 2**30  # refuse absurd streams (hostile sizes)
    max_entry_bytes: int = 8 * 2**30


@dataclass(slots=True)
class FetchMeter:
    """Bytes received from the source by one fetch (counted even when it fails)."""

    received: int = 0
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class IndexedSource(Protocol):
    """A source whose whole listing is a local index (IDC's release Parquet).

    Listing it fully costs no request, so the engine always reconciles every target
    collection against it (withdrawals are visible every run); the release is the watermark.
    """

    @property
    def release(self) -> str:
        """The release the listing describes, e.g. ``25.0.5``."""
        ...


@runtime_checkable
class Archive(Protocol):
    """Read-only view of an NBIA-like archive.

    Implementations must be picklable (they travel into Dask tasks) and must not hold an
    open connection across pickling; they open their HTTP session lazily per process.
    """

    @property
    def url(self) -> str:
        """Where the archive lives (for summaries and logs)."""
        ...

    def collections(self) -> list[CollectionRecord]: ...

    def patients(self, collection: str) -> list[PatientRecord]: ...

    def studies(self, collection: str, patient_id: str | None = None) -> list[StudyRecord]: ...

    def series(
        self,
        collection: str | None = None,
        *,
        patient_id: str | None = None,
        study_uid: str | None = None,
        series_uid: str | None = None,
        modality: str | None = None,
    ) -> list[SeriesRecord]:
        """List series; an empty upstream answer is an empty list, never an error."""
        ...

    def updated_series(self, since: date) -> list[SeriesRecord]:
        """Series released strictly after midnight of ``since``, across all collections."""
        ...

    def sop_instance_uids(self, series_uid: str) -> list[str]: ...

    def stream_series(self, series_uid: str) -> AbstractContextManager[Iterator[bytes]]:
        """Stream one series as the archive's ZIP, chunk by chunk, never whole in memory.

        The ZIP always carries ``md5hashes.csv`` (the adapter asks for it, falling back to
        ``getImageWithMD5Hash`` on servers that predate ``IncludeMD5``). Raises
        :class:`~mirror.errors.AccessDenied` for a series that is not (or no longer)
        visible, and a retryable :class:`~mirror.errors.ArchiveUnavailable` subclass for
        transient faults, including a stream cut short.
        """
        ...


@runtime_checkable
class Source(Archive, Protocol):
    """An archive that stages a series as verified instance files (the engine's port)."""

    def fetch_series(
        self, record: SeriesRecord, dest: str, limits: FetchLimits, meter: FetchMeter
    ) -> StagedSeries:
        """Fill the existing, empty folder ``dest`` with the series' instances, each checked
        (name, size, digest when the source has one, DICOM identity where the source checks
        it), or raise a :class:`~mirror.errors.MirrorError` (retryable for transient faults);
        ``dest`` may then hold partial files, which the caller discards."""
        ...

    def listed_md5s(self, record: SeriesRecord) -> list[str] | None:
        """The instances' MD5s as the source lists them without downloading, or None when
        it cannot (NBIA) or some instance has no MD5 (a multipart ETag)."""
        ...
