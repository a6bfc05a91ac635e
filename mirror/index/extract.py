"""DICOM header extraction: one committed series in, instance/series/error rows out.

Headers are hostile input: a file pydicom cannot parse, or an element whose value does not
fit its declared type, becomes a row in the ``errors`` table (and a null value), never an
exception that stops the build.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

from mirror.index.rawvalues import ValueProblem, column_value, parse_date
from mirror.index.schema import ELEMENTS, Element, Kind, collection_id
from mirror.layout import SeriesSidecar
from mirror.storage.port import Store

log = logging.getLogger(__name__)

Row = dict[str, Any]
_SEQUENCES = frozenset(e.sequence for e in ELEMENTS if e.sequence)


@dataclass(frozen=True, slots=True)
class Extracted:
    """Rows produced for a batch of series (plain lists: cheap to pickle back from Dask)."""

    instances: list[Row]
    series: list[Row]
    errors: list[Row]


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
def _tags() -> tuple[tuple[int, Element, str], ...]:
    """``(tag, element, dictionary VR)`` of the top-level elements (sequence items apart)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    return tuple((int(tag_for_keyword(e.keyword) or 0), e, dictionary_VR(e.keyword))
                 for e in ELEMENTS if not e.sequence)


@cache
def _sequences() -> tuple[tuple[int, str, tuple[Element, ...]], ...]:
    """``(tag, keyword, elements read from its first item)`` of each indexed sequence."""
    from pydicom.datadict import tag_for_keyword

    return tuple((int(tag_for_keyword(seq) or 0), seq,
                  tuple(e for e in ELEMENTS if e.sequence == seq)) for seq in sorted(_SEQUENCES))


def _sequence_values(ds: Any, row: Row, problems: list[tuple[str, str]]) -> None:
    for tag, sequence, elements in _sequences():
        if tag not in ds._dict:
            continue  # the columns stay None, as for any absent element
        seq = ds.get(sequence)
        item = seq[0] if seq else None
        for element in elements:
            _store(row, problems, element, partial(_item_value, item, element.keyword))


def _item_value(item: Any, keyword: str) -> Any:
    return item.get(keyword) if item is not None else None


def _pydicom_value(ds: Any, tag: int) -> Any:
    return ds[tag].value


def _store(row: Row, problems: list[tuple[str, str]], element: Element, read: Any) -> None:
    try:
        row[element.keyword] = convert(read(), element.kind)
    except Exception as exc:  # any header fault is data, not a crash
        row[element.keyword] = None
        problems.append((element.keyword, f"{type(exc).__name__}: {exc}"[:500]))


def header_values(ds: Any) -> tuple[Row, list[tuple[str, str]]]:
    """Every :data:`ELEMENTS` value of a dataset, plus (keyword, reason) for bad ones.

    Each element the file has is decoded from its raw bytes when
    :func:`~mirror.index.rawvalues.column_value` can (most elements of most files: it skips
    pydicom's DataElement machinery, which costs more than parsing the header); otherwise,
    and for every value that does not fit its column, pydicom reads it (``ds[tag]``), so
    the row and the problems are the ones pydicom's reading gives.
    """
    from pydicom.dataelem import RawDataElement

    row: Row = dict.fromkeys((e.keyword for e in ELEMENTS), None)
    problems: list[tuple[str, str]] = []
    found = ds._dict  # tag -> RawDataElement until someone reads it through the Dataset
    for tag, element, dictionary_vr in _tags():
        raw = found.get(tag)
        if raw is None:
            continue
        if type(raw) is RawDataElement and raw.value is not None:
            try:
                row[element.keyword] = column_value(raw.value, raw.VR or dictionary_vr,
                                                    raw.is_little_endian, element.kind)
                continue
            except ValueError:
                pass  # pydicom decides (and a value that does not fit is recorded there)
        _store(row, problems, element, partial(_pydicom_value, ds, tag))
    _sequence_values(ds, row, problems)
    meta = getattr(ds, "file_meta", None)
    tsuid = meta.get("TransferSyntaxUID") if meta is not None else None
    row["TransferSyntaxUID"] = str(tsuid) if tsuid else None
    return row, problems


# Headers are parsed from memory: pydicom asks a real file for its position before every
# element, and each ``tell()`` on a buffered file is an lseek system call (~270 per CT
# header, a fifth of the parse). 64 KiB holds the whole header of almost every file.
HEADER_PREFIX = 64 * 1024
# (7FE0,0010) Pixel Data, (7FE0,0008) Float and (7FE0,0009) Double Float Pixel Data,
# in both byte orders: where pydicom rewinds to when it stops before the pixels.
_PIXEL_TAGS = frozenset(struct.pack(order + "HH", 0x7FE0, element)
                        for order in "<>" for element in (0x0010, 0x0008, 0x0009))


def read_header(fileobj: Any) -> Any:
    """The header of one DICOM file, pixel data left unread (read from a 64 KiB prefix).

    A file no longer than the prefix is parsed whole from memory; a longer one is parsed
    from its prefix when pydicom stopped at the pixel data inside it, and from the file
    itself otherwise (a header longer than the prefix, no pixel data, a deflated dataset).
    """
    import pydicom

    head = fileobj.read(HEADER_PREFIX)
    buffer = io.BytesIO(head)
    if len(head) < HEADER_PREFIX:
        return pydicom.dcmread(buffer, stop_before_pixels=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cut-off header is expected here, not news
            ds = pydicom.dcmread(buffer, stop_before_pixels=True)
        at = buffer.tell()
        if head[at : at + 4] in _PIXEL_TAGS:
            return ds
    except Exception:  # the prefix alone may not parse; the whole file decides below
        log.debug("header longer than %d bytes: reading the file", HEADER_PREFIX)
    fileobj.seek(0)
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
