"""Lenient parsing of NBIA responses into the Archive port's records.

Upstream rows omit null columns, print numbers as ints, floats or strings
(``"500.000000"``) and dates as ``MM-DD-YYYY`` (v4) or ``YYYY-MM-DD HH:MM:SS.0`` (v1/v2).
Anything absent or unreadable becomes the record's default; only a row without its
identifying UIDs is a protocol error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from mirror.archive.port import CollectionRecord, PatientRecord, SeriesRecord, StudyRecord
from mirror.errors import ArchiveProtocolError

_DATE_FORMATS = ("%m-%d-%Y", "%Y-%m-%d", "%Y%m%d", "%m/%d/%Y")
_ISO_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T]")


def parse_rows(text: str) -> list[dict[str, Any]]:
    """A JSON array of flat objects; an empty body means no rows."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ArchiveProtocolError(f"malformed JSON from archive: {text[:80]!r}") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ArchiveProtocolError(f"expected a JSON array of objects, got {text[:80]!r}")
    return data


def to_int(value: Any) -> int | None:
    """Lenient integer: ``5``, ``5.0``, ``"500.000000"``, ``"12"``; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def to_date(value: Any) -> date | None:
    """``MM-DD-YYYY`` (v4) or ``YYYY-MM-DD HH:MM:SS.0`` (v1/v2) and a few cousins."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    match = _ISO_PREFIX.match(text)
    if match:
        text = match.group(1)
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _text(row: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = row.get(key)
        if value is not None and value != "":
            return str(value)
    return ""


def _required(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str | int) or str(value) == "":
        raise ArchiveProtocolError(f"row without {key}: {str(dict(row))[:120]}")
    return str(value)


def series_record(row: Mapping[str, Any]) -> SeriesRecord:
    return SeriesRecord(
        series_uid=_required(row, "SeriesInstanceUID"),
        study_uid=_text(row, "StudyInstanceUID"),
        patient_id=_text(row, "PatientID", "PatientId"),
        collection=_text(row, "Collection"),
        modality=_text(row, "Modality"),
        image_count=to_int(row.get("ImageCount")) or 0,
        file_size=to_int(row.get("FileSize")) or 0,
        date_released=to_date(row.get("DateReleased") or row.get("Date Released")),
        max_submission=to_date(row.get("MaxSubmissionTimestamp") or row.get("TimeStamp")),
        license_name=_text(row, "LicenseName"),
        license_uri=_text(row, "LicenseURI"),
        series_description=_text(row, "SeriesDescription"),
        series_number=to_int(row.get("SeriesNumber")),
        body_part=_text(row, "BodyPartExamined"),
        manufacturer=_text(row, "Manufacturer"),
        manufacturer_model=_text(row, "ManufacturerModelName"),
        series_date=to_date(row.get("SeriesDate")),
        study_date=to_date(row.get("StudyDate")),
        study_description=_text(row, "StudyDesc", "StudyDescription"),
        patient_sex=_text(row, "PatientSex"),
        patient_age=_text(row, "PatientAge"),
        site=_text(row, "Site"),
        data_description_uri=_text(row, "DataDescriptionURI", "CollectionURI"),
    )


def patient_record(row: Mapping[str, Any], collection: str) -> PatientRecord:
    patient_id = row.get("PatientId", row.get("PatientID"))
    if patient_id is None:
        raise ArchiveProtocolError(f"patient row without PatientId: {str(dict(row))[:120]}")
    return PatientRecord(
        patient_id=str(patient_id),
        collection=_text(row, "Collection") or collection,
        patient_name=_text(row, "PatientName"),
        patient_sex=_text(row, "PatientSex"),
        ethnic_group=_text(row, "EthnicGroup"),
        species_description=_text(row, "SpeciesDescription"),
    )


def study_record(row: Mapping[str, Any], collection: str) -> StudyRecord:
    return StudyRecord(
        study_uid=_required(row, "StudyInstanceUID"),
        patient_id=_text(row, "PatientID", "PatientId"),
        collection=_text(row, "Collection") or collection,
        study_date=to_date(row.get("StudyDate")),
        study_description=_text(row, "StudyDescription", "StudyDesc"),
        study_id=_text(row, "StudyID"),
        patient_age=_text(row, "PatientAge"),
        series_count=to_int(row.get("SeriesCount")) or 0,
    )


def collection_record(row: Mapping[str, Any]) -> CollectionRecord:
    return CollectionRecord(name=_required(row, "Collection"))


def sop_uid(row: Mapping[str, Any]) -> str:
    return _required(row, "SOPInstanceUID")
