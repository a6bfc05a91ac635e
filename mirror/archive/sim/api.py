"""The v4 endpoints of the simulated archive, independent of HTTP plumbing.

Each handler takes the archive and the request parameters and returns a :class:`Reply`.
Parameter checking, status codes and the 400 texts follow the NBIA source (§3.3).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mirror.archive.sim import rows
from mirror.archive.sim.model import SimArchive
from mirror.archive.sim.records import SimSeries
from mirror.archive.sim.zipstream import ChunkedWriter, EntrySource, write_zip

Params = Mapping[str, str]
Stream = Callable[[ChunkedWriter], None]
SERVER_ERROR = "Server was not able to process your request"


@dataclass(slots=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Stream | None = None
    truncate_after: int | None = None  # fault: cut the connection after this many bytes
    rows: int = 0  # result rows (drives the per-row latency fault)


def text(status: int, message: str, content_type: str = "text/plain") -> Reply:
    return Reply(status, message.encode(), content_type)


def not_granted(uid: str) -> Reply:
    return text(
        400,
        "The user has not been granted the access to image with given SeriesInstanceUID,"
        f"{uid}. Please contact System Admin to resolve this issue.",
    )


def missing(name: str, comma: bool = False) -> Reply:
    sep = "," if comma else ""
    # Upstream sets Content-Type to JSON on these plain sentences; so do we.
    return text(400, f"A parameter, {name}{sep} is required for this API call.", "application/json")


def _rows_reply(data: list[dict[str, Any]], params: Params, key: str) -> Reply:
    """JSON (or CSV) rows in a seeded random order; no rows is a 200 with an empty body."""
    random.Random(f"{key}:{sorted(params.items())}").shuffle(data)
    fmt = params.get("format", "json").lower()
    if not data:
        return Reply(200, b"")
    if fmt == "json":
        return Reply(200, json.dumps(data).encode(), rows=len(data))
    if fmt in ("csv", "csvquoted"):
        return Reply(200, _quoted_csv(data).encode(), "text/csv", rows=len(data))
    return text(500, SERVER_ERROR)


def _quoted_csv(data: list[dict[str, Any]]) -> str:
    return _quoted_csv_columns(data, tuple(dict.fromkeys(k for row in data for k in row)))


def _eq(value: str, wanted: str | None) -> bool:
    return wanted is None or value.upper() == wanted.upper()


# --- metadata ---------------------------------------------------------------------------


def get_collection_values(sim: SimArchive, p: Params) -> Reply:
    names = sorted({s.collection for s in sim.all_series()})
    return _rows_reply([{"Collection": n} for n in names], p, "collections")


def get_series(sim: SimArchive, p: Params) -> Reply:
    def keep(s: SimSeries) -> bool:
        return (
            _eq(s.collection, p.get("Collection"))
            and _eq(s.patient_id, p.get("PatientID"))
            and _eq(s.modality, p.get("Modality"))
            and _eq(s.body_part, p.get("BodyPartExamined"))
            and _eq(s.manufacturer, p.get("Manufacturer"))
            and p.get("StudyInstanceUID", s.study_uid) == s.study_uid
            and p.get("SeriesInstanceUID", s.uid) == s.uid
            and p.get("ManufacturerModelName") is None
        )

    data = [rows.series_row(sim, s) for s in sim.all_series() if keep(s)]
    return _rows_reply(data, p, "series")


def _from_date(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%m-%d-%Y")
    except ValueError:
        return None  # like MySQL STR_TO_DATE: NULL, so nothing matches


def get_updated_series(sim: SimArchive, p: Params) -> Reply:
    since = _from_date(p.get("fromDate", "01-01-1900"))
    if since is None:
        return Reply(200, b"")
    data = [rows.series_row(sim, s) for s in sim.all_series() if s.released > since]
    return _rows_reply(data, p, "updated")


def _first_per(items: list[SimSeries], key: Callable[[SimSeries], str]) -> list[SimSeries]:
    seen: dict[str, SimSeries] = {}
    for s in items:
        seen.setdefault(key(s), s)
    return list(seen.values())


def get_patient(sim: SimArchive, p: Params) -> Reply:
    chosen = [
        s
        for s in sim.all_series()
        if _eq(s.collection, p.get("Collection")) and _eq(s.patient_id, p.get("PatientId"))
    ]
    data = [rows.patient_row(s) for s in _first_per(chosen, lambda s: s.patient_id)]
    return _rows_reply(data, p, "patients")


def _studies(chosen: list[SimSeries], p: Params, key: str) -> Reply:
    counts: dict[str, int] = {}
    for s in chosen:
        counts[s.study_uid] = counts.get(s.study_uid, 0) + 1
    firsts = _first_per(chosen, lambda s: s.study_uid)
    return _rows_reply([rows.study_row(s, counts[s.study_uid]) for s in firsts], p, key)


def get_patient_study(sim: SimArchive, p: Params) -> Reply:
    chosen = [
        s
        for s in sim.all_series()
        if _eq(s.collection, p.get("Collection"))
        and _eq(s.patient_id, p.get("PatientID"))
        and p.get("StudyInstanceUID", s.study_uid) == s.study_uid
    ]
    return _studies(chosen, p, "studies")


def _new_since(sim: SimArchive, p: Params) -> list[SimSeries] | None:
    since = _from_date(p["fromDate"])
    if since is None:
        return None
    return [
        s
        for s in sim.all_series()
        if _eq(s.collection, p["Collection"])
        and _eq(s.patient_id, p.get("PatientID"))
        and s.released >= since
    ]


def new_patients(sim: SimArchive, p: Params) -> Reply:
    if "Collection" not in p or "fromDate" not in p:
        return missing("Collection and fromDate are")
    chosen = _new_since(sim, p) or []
    data = [rows.patient_row(s) for s in _first_per(chosen, lambda s: s.patient_id)]
    return _rows_reply(data, p, "newpatients")


def new_studies(sim: SimArchive, p: Params) -> Reply:
    if "Collection" not in p or "fromDate" not in p:
        return missing("Collection and fromDate are")
    return _studies(_new_since(sim, p) or [], p, "newstudies")


def get_series_size(sim: SimArchive, p: Params) -> Reply:
    if "SeriesInstanceUID" not in p:
        return missing("SeriesInstanceUID")
    s = sim.get_series(p["SeriesInstanceUID"])
    if s is None:
        return Reply(200, b"")
    row = {"TotalSizeInBytes": sim.file_size(s.uid), "ObjectCount": len(s.instances)}
    return _rows_reply([row], p, "size")


def get_sop_instance_uids(sim: SimArchive, p: Params) -> Reply:
    if "SeriesInstanceUID" not in p:
        return missing("SeriesInstanceUID")
    # Upstream applies no visibility filter here.
    s = sim.get_series(p["SeriesInstanceUID"], visible_only=False)
    data = [{"SOPInstanceUID": i.sop_uid} for i in s.instances] if s else []
    return _rows_reply(data, p, "sops")


def _find_instance(sim: SimArchive, sop: str) -> tuple[SimSeries, int] | None:
    for s in sim.all_series(visible_only=False):
        for index, inst in enumerate(s.instances):
            if inst.sop_uid == sop:
                return s, index
    return None


def get_md5_for_image(sim: SimArchive, p: Params) -> Reply:
    if "SOPInstanceUID" not in p:
        return missing("SOPInstanceUID")
    found = _find_instance(sim, p["SOPInstanceUID"])
    body = sim.stored_md5(found[0].uid, found[1]).encode() if found else b""
    return Reply(200, body, "text/plain")


def _hash_strings(values: list[str]) -> str:
    return hashlib.md5("".join(sorted(values)).encode()).hexdigest()


def series_hierarchy_md5(sim: SimArchive, s: SimSeries) -> str:
    """md5 over the concatenated stored digests (as stored, unpadded), sorted."""
    return _hash_strings([sim.stored_md5(s.uid, i) for i in range(len(s.instances))])


def study_hierarchy_md5(sim: SimArchive, series: list[SimSeries]) -> str:
    """md5 over the sorted hashes of the study's visible series."""
    return _hash_strings([series_hierarchy_md5(sim, s) for s in series if s.visible])


