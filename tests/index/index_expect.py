"""What pydicom itself reads for an indexed element (the oracle for value tests)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydicom.multival import MultiValue
from pydicom.valuerep import DA

from mirror.index.schema import Element, Kind


def _date(value: str) -> dt.date:
    # pydicom's own DA parser (accepts ACR-NEMA "YYYY.MM.DD" too)
    parsed = DA(value)
    return dt.date(parsed.year, parsed.month, parsed.day)


def pydicom_value(ds: Any, element: Element) -> Any:
    source = ds
    if element.sequence:
        if not ds.get(element.sequence):
            return None
        source = ds[element.sequence][0]
    value = source.get(element.keyword)
    if value is None or value == "":
        return None
    items = list(value) if isinstance(value, MultiValue) else [value]
    cast = {Kind.INT: int, Kind.INTS: int, Kind.FLOAT: float, Kind.FLOATS: float,
            Kind.DATE: _date}.get(element.kind, str)
    if element.kind in (Kind.STRS, Kind.INTS, Kind.FLOATS):
        return [cast(v) for v in items]
    if element.kind is Kind.STR:
        return "\\".join(str(v) for v in items)
    assert len(items) == 1, (element.keyword, value)
    return cast(items[0])
