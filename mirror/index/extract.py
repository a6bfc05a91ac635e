"""DICOM header extraction: one committed series in, instance/series/error rows out.

Headers are hostile input: a file pydicom cannot parse, or an element whose value does not
fit its declared type, becomes a row in the ``errors`` table (and a null value), never an
exception that stops the build.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache, partial
from typing import Any

from mirror.index.schema import ELEMENTS, Element, Kind, collection_id
from mirror.layout import SeriesSidecar
from mirror.storage.port import Store

log = logging.getLogger(__name__)

Row = dict[str, Any]
_DATE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_SEQUENCES = frozenset(e.sequence for e in ELEMENTS if e.sequence)


class ValueProblem(ValueError):
    """A header value that does not fit the column type."""


@dataclass(frozen=True, slots=True)
class Extracted:
    """Rows produced for a batch of series (plain lists: cheap to pickle back from Dask)."""

    instances: list[Row]
    series: list[Row]
    errors: list[Row]


def parse_date(text: str) -> date:
    """DICOM DA (``YYYYMMDD``, or ACR-NEMA ``YYYY.MM.DD``) as a date."""
    match = _DATE.match(text.strip())
    if not match:
        raise ValueProblem(f"not a DICOM date: {text[:40]!r}")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as exc:
        raise ValueProblem(f"not a DICOM date: {text[:40]!r}") from exc


def _is_multi(value: Any) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _scalar(value: Any, kind: Kind) -> Any:
    if kind in (Kind.INT, Kind.INTS):
        return int(value)
    if kind in (Kind.FLOAT, Kind.FLOATS):
        return float(value)
    if kind is Kind.DATE:
        return parse_date(str(value))
    return str(value)


def convert(value: Any, kind: Kind) -> Any:
    """A pydicom value as the column's Python value (``None`` for absent or empty)."""
    if value is None or value == "" or (isinstance(value, bytes) and not value):
        return None
    multi = _is_multi(value)
    if kind in (Kind.STRS, Kind.INTS, Kind.FLOATS):
        items = list(value) if multi else [value]
        return [_scalar(v, kind) for v in items]
    if multi and kind is Kind.STR:
        return "\\".join(str(v) for v in value)  # VM violation: keep the raw text
    if multi:
        raise ValueProblem(f"{len(value)} values where one is allowed")
    try:
        return _scalar(value, kind)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueProblem(f"{type(exc).__name__}: {exc}") from exc


@cache
def _tags() -> tuple[tuple[int, Element], ...]:
    """``(tag, element)`` for the top-level elements (sequence items are looked up apart)."""
    from pydicom.datadict import tag_for_keyword

    return tuple((int(tag_for_keyword(e.keyword) or 0), e) for e in ELEMENTS if not e.sequence)


def _sequence_values(ds: Any, row: Row, problems: list[tuple[str, str]]) -> None:
    for sequence in _SEQUENCES:
        seq = ds.get(sequence) if sequence in ds else None
        item = seq[0] if seq else None
        for element in (e for e in ELEMENTS if e.sequence == sequence):
            _store(row, problems, element, partial(_item_value, item, element.keyword))


def _item_value(item: Any, keyword: str) -> Any:
    return item.get(keyword) if item is not None else None


# Value representations whose bytes do not depend on the character set: for these,
# pydicom's own value converter can run on the raw element directly.
_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI",
                        "US", "SS", "UL", "SL", "FL", "FD"})


def _element_value(ds: Any, tag: int, raw_type: Any, convert_value: Any) -> Any:
    """pydicom's value of ``tag``, skipping the DataElement machinery when it is safe.

    ``Dataset.__getitem__`` builds a DataElement through hooks and validation for each
    access, which costs more than parsing the header; ``pydicom.values.convert_value`` on
    the still-raw element gives the same value (the tests compare against ``ds[tag]``).
    """
    raw = ds._dict.get(tag)
    if isinstance(raw, raw_type) and raw.VR in _PLAIN_VRS and raw.value is not None:
        return convert_value(raw.VR, raw)
    return ds[tag].value


def _store(row: Row, problems: list[tuple[str, str]], element: Element, read: Any) -> None:
    try:
        row[element.keyword] = convert(read(), element.kind)
    except Exception as exc:  # any header fault is data, not a crash
        row[element.keyword] = None
        problems.append((element.keyword, f"{type(exc).__name__}: {exc}"[:500]))


