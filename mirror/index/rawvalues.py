"""Column values straight from a header's raw element bytes, for the common encodings.

pydicom turns each raw element into a ``DataElement`` through hooks, validation and value
classes (``DSfloat``, ``IS``, ``UID``, ``MultiValue``), and :func:`mirror.index.extract.convert`
then turns that back into a plain column value. For ~70 indexed elements per file that cost
as much as parsing the file itself. Here the common, unambiguous encodings (ASCII text of the
VRs below, binary numbers) go from bytes to the column value in one step, splitting and
stripping exactly as ``pydicom.values`` does. Everything else (other VRs, ``UN``, non-ASCII
text, ISO 2022 escapes, a value that does not fit its column) raises :class:`Unsupported`
or ``ValueError``, and the caller reads the element through pydicom instead, so both paths
give the same row and the same problems (the corpus test compares them file by file).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from datetime import date
from typing import Any

from mirror.index.schema import Kind

_DATE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")

# How pydicom splits and strips each text VR (pydicom.values):
# multi_string: strip trailing spaces and NULs of the whole text, then split at "\".
# (convert_PN strips the bytes first: the same for ASCII; str() of an ASCII PersonName is
# its text.)
_STRIP_THEN_SPLIT = frozenset({"AS", "CS", "DA", "DS", "DT", "IS", "PN", "TM", "UI"})
# convert_text: split first, then strip trailing spaces and NULs of each value.
_SPLIT_THEN_STRIP = frozenset({"LO", "SH", "UC"})
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_TEXT_LIKE = frozenset({"AE", "AS", "CS", "DT", "LO", "PN", "SH", "TM", "UC", "UI"})
_INTS = frozenset({"IS", "US", "SS", "UL", "SL"})
_FLOATS = frozenset({"DS", "FL", "FD"})

# VRs whose bytes give the column value of each kind directly. Outside these pairs pydicom's
# value classes matter (``int(DSfloat("2.5"))`` truncates, ``str(DSfloat)`` keeps the
# original text, ``IS("5.0")`` is 5), so those go the slow way.
FAST_VRS: dict[Kind, frozenset[str]] = {
    Kind.STR: _TEXT_LIKE,
    Kind.STRS: _TEXT_LIKE,
    Kind.INT: _INTS,
    Kind.INTS: _INTS,
    Kind.FLOAT: _FLOATS,
    Kind.FLOATS: _FLOATS,
    Kind.DATE: frozenset({"DA"}),
}


class ValueProblem(ValueError):
    """A header value that does not fit the column type."""


class Unsupported(ValueError):
    """An encoding this module does not decode; read the element through pydicom."""


def parse_date(text: str) -> date:
    """DICOM DA (``YYYYMMDD``, or ACR-NEMA ``YYYY.MM.DD``) as a date."""
    match = _DATE.match(text.strip())
    if not match:
        raise ValueProblem(f"not a DICOM date: {text[:40]!r}")
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as exc:
        raise ValueProblem(f"not a DICOM date: {text[:40]!r}") from exc


def text_items(data: bytes, vr: str) -> list[str]:
    """The values of a text element, split and stripped as pydicom does for ``vr``."""
    if not data.isascii() or b"\x1b" in data:
        raise Unsupported("non-ASCII text or ISO 2022 escape")
    text = data.decode("ascii")
    if vr in _STRIP_THEN_SPLIT:
        return text.rstrip(" \x00").split("\\")
    if vr in _SPLIT_THEN_STRIP:
        return [v.rstrip("\x00 ") for v in text.split("\\")]
    if vr == "AE":
        return [v.strip() for v in text.split("\\")]
    raise Unsupported(f"VR {vr}")


def binary_items(data: bytes, vr: str, little_endian: bool) -> list[int] | list[float]:
    """The values of a binary number element (``US``, ``SS``, ``UL``, ``SL``, ``FL``, ``FD``)."""
    code = _BINARY[vr]
    size = struct.calcsize(code)
    if len(data) % size:
        raise Unsupported(f"{len(data)} bytes is not a whole number of {vr} values")
    values: list[Any] = list(struct.unpack(f"{'<' if little_endian else '>'}{len(data) // size}"
                                           f"{code}", data))
    return values


_CAST: dict[Kind, Callable[[str], Any]] = {
    Kind.INT: int, Kind.INTS: int, Kind.FLOAT: float, Kind.FLOATS: float, Kind.DATE: parse_date,
}


def column_value(data: bytes, vr: str, little_endian: bool, kind: Kind) -> Any:
    """The column value of one raw element; raises ``ValueError`` when pydicom must decide.

    Mirrors :func:`mirror.index.extract.convert` applied to pydicom's value: all padding
    (pydicom's ``""``) is ``None``; list kinds get every value; a VM violation of a text
    column keeps the raw text; a number or date that does not parse, or several values in
    a single-value column, is left to the slow path, which records the problem.
    """
    if vr not in FAST_VRS[kind]:
        raise Unsupported(f"VR {vr} for a {kind.value} column")
    if not data:
        return None
    if vr in _BINARY:
        items: list[Any] = binary_items(data, vr, little_endian)
    else:
        items = text_items(data, vr)
        if items == [""]:
            return None
    if kind is Kind.STR:
        return "\\".join(items)
    if kind is Kind.STRS:
        return items
    cast = _CAST[kind]
    if kind is Kind.INTS or kind is Kind.FLOATS:
        return [cast(v) for v in items]
    if len(items) != 1:
        raise Unsupported(f"{len(items)} values where one is allowed")
    return cast(items[0])