def patient_hierarchy_md5(sim: SimArchive, series: list[SimSeries]) -> str:
    """md5 over the sorted hashes of the patient's studies (those with visible series)."""
    studies: dict[str, list[SimSeries]] = {}
    for s in series:
        if s.visible:
            studies.setdefault(s.study_uid, []).append(s)
    return _hash_strings([study_hierarchy_md5(sim, group) for group in studies.values()])


def collection_hierarchy_md5(sim: SimArchive, series: list[SimSeries]) -> str:
    """md5 over the sorted patient hashes. Upstream serves a cached copy filled by a
    background job (it can lag); the simulator computes it live."""
    patients: dict[str, list[SimSeries]] = {}
    for s in series:
        if s.visible:
            patients.setdefault(s.patient_id, []).append(s)
    return _hash_strings([patient_hierarchy_md5(sim, group) for group in patients.values()])


def cache_collection_md5(sim: SimArchive) -> None:
    """Run the background job once: the collection level answers these values (stale
    as soon as content changes) until the next call; clear the dict for live answers."""
    names = {s.collection for s in sim.all_series()}
    sim.collection_md5_cache = {
        n.upper(): collection_hierarchy_md5(sim, [s for s in sim.all_series() if s.collection == n])
        for n in names
    }


def md5_hierarchy(sim: SimArchive, p: Params) -> Reply:
    """One level per request (nbia-api.md 5.13): series, study, patient+collection, collection."""
    everything = sim.all_series(visible_only=False)
    if "SeriesInstanceUID" in p:
        s = sim.get_series(p["SeriesInstanceUID"], visible_only=False)
        return _plain(series_hierarchy_md5(sim, s) if s else "")
    if "StudyInstanceUID" in p:
        chosen = [s for s in everything if s.study_uid == p["StudyInstanceUID"]]
        return _plain(study_hierarchy_md5(sim, chosen) if _any_visible(chosen) else "")
    if "PatientID" in p and "Collection" in p:
        chosen = [
            s
            for s in everything
            if _eq(s.patient_id, p["PatientID"]) and _eq(s.collection, p["Collection"])
        ]
        return _plain(patient_hierarchy_md5(sim, chosen) if _any_visible(chosen) else "")
    if "Collection" in p:
        cached = sim.collection_md5_cache.get(p["Collection"].upper())
        chosen = [s for s in everything if _eq(s.collection, p["Collection"])]
        live = collection_hierarchy_md5(sim, chosen) if _any_visible(chosen) else ""
        return _plain(live if cached is None else cached)
    return missing("SeriesInstanceUID, StudyInstanceUID, PatientID or Collection")


