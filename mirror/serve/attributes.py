"""The attributes QIDO-RS can match and return, and their DICOM JSON form (PS3.18 Annex F).

Each attribute lives at one level (study, series, instance) and reads one column of the
serving tables (:mod:`mirror.serve.snapshot`). Keys may be given as keywords or 8-hex tags.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["study", "series", "instance"]
LEVELS: tuple[Level, ...] = ("study", "series", "instance")
Match = Literal["uid", "date", "time", "text", "int", "list", "none"]


@dataclass(frozen=True, slots=True)
class Attribute:
    tag: str  # 8 upper-case hex digits
    keyword: str
    vr: str
    level: Level
    column: str | None  # column of the level's table; None: constant or computed
    match: Match
    required: bool = False  # returned even when not asked for (PS3.18 Table 10.6.3-3..5)


_A = Attribute
ATTRIBUTES: tuple[Attribute, ...] = (
    _A("00080020", "StudyDate", "DA", "study", "StudyDate", "date", True),
    _A("00080030", "StudyTime", "TM", "study", "StudyTime", "time", True),
    _A("00080050", "AccessionNumber", "SH", "study", "AccessionNumber", "text", True),
    _A("00080056", "InstanceAvailability", "CS", "study", None, "none", True),
    _A("00080061", "ModalitiesInStudy", "CS", "study", "ModalitiesInStudy", "list", True),
    _A("00080090", "ReferringPhysicianName", "PN", "study", None, "none", True),
    _A("00081030", "StudyDescription", "LO", "study", "StudyDescription", "text"),
    _A("00081190", "RetrieveURL", "UR", "study", None, "none", True),
    _A("00100010", "PatientName", "PN", "study", "PatientName", "text", True),
    _A("00100020", "PatientID", "LO", "study", "PatientID", "text", True),
    _A("00100030", "PatientBirthDate", "DA", "study", "PatientBirthDate", "date", True),
    _A("00100040", "PatientSex", "CS", "study", "PatientSex", "text", True),
    _A("00101010", "PatientAge", "AS", "study", "PatientAge", "text"),
    _A("0020000D", "StudyInstanceUID", "UI", "study", "StudyInstanceUID", "uid", True),
    _A("00200010", "StudyID", "SH", "study", "StudyID", "text", True),
    _A("00201206", "NumberOfStudyRelatedSeries", "IS", "study", "n_series", "int", True),
    _A("00201208", "NumberOfStudyRelatedInstances", "IS", "study", "n_instances", "int", True),
    _A("00080021", "SeriesDate", "DA", "series", "SeriesDate", "date"),
    _A("00080031", "SeriesTime", "TM", "series", "SeriesTime", "time"),
    _A("00080060", "Modality", "CS", "series", "Modality", "text", True),
    _A("00080070", "Manufacturer", "LO", "series", "Manufacturer", "text"),
    _A("0008103E", "SeriesDescription", "LO", "series", "SeriesDescription", "text", True),
    _A("00180015", "BodyPartExamined", "CS", "series", "BodyPartExamined", "text"),
    _A("0020000E", "SeriesInstanceUID", "UI", "series", "SeriesInstanceUID", "uid", True),
    _A("00200011", "SeriesNumber", "IS", "series", "SeriesNumber", "int", True),
    _A("00201209", "NumberOfSeriesRelatedInstances", "IS", "series", "n_instances", "int", True),
    _A("00080016", "SOPClassUID", "UI", "instance", "SOPClassUID", "uid", True),
    _A("00080018", "SOPInstanceUID", "UI", "instance", "SOPInstanceUID", "uid", True),
    _A("00200013", "InstanceNumber", "IS", "instance", "InstanceNumber", "int", True),
    _A("00280008", "NumberOfFrames", "IS", "instance", "NumberOfFrames", "int", True),
    _A("00280010", "Rows", "US", "instance", "Rows", "int", True),
    _A("00280011", "Columns", "US", "instance", "Columns", "int", True),
    _A("00280100", "BitsAllocated", "US", "instance", "BitsAllocated", "int", True),
)

BY_KEY: dict[str, Attribute] = {
    **{a.tag: a for a in ATTRIBUTES}, **{a.keyword: a for a in ATTRIBUTES},
}
BY_TAG: dict[str, Attribute] = {a.tag: a for a in ATTRIBUTES}


def lookup(key: str) -> Attribute | None:
    """The attribute named by a keyword or an 8-hex tag (any case), else ``None``."""
    return BY_KEY.get(key) or BY_KEY.get(key.upper())


def level_index(level: Level) -> int:
    return LEVELS.index(level)


def element(attr: Attribute, value: Any) -> dict[str, Any]:
    """``{"vr": .., "Value": [..]}`` for one value; no ``Value`` when empty (Annex F)."""
    values = _values(attr.vr, value)
    return {"vr": attr.vr, "Value": values} if values else {"vr": attr.vr}


def _values(vr: str, value: Any) -> list[Any]:
    if value is None or value in ("", []):
        return []
    items = value if isinstance(value, list) else [value]
    items = [v for v in items if v is not None and v != ""]
    if vr == "PN":
        return [{"Alphabetic": str(v)} for v in items]
    if vr == "DA":
        return [v.strftime("%Y%m%d") if isinstance(v, dt.date) else str(v) for v in items]
    if vr in ("IS", "US", "UL", "SS", "SL"):
        return [int(v) for v in items]
    return [str(v) for v in items]