def header_values(ds: Any) -> tuple[Row, list[tuple[str, str]]]:
    """Every :data:`ELEMENTS` value of a dataset, plus (keyword, reason) for bad ones."""
    from pydicom.dataelem import RawDataElement
    from pydicom.values import convert_value

    row: Row = dict.fromkeys((e.keyword for e in ELEMENTS), None)
    problems: list[tuple[str, str]] = []
    present = set(ds.keys())
    # Only touch the elements the file has: attribute access by keyword costs a
    # dictionary walk per name, and most of the ~110 names are absent from any one file.
    for tag, element in _tags():
        if tag in present:
            read = partial(_element_value, ds, tag, RawDataElement, convert_value)
            _store(row, problems, element, read)
    _sequence_values(ds, row, problems)
    meta = getattr(ds, "file_meta", None)
    tsuid = meta.get("TransferSyntaxUID") if meta is not None else None
    row["TransferSyntaxUID"] = str(tsuid) if tsuid else None
    return row, problems


def read_header(fileobj: Any) -> Any:
    """The header of one DICOM file, pixel data left unread."""
    import pydicom

    return pydicom.dcmread(fileobj, stop_before_pixels=True)


def _check_identity(values: Row) -> None:
    # pydicom stops quietly at the end of a truncated file; a header without the
    # instance's own UID is not a usable record.
    if not values.get("SOPInstanceUID"):
        raise ValueProblem("incomplete header (truncated file?): no SOPInstanceUID")


def _error(cid: str, series_uid: str, path: str, element: str | None, reason: str) -> Row:
    return {"collection_id": cid, "SeriesInstanceUID": series_uid, "file_path": path,
            "element": element, "reason": reason}


def instance_rows(store: Store, sidecar: SeriesSidecar) -> tuple[list[Row], list[Row]]:
    """One row per instance file of a committed series, and the error rows."""
    cid = collection_id(sidecar.collection)
    rows: list[Row] = []
    errors: list[Row] = []
    for entry in sidecar.instances:
        path = f"{sidecar.path}/{entry.name}"
        base: Row = {"collection_id": cid, "Collection": sidecar.collection,
                     "file_path": path, "file_size": entry.size, "md5": entry.md5,
                     "read_error": None}
        try:
            with store.open_read(path) as fh:
                values, problems = header_values(read_header(fh))
            _check_identity(values)
        except Exception as exc:  # an unreadable file is recorded, not fatal
            reason = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("cannot read header of %s: %s", path, reason)
            rows.append({**base, "read_error": reason, "SeriesInstanceUID": sidecar.series_uid,
                         "StudyInstanceUID": sidecar.study_uid, "PatientID": sidecar.patient_id})
            errors.append(_error(cid, sidecar.series_uid, path, None, reason))
            continue
        rows.append({**values, **base})
        errors.extend(_error(cid, sidecar.series_uid, path, k, r) for k, r in problems)
        if values["SeriesInstanceUID"] != sidecar.series_uid:
            errors.append(_error(cid, sidecar.series_uid, path, "SeriesInstanceUID",
                                 f"header says {values['SeriesInstanceUID']!r}, sidecar says "
                                 f"{sidecar.series_uid!r}"))
    return rows, errors


def _first_instance(rows: list[Row]) -> Row:
    readable = [r for r in rows if r["read_error"] is None]
    if not readable:
        return {}
    return min(readable, key=lambda r: (r.get("InstanceNumber") is None,
                                        r.get("InstanceNumber") or 0, r["file_path"]))


_FROM_HEADER = ("Modality", "BodyPartExamined", "SeriesDescription", "Manufacturer",
                "ManufacturerModelName", "SeriesDate", "StudyDate", "SeriesNumber", "PatientAge",
                "PatientSex", "StudyDescription", "SOPClassUID", "TransferSyntaxUID",
                "PhotometricInterpretation")


def _timestamp(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def series_row(sidecar: SeriesSidecar, rows: list[Row]) -> Row:
    """The ``series`` row: header fields from the first instance, the rest from the sidecar."""
    first = _first_instance(rows)
    row: Row = {name: first.get(name) for name in _FROM_HEADER}
    row["Modality"] = row["Modality"] or sidecar.modality or None
    row.update({
        "collection_id": collection_id(sidecar.collection),
        "PatientID": sidecar.patient_id,
        "StudyInstanceUID": sidecar.study_uid,
        "SeriesInstanceUID": sidecar.series_uid,
        "instanceCount": sidecar.image_count,
        "series_size_MB": sidecar.total_size / 1e6,
        "license_short_name": sidecar.license_name or None,
        "Collection": sidecar.collection,
        "series_path": sidecar.path,
        "content_hash": sidecar.content_hash,
        "series_version": sidecar.series_version,
        "synced_at": _timestamp(sidecar.synced_at),
        "run_id": sidecar.run_id,
        "unreadable_instances": sum(r["read_error"] is not None for r in rows),
    })
    return row


def extract_series(store: Store, sidecars: Iterable[SeriesSidecar]) -> Extracted:
    """Extract a batch of series; the unit of work a Dask task runs."""
    out = Extracted([], [], [])
    for sidecar in sidecars:
        rows, errors = instance_rows(store, sidecar)
        out.instances.extend(rows)
        out.errors.extend(errors)
        out.series.append(series_row(sidecar, rows))
    return out