def _any_visible(series: list[SimSeries]) -> bool:
    return any(s.visible for s in series)


def _plain(body: str) -> Reply:
    return Reply(200, body.encode(), "text/plain")


# --- downloads --------------------------------------------------------------------------


def get_single_image(sim: SimArchive, p: Params) -> Reply:
    if "SeriesInstanceUID" not in p or "SOPInstanceUID" not in p:
        return missing("SeriesInstanceUID and SOPInstanceUID are")
    s = sim.get_series(p["SeriesInstanceUID"])
    found = _find_instance(sim, p["SOPInstanceUID"])
    if s is None or found is None or found[0].uid != s.uid:
        return text(500, f"{SERVER_ERROR}\nnull")
    reply = Reply(200, sim.instance_bytes(s.uid, found[1]), "application/dicom")
    reply.headers["Content-Disposition"] = f"attachment; filename={p['SOPInstanceUID']}.dcm"
    return reply


@dataclass(frozen=True, slots=True)
class ZipPlan:
    """What one download puts in its ZIP (faults shape it before streaming starts)."""

    series_uid: str
    license: bool
    new_names: bool
    md5: bool
    skip: frozenset[int] = frozenset()
    hostile_name: str | None = None  # fault: the first image gets this entry name


def zip_entries(sim: SimArchive, plan: ZipPlan) -> list[EntrySource]:
    s = sim.get_series(plan.series_uid, visible_only=False)
    assert s is not None
    entries: list[EntrySource] = []
    if plan.license:
        entries.append(("LICENSE", lambda: rows.license_text(s).encode()))
    names = rows.new_file_names(s.instances) if plan.new_names else {}
    served: list[tuple[str, int]] = []
    for index in range(len(s.instances)):
        if index in plan.skip:
            continue
        name = names.get(index) or f"{len(served) + 1:08d}.dcm"
        if plan.hostile_name and not served:
            name = plan.hostile_name
        served.append((name, index))
        entries.append((name, _producer(sim, s.uid, index)))
    if plan.md5:
        entries.append(("md5hashes.csv", lambda: _md5_csv(sim, s.uid, served).encode()))
    return entries


