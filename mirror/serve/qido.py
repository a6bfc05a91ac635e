"""QIDO-RS: parse a search into bound SQL over the serving tables, answer DICOM JSON.

Matching policy (PS3.4 C.2.2.2, documented in the README): UIDs match exactly or by a comma
list; dates and times exactly or by inclusive ranges (``A-B``, ``-B``, ``A-``); text exactly or
with ``*``/``?`` wildcards, ``\\`` separating alternatives; PN case-insensitively, all other
text case-sensitively; ``ModalitiesInStudy`` by any of a comma list. An empty value matches
everything and returns the attribute. Unknown parameters are ignored; malformed values of
known ones are a 400. Pages are stable: a fixed ORDER BY with ``LIMIT``/``OFFSET``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mirror.errors import BadRequest
from mirror.serve.attributes import (
    ATTRIBUTES,
    LEVELS,
    Attribute,
    Level,
    element,
    level_index,
    lookup,
)
from mirror.serve.snapshot import IndexView

UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATE_RE = re.compile(r"(\d{8})?(-)?(\d{8})?")
_TIME_RE = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_CONTROL = ("limit", "offset", "includefield", "fuzzymatching", "emptyvaluematching",
            "multiplevaluematching", "charset", "accept")
_ALIAS: dict[Level, str] = {"study": "st", "series": "se", "instance": "i"}
_FROM: dict[Level, str] = {
    "study": "stu st",
    "series": "ser se JOIN stu st ON st.StudyInstanceUID = se.StudyInstanceUID",
    "instance": "inst i JOIN ser se ON se.SeriesInstanceUID = i.SeriesInstanceUID "
                "AND se.StudyInstanceUID = i.StudyInstanceUID "
                "JOIN stu st ON st.StudyInstanceUID = i.StudyInstanceUID",
}
_ORDER: dict[Level, str] = {
    "study": "st.StudyDate DESC NULLS LAST, st.StudyInstanceUID",
    "series": "se.StudyInstanceUID, se.SeriesNumber NULLS LAST, se.SeriesInstanceUID",
    "instance": "i.StudyInstanceUID, i.SeriesInstanceUID, i.InstanceNumber NULLS LAST, "
                "i.SOPInstanceUID",
}


@dataclass(frozen=True, slots=True)
class Condition:
    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Search:
    level: Level
    conditions: tuple[Condition, ...]
    returned: tuple[Attribute, ...]  # sorted by tag
    limit: int
    offset: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    more: bool  # another page exists after this one
    warnings: tuple[str, ...]


def check_uid(text: str, what: str = "UID") -> str:
    if len(text) > 64 or not UID_RE.fullmatch(text):
        raise BadRequest(f"malformed {what}: {text[:80]!r}")
    return text


def parse_search(
    level: Level, items: Sequence[tuple[str, str]], *, study: str | None = None,
    series: str | None = None, max_limit: int,
) -> Search:
    """A :class:`Search` from the query's ``(key, value)`` pairs and the path's UIDs."""
    fixed = {k: check_uid(v) for k, v in (("0020000D", study), ("0020000E", series)) if v}
    conditions = [_uid_condition(BY_TAG_UID[t], [v]) for t, v in fixed.items()]
    warnings: list[str] = []
    returned = {a.tag: a for a in _default_returned(level, fixed)}
    includes: list[str] = []
    for key, value in items:
        if key in _CONTROL:
            if key == "includefield":
                includes.extend(v.strip() for v in value.split(",") if v.strip())
            continue
        attr = lookup(key)
        if attr is None or level_index(attr.level) > level_index(level):
            continue  # unknown or lower-level keys are ignored (PS3.18 8.3.4)
        returned[attr.tag] = attr
        if value != "" and attr.match != "none":
            conditions.append(condition(attr, value))
    for key in includes:
        for attr in _included(key, level):
            returned[attr.tag] = attr
    params = dict(items)
    if params.get("fuzzymatching", "").lower() == "true":
        warnings.append("The fuzzymatching parameter is not supported. "
                        "Only literal matching has been performed.")
    limit, capped = _limit(params.get("limit"), max_limit)
    if capped:
        warnings.append(f"The limit was reduced to the server's maximum of {max_limit}.")
    return Search(level, tuple(conditions), tuple(sorted(returned.values(), key=lambda a: a.tag)),
                  limit, _offset(params.get("offset")), tuple(warnings))


BY_TAG_UID = {a.tag: a for a in ATTRIBUTES if a.match == "uid"}
RETRIEVE_URL = next(a for a in ATTRIBUTES if a.keyword == "RetrieveURL")


def _default_returned(level: Level, fixed: dict[str, str]) -> list[Attribute]:
    """Required attributes of ``level``, plus those of higher levels not fixed by the path."""
    out = [a for a in ATTRIBUTES if a.level == level and a.required] + [RETRIEVE_URL]
    for higher in LEVELS[: level_index(level)]:
        uid_tag = "0020000D" if higher == "study" else "0020000E"
        wanted = [a for a in ATTRIBUTES if a.level == higher and a.required
                  and a.keyword != "RetrieveURL"]
        out += [a for a in wanted if a.tag == uid_tag] if uid_tag in fixed else wanted
    return out


def _included(key: str, level: Level) -> list[Attribute]:
    if key.lower() == "all":
        return [a for a in ATTRIBUTES if level_index(a.level) <= level_index(level)]
    attr = lookup(key)
    if attr is None or level_index(attr.level) > level_index(level):
        return []  # lower-level attributes are never returned (PS3.18 10.6.3.3)
    return [attr]


def _limit(raw: str | None, max_limit: int) -> tuple[int, bool]:
    if raw is None or raw == "":
        return max_limit, False
    value = _int(raw, "limit")
    if value < 1:
        raise BadRequest(f"limit must be a positive integer, not {raw[:40]!r}")
    return min(value, max_limit), value > max_limit


def _offset(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    value = _int(raw, "offset")
    if value < 0:
        raise BadRequest(f"offset must be >= 0, not {raw[:40]!r}")
    return value


def _int(raw: str, what: str) -> int:
    if not raw.strip().isdigit() or len(raw) > 18:
        raise BadRequest(f"{what} must be a non-negative integer, not {raw[:40]!r}")
    return int(raw)


def condition(attr: Attribute, value: str) -> Condition:
    """The bound SQL condition for one match key (the value is not empty)."""
    if attr.match == "uid":
        return _uid_condition(attr, value.split(","))
    if attr.match == "date":
        return _date_condition(attr, value)
    if attr.match == "time":
        return _time_condition(attr, value)
    if attr.match == "int":
        return Condition(f"{_col(attr)} = ?", (_int(value, attr.keyword),))
    if attr.match == "list":
        wanted = [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]
        return Condition(f"list_has_any({_col(attr)}, ?::VARCHAR[])", (wanted,))
    return _text_condition(attr, value)


def _col(attr: Attribute) -> str:
    return f"{_ALIAS[attr.level]}.{attr.column}"


def _uid_condition(attr: Attribute, values: Iterable[str]) -> Condition:
    uids = [check_uid(v.strip(), attr.keyword) for v in values]
    return Condition(f"list_contains(?::VARCHAR[], {_col(attr)})", (uids,))


def _date(text: str, attr: Attribute) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError as exc:
        raise BadRequest(f"malformed {attr.keyword}: {text[:40]!r}") from exc


def _date_condition(attr: Attribute, value: str) -> Condition:
    found = _DATE_RE.fullmatch(value)
    if not found or not (found.group(1) or found.group(3)):
        raise BadRequest(f"malformed {attr.keyword}: {value[:40]!r} (YYYYMMDD or a range)")
    lo, dash, hi = found.groups()
    if not dash:
        return Condition(f"{_col(attr)} = ?", (_date(lo, attr),))
    parts, params = [], []
    if lo:
        parts.append(f"{_col(attr)} >= ?")
        params.append(_date(lo, attr))
    if hi:
        parts.append(f"{_col(attr)} <= ?")
        params.append(_date(hi, attr))
    if lo and hi and params[0] > params[1]:
        raise BadRequest(f"empty {attr.keyword} range: {value!r}")
    return Condition(" AND ".join(parts), tuple(params))


def _time_condition(attr: Attribute, value: str) -> Condition:
    lo, dash, hi = value.partition("-")
    for part in (lo, hi):
        if part and not _TIME_RE.fullmatch(part.replace(":", "")):
            raise BadRequest(f"malformed {attr.keyword}: {value[:40]!r}")
    lo, hi = lo.replace(":", ""), hi.replace(":", "")
    col = f"replace({_col(attr)}, ':', '')"
    if not dash:
        return Condition(f"starts_with({col}, ?)", (lo,))
    parts, params = [], []
    if lo:
        parts.append(f"{col} >= ?")
        params.append(lo)
    if hi:  # "-1200" includes 120059: compare only as many digits as given
        parts.append(f"substr({col}, 1, {len(hi)}) <= ?")
        params.append(hi)
    if not parts:
        raise BadRequest(f"malformed {attr.keyword}: {value!r}")
    return Condition(" AND ".join(parts), tuple(params))


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _text_condition(attr: Attribute, value: str) -> Condition:
    if len(value) > 256:
        raise BadRequest(f"{attr.keyword} match value too long")
    alternatives = [v for v in value.split("\\") if v] or [value]
    fold = attr.vr == "PN"  # names match case-insensitively, codes and IDs exactly
    col = f"lower({_col(attr)})" if fold else _col(attr)
    parts, params = [], []
    for alt in alternatives:
        text = alt.lower() if fold else alt
        if "*" in text or "?" in text:
            parts.append(f"{col} LIKE ? ESCAPE '\\'")
            params.append(_like(text))
        else:
            parts.append(f"{col} = ?")
            params.append(text)
    return Condition("(" + " OR ".join(parts) + ")", tuple(params))


def run_search(view: IndexView, search: Search, base_url: str) -> Page:
    """One page of results as DICOM JSON objects (keys ascending)."""
    columns = [f"{_col(a)} AS \"{a.tag}\"" for a in search.returned if a.column]
    keys = ["st.StudyInstanceUID AS _study"]
    if search.level != "study":
        keys.append("se.SeriesInstanceUID AS _series")
    if search.level == "instance":
        keys.append("i.SOPInstanceUID AS _instance")
    where = " AND ".join(c.sql for c in search.conditions) or "true"
    sql = (f"SELECT {', '.join(columns + keys)} FROM {_FROM[search.level]} "  # noqa: S608
           f"WHERE {where} ORDER BY {_ORDER[search.level]} LIMIT ? OFFSET ?")
    params = [p for c in search.conditions for p in c.params]
    rows = view.rows(sql, [*params, search.limit + 1, search.offset])
    more = len(rows) > search.limit
    items = [_render(row, search, base_url) for row in rows[: search.limit]]
    return Page(items, more, search.warnings)


def _render(row: dict[str, Any], search: Search, base_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in search.returned:
        if attr.keyword == "RetrieveURL":
            out[attr.tag] = element(attr, retrieve_url(base_url, row))
        elif attr.keyword == "InstanceAvailability":
            out[attr.tag] = element(attr, "ONLINE")
        else:
            out[attr.tag] = element(attr, row.get(attr.tag) if attr.column else None)
    return out


def retrieve_url(base_url: str, row: dict[str, Any]) -> str:
    url = f"{base_url}/studies/{row['_study']}"
    if "_series" in row:
        url += f"/series/{row['_series']}"
    if "_instance" in row:
        url += f"/instances/{row['_instance']}"
    return url
