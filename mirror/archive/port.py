"""The Archive port: everything the sync engine may ask of an upstream archive.

The engine imports only this module. Adapters (the NBIA REST client, the simulated archive
seen through that same client, later an IDC bucket reader) implement :class:`Archive`.
Records are small frozen dataclasses so they pickle cheaply into Dask tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable


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

    @property
    def fingerprint(self) -> tuple[int, int, str, str]:
        """What the listing says about the content; a change means 'fetch and compare'."""
        return (
            self.image_count,
            self.file_size,
            self.max_submission.isoformat() if self.max_submission else "",
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