def _producer(sim: SimArchive, uid: str, index: int) -> Callable[[], bytes]:
    return lambda: sim.instance_bytes(uid, index)


def _md5_csv(sim: SimArchive, uid: str, served: list[tuple[str, int]]) -> str:
    lines = [f"{name},{sim.stored_md5(uid, index)}" for name, index in served]
    random.Random(f"{sim.seed}:{uid}:csv").shuffle(lines)  # HashMap order upstream
    return "Filename,MD5Hash\n" + "".join(line + "\n" for line in lines)


def zip_reply(sim: SimArchive, plan: ZipPlan) -> Reply:
    entries = zip_entries(sim, plan)
    level = sim.compresslevel

    def stream(out: ChunkedWriter) -> None:
        write_zip(out, entries, level)

    headers = {"Content-Disposition": f'attachment; filename="{plan.series_uid}.zip"'}
    return Reply(200, b"", "application/octet-stream", headers, stream)


def is_yes(value: str | None) -> bool:
    return value is not None and value.lower() == "yes"


METADATA_COLUMNS = (
    "PatientID", "PatientName", "PatientSex", "EthnicGroup", "Phantom", "SpeciesCode",
    "SpeciesDescription", "StudyInstanceUID", "StudyDate", "StudyDesc",
    "AdmittingDiagnosisDescription", "StudyID", "PatientAge", "LongitudinalTemporalEventType",
    "LongitudinalTemporalOffsetFromEvent", "SeriesInstanceUID", "Collection", "Site", "Modality",
    "ProtocolName", "SeriesDate", "SeriesDescription", "BodyPartExamined", "SeriesNumber",
    "AnnotationsFlag", "Manufacturer", "ManufacturerModelName", "PixelSpacing(mm)-Row",
    "SliceThickness(mm)", "SoftwareVersions", "ImageCount", "MaxSubmissionTimestamp",
    "LicenseName", "LicenseURI", "DataDescriptionURI", "FileSize", "ReleasedStatus",
    "DateReleased", "ThirdPartyAnalysis", "Authorized",
)  # fmt: skip


def _metadata_row(sim: SimArchive, s: SimSeries) -> dict[str, Any]:
    row = {**rows.patient_row(s), **rows.series_row(sim, s)}
    row.pop("PatientId", None)
    row["PatientID"] = s.patient_id
    row["StudyID"] = "1"
    # DECIMAL columns print with six decimals in CSV (the OpenAPI example's "500.000000").
    row["SeriesNumber"] = f"{s.series_number:.6f}"
    row["PixelSpacing(mm)-Row"] = "0.800000"
    row["SliceThickness(mm)"] = "2.500000"
    return row


def series_metadata(sim: SimArchive, p: Params) -> Reply:
    """POST getSeriesMetadata: ``list`` of comma-separated UIDs; quoted CSV download."""
    if not p.get("list"):
        return text(
            400, "A form parameter, list, containing at least one SeriesInstanceUID is required."
        )
    cleaned = "".join(ch for ch in p["list"] if ch.isdigit() or ch in ",.")
    found = [sim.get_series(uid) for uid in dict.fromkeys(cleaned.split(",")) if uid]
    data = [_metadata_row(sim, s) for s in found if s is not None]
    fmt = p.get("format", "csv-download").lower()
    if fmt == "json":
        return Reply(200, json.dumps(data).encode() if data else b"")
    if fmt not in ("csv", "csv-download", "csvquoted"):
        return text(500, SERVER_ERROR)
    body = _quoted_csv_columns(data, METADATA_COLUMNS) if data else ""
    reply = Reply(200, body.encode(), "text/csv")
    if fmt == "csv-download":
        reply.headers["Content-Disposition"] = 'attachment; filename="SeriesMetaData.csv"'
    return reply


def _quoted_csv_columns(data: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[row.get(c, "") for c in columns] for row in data])
    return buf.getvalue()
