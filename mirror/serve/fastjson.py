"""DICOM JSON straight from pydicom's raw elements: the same output as ``to_json_dict``.

Converting every element to a ``DataElement`` (value classes, validation hooks) costs about
80% of a metadata answer. Elements of the common little-endian VRs are encoded here from
their bytes; sequences, ambiguous or unknown VRs, other character sets and anything that
does not parse go through pydicom for that element alone. ``tests/serve`` checks the
output equals pydicom's on every test file pydicom ships.
"""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SPLIT = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"})
SINGLE = frozenset({"LT", "ST", "UT", "UR"})
STRIP_EACH = frozenset({"SH", "LO", "UC", "PN"})
BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q",
           "UV": "Q"}
_CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1",
           "ISO_IR 192": "utf_8"}
BulkUri = Callable[[Any], str]


class _Fallback(Exception):
    """This element needs pydicom's own conversion."""


def dataset_json(ds: Any, bulk_uri: Callable[[str], str], threshold: int) -> dict[str, Any]:
    """DICOM JSON of ``ds`` (keys in tag order); elements pydicom cannot read are left out.

    ``bulk_uri(path)`` names a bulk value: ``"GGGGEEEE"`` at the top level, or
    ``"GGGGEEEE/<item>/GGGGEEEE..."`` inside sequences (so every URI can be resolved again).
    """
    codec = _codec(ds)
    out: dict[str, Any] = {}

    def top(elem: Any) -> str:
        return bulk_uri(f"{elem.tag:08X}")

    for raw in list(ds.elements()):  # raw elements, not converted
        tag = raw.tag
        try:
            out[f"{tag:08X}"] = _raw_json(raw, codec, top, threshold)
        except (_Fallback, ValueError, struct.error):
            try:
                elem = ds[tag]
                out[f"{tag:08X}"] = elem.to_json_dict(_nested(elem, bulk_uri), threshold)
            except Exception as exc:  # an invalid value drops that element, as pydicom would
                log.debug("element %08X left out of the metadata: %s", tag, exc)
    return out


def _nested(elem: Any, bulk_uri: Callable[[str], str]) -> BulkUri:
    """A pydicom bulk handler naming elements inside ``elem``'s items by their path."""
    if elem.VR != "SQ":
        return lambda e: bulk_uri(f"{e.tag:08X}")
    paths = _paths(elem, "")

    def handler(inner: Any) -> str:
        return bulk_uri(paths.get(id(inner), f"{inner.tag:08X}"))
    return handler


def _paths(seq: Any, prefix: str) -> dict[int, str]:
    paths: dict[int, str] = {}
    for index, item in enumerate(seq.value):
        here = f"{prefix}{seq.tag:08X}/{index}/"
        for inner in item:
            paths[id(inner)] = f"{here}{inner.tag:08X}"
            if inner.VR == "SQ":
                paths.update(_paths(inner, here))
    return paths


def _codec(ds: Any) -> str | None:
    raw = ds.get_item(0x00080005)
    if raw is None:
        return "latin_1"
    try:
        value = ds[0x00080005].value
    except Exception:
        return None
    names = [value] if isinstance(value, str) else list(value or [])
    return _CODECS.get(names[0].strip() if names else "") if len(names) <= 1 else None


def _vr(raw: Any) -> str:
    if raw.VR == "UN":
        raise _Fallback  # pydicom replaces UN by the dictionary VR when it knows the tag
    if raw.VR is not None:
        return str(raw.VR)
    if raw.tag >> 16 & 1:
        raise _Fallback  # private, implicit: pydicom decides (private dictionary or UN)
    from pydicom.datadict import dictionary_VR

    try:
        vr = str(dictionary_VR(raw.tag))
    except KeyError as exc:
        raise _Fallback from exc
    if " or " in vr:
        raise _Fallback
    return vr


def _raw_json(raw: Any, codec: str | None, bulk_uri: BulkUri, threshold: int) -> dict[str, Any]:
    if not hasattr(raw, "value_tell") or not raw.is_little_endian or raw.value is None:
        raise _Fallback  # already converted, big endian or deferred
    vr = _vr(raw)
    data: bytes = raw.value
    if vr in BINARY:
        return _binary(raw, vr, data, bulk_uri, threshold)
    if vr in NUMBERS:
        size = struct.calcsize(NUMBERS[vr])
        if len(data) % size:
            raise _Fallback
        values = list(struct.unpack(f"<{len(data) // size}{NUMBERS[vr]}", data))
        return {"vr": vr, "Value": values} if values else {"vr": vr}
    if vr == "AT":
        pairs = struct.unpack(f"<{len(data) // 2}H", data[: len(data) // 4 * 4])
        tags = [f"{g:04X}{e:04X}" for g, e in zip(pairs[::2], pairs[1::2], strict=True)]
        return {"vr": vr, "Value": tags} if tags else {"vr": vr}
    if vr in ("IS", "DS"):
        return _decimal(vr, data)
    if vr == "PN" or vr in SPLIT or vr in SINGLE:
        return _text(vr, data, codec)
    raise _Fallback


def _binary(raw: Any, vr: str, data: bytes, bulk_uri: BulkUri, threshold: int) -> dict[str, Any]:
    if not data:
        return {"vr": vr}
    if len(data) > (threshold // 4) * 3:
        return {"vr": vr, "BulkDataURI": bulk_uri(raw)}
    return {"vr": vr, "InlineBinary": base64.b64encode(data).decode()}


def _decimal(vr: str, data: bytes) -> dict[str, Any]:
    text = data.decode("latin_1").rstrip("\0 ")
    if not text.strip():
        return {"vr": vr}
    values: list[Any] = []
    for part in text.split("\\"):
        part = part.strip()  # noqa: PLW2901 - the stripped form is the value
        if not part:
            values.append(None)
        elif vr == "IS":
            values.append(_integer(part))
        else:
            values.append(float(part))
    return {"vr": vr, "Value": values}


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise _Fallback from None
        return int(number)


def _text(vr: str, data: bytes, codec: str | None) -> dict[str, Any]:
    if codec is None:
        raise _Fallback
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _Fallback from exc
    if vr in SINGLE:
        value = text.rstrip("\0 ")
        return {"vr": vr, "Value": [value]} if value else {"vr": vr}
    if vr in STRIP_EACH:
        parts = [p.rstrip("\0 ") for p in text.split("\\")]
    else:  # pydicom strips only the end of the whole value for these
        parts = text.rstrip("\0 ").split("\\")
    if vr == "AE":
        parts = [p.strip() for p in parts]
    if len(parts) == 1 and not parts[0]:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [_person(p) for p in parts]}
    return {"vr": vr, "Value": parts}


def _person(text: str) -> dict[str, str]:
    groups = text.split("=")
    out = {"Alphabetic": groups[0]}
    if len(groups) > 1:
        out["Ideographic"] = groups[1]
    if len(groups) > 2:
        out["Phonetic"] = groups[2]
    return out
