"""Header scan: one :class:`SliceHeader` per image plane (a frame of a multi-frame file counts).

Only top-level attributes are read (Philips hides conflicting positions in private sequences,
Siemens enhanced files nest other SeriesInstanceUIDs); multi-frame geometry comes from the
functional groups, per-frame entries overriding shared ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.values import convert_value

from mirror.errors import ConversionError

# SOP classes that never carry a pixel grid we can stack.
NON_IMAGE_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
    "1.2.840.10008.5.1.4.1.1.481.5": "RTPLAN",
    "1.2.840.10008.5.1.4.1.1.88.": "SR",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.9.": "waveform",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
}
SEG_SOP = "1.2.840.10008.5.1.4.1.1.66.4"
RTDOSE_SOP = "1.2.840.10008.5.1.4.1.1.481.2"
MAX_PLANE_PIXELS = 1 << 27  # 11k x 11k: beyond this (whole-slide images) a plane is not a slice
MAX_FRAMES = 100_000
PLANAR_MODALITIES = frozenset({"CR", "DX", "MG", "IO", "PX", "XA", "RF", "SC", "OT", "US", "SM"})


@dataclass(frozen=True, slots=True)
class SliceHeader:
    """What assembly and value mapping need to know about one plane, no pixels."""

    name: str  # instance file name inside the series folder
    frame: int | None  # frame index for multi-frame files, None for single-frame
    sop_uid: str
    sop_class: str
    series_uid: str
    modality: str
    manufacturer: str
    frame_of_ref: str
    transfer_syntax: str
    rows: int
    cols: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    pixel_rep: int
    image_type: tuple[str, ...]
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing)
    spacing_source: str  # "PixelSpacing", "ImagerPixelSpacing" or ""
    iop: tuple[float, ...] | None
    ipp: tuple[float, float, float] | None
    slope: float
    intercept: float
    rescale_type: str
    modality_lut: bool  # a Modality LUT Sequence replaces slope/intercept
    dose_scaling: float | None
    padding: int | None
    dims: tuple[tuple[str, str], ...]  # 4th-dimension candidates, (key, value) in priority order
    instance_number: int | None
    n_frames: int
    nominal_spacing: float | None  # SpacingBetweenSlices, else SliceThickness (single slices)
    window: tuple[float, float] | None
    # Where the PixelData value starts in the file and its length (-1: undefined, i.e.
    # encapsulated): lets the decoder read just the pixel bytes instead of parsing the
    # whole file again. offset -1 = unknown (decode through pydicom).
    pixel_offset: int = -1
    pixel_length: int = -1

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type

    @property
    def has_geometry(self) -> bool:
        return self.ipp is not None and self.iop is not None and self.pixel_spacing is not None


@dataclass(frozen=True, slots=True)
class Skipped:
    """An instance that yields no image, and why."""

    name: str
    sop_uid: str
    reason: str


# VRs whose values do not depend on SpecificCharacterSet and need no context to convert
_PLAIN_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "IS", "DS", "CS", "UI", "AS"})


class Fields:
    """Top-level header values for the scan, converted straight from the raw elements.

    ``Dataset.get`` builds a DataElement through pydicom's hooks on the first access of
    every value, about three times the cost of converting the value itself (0.9 vs 0.3 ms
    for all of a CT header); the scan reads ~30 values from every file of a series and is
    the one serial step of a conversion. So plain VRs (numbers, codes, UIDs) go through
    pydicom's own ``convert_value``; text in a character set, sequences, implicit-VR and
    ambiguous elements, and every other attribute are the Dataset's, as before
    (tests/convert/test_units.py compares the two on pydicom's test files).
    """

    __slots__ = ("_ds",)

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def get(self, keyword: str, default: Any = None) -> Any:
        tag = tag_for_keyword(keyword)
        elem = self._ds.get_item(tag) if tag is not None else None
        if elem is None:
            return default
        if not isinstance(elem, RawDataElement) or elem.VR not in _PLAIN_VRS:
            return self._ds.get(keyword, default)
        if not elem.value:
            return empty_value_for_VR(elem.VR)
        try:
            return convert_value(elem.VR, elem)
        except Exception:  # malformed value: pydicom's full path decides, as before
            return self._ds.get(keyword, default)

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._ds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ds, name)


Header = Dataset | Fields


def scan_instance(name: str, fp: BinaryIO) -> list[SliceHeader] | Skipped:
    """Read one instance's header; planes for images, :class:`Skipped` for anything else."""
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        return Skipped(name, "", f"unreadable header: {exc}")
    location = pixel_location(fp, ds)
    fields = Fields(ds)
    sop_class = str(fields.get("SOPClassUID", ""))
    sop_uid = str(fields.get("SOPInstanceUID", ""))
    for prefix, kind in NON_IMAGE_SOP_PREFIXES.items():
        if sop_class.startswith(prefix):
            return Skipped(name, sop_uid, f"non-image object: {kind}")
    if "Rows" not in fields or "Columns" not in fields:
        return Skipped(name, sop_uid, "no pixel grid (Rows/Columns missing)")
    try:
        return _planes(name, fields, location)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        return Skipped(name, sop_uid, f"malformed image header: {exc}")


_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_LONG_VRS = (b"OB", b"OW", b"UN")
_LITTLE_ENDIAN = frozenset(
    {str(pydicom.uid.ExplicitVRLittleEndian), str(pydicom.uid.ImplicitVRLittleEndian)}
    | {str(u) for u in pydicom.uid.JPEG2000TransferSyntaxes}
)


def pixel_location(fp: BinaryIO, ds: Dataset) -> tuple[int, int]:
    """(offset, length) of the PixelData value right after a ``stop_before_pixels`` read.

    pydicom rewinds to the start of the element it stopped at, so the next bytes are the
    PixelData element header. (-1, -1) whenever anything is unexpected (deflated or big
    endian syntaxes, another pixel keyword, unseekable streams): the decoder then parses
    the file with pydicom as before.
    """
    if transfer_syntax(ds) not in _LITTLE_ENDIAN or "ExtendedOffsetTable" in ds:
        return -1, -1  # extended offset tables: frame lookup stays with pydicom
    try:
        start = fp.tell()
        head = fp.read(12)
    except (OSError, ValueError):
        return -1, -1
    if len(head) < 8 or head[:4] != _PIXEL_DATA_TAG:
        return -1, -1
    implicit = getattr(ds, "original_encoding", (None, None))[0]
    if implicit:  # tag, 4-byte length
        length, offset = int.from_bytes(head[4:8], "little"), start + 8
    elif head[4:6] in _LONG_VRS and len(head) == 12:  # tag, VR, 2 reserved, 4-byte length
        length, offset = int.from_bytes(head[8:12], "little"), start + 12
    else:
        return -1, -1
    return offset, (-1 if length == 0xFFFFFFFF else length)


def _planes(name: str, ds: Header, location: tuple[int, int]) -> list[SliceHeader] | Skipped:
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    base = _common(name, ds, n_frames)
    base["pixel_offset"], base["pixel_length"] = location
    problem = _implausible(base)
    if problem:
        return Skipped(name, base["sop_uid"], problem)
    if n_frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [_single(base, ds)]
    return [_frame(base, ds, f) for f in range(n_frames)]


def transfer_syntax(ds: Header) -> str:
    """The file's transfer syntax; for files without one, what the parser found."""
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if uid and pydicom.uid.UID(uid).is_transfer_syntax:
        return uid
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        return str(pydicom.uid.ExplicitVRBigEndian)
    if implicit:
        return str(pydicom.uid.ImplicitVRLittleEndian)
    return str(pydicom.uid.ExplicitVRLittleEndian)


def _common(name: str, ds: Header, n_frames: int) -> dict[str, Any]:
    ts = transfer_syntax(ds)
    return {
        "name": name,
        "sop_uid": str(ds.get("SOPInstanceUID", "")),
        "sop_class": str(ds.get("SOPClassUID", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "modality": str(ds.get("Modality", "")),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "frame_of_ref": str(ds.get("FrameOfReferenceUID", "")),
        "transfer_syntax": str(ts),
        "rows": int(ds.Rows),
        "cols": int(ds.Columns),
        "samples": int(ds.get("SamplesPerPixel", 1) or 1),
        "photometric": str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
        "bits_allocated": int(ds.get("BitsAllocated", 16)),
        "bits_stored": int(ds.get("BitsStored", ds.get("BitsAllocated", 16))),
        "pixel_rep": int(ds.get("PixelRepresentation", 0) or 0),
        "image_type": tuple(str(v).upper() for v in _multi(ds.get("ImageType", ()))),
        "rescale_type": str(ds.get("RescaleType", "")),
        "modality_lut": "ModalityLUTSequence" in ds,
        "dose_scaling": _opt_float(ds.get("DoseGridScaling")),
        "padding": _opt_int(ds.get("PixelPaddingValue")),
        "instance_number": _opt_int(ds.get("InstanceNumber")),
        "n_frames": n_frames,
        "window": _window(ds),
    }


def _implausible(base: dict[str, Any]) -> str:
    """Header values no real image has; they would make the decoder allocate absurdly."""
    rows, cols, samples = base["rows"], base["cols"], base["samples"]
    if rows < 1 or cols < 1 or samples not in (1, 3):
        return f"implausible image header: Rows={rows} Columns={cols} SamplesPerPixel={samples}"
    if rows * cols * samples > MAX_PLANE_PIXELS or base["n_frames"] > MAX_FRAMES:
        return f"oversize image: {rows}x{cols}x{samples}, {base['n_frames']} frames"
    if base["bits_allocated"] not in (1, 8, 16, 32, 64):
        return f"unsupported BitsAllocated={base['bits_allocated']}"
    return ""


def _single(base: dict[str, Any], ds: Header) -> SliceHeader:
    spacing, source = _spacing(ds)
    return SliceHeader(
        frame=None,
        pixel_spacing=spacing,
        spacing_source=source,
        iop=_vector(ds.get("ImageOrientationPatient"), 6),
        ipp=_ipp(ds.get("ImagePositionPatient")),
        slope=_float(ds.get("RescaleSlope"), 1.0),
        intercept=_float(ds.get("RescaleIntercept"), 0.0),
        dims=_dims(ds),
        nominal_spacing=_nominal(ds),
        **base,
    )


def _frame(base: dict[str, Any], ds: Header, f: int) -> SliceHeader:
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per = _nth(ds.get("PerFrameFunctionalGroupsSequence"), f)
    measures = _group(per, shared, "PixelMeasuresSequence")
    spacing = _vector(_attr(measures, "PixelSpacing") or ds.get("PixelSpacing"), 2)
    iop = _vector(
        _attr(_group(per, shared, "PlaneOrientationSequence"), "ImageOrientationPatient")
        or ds.get("ImageOrientationPatient"),
        6,
    )
    ipp = _ipp(_attr(_group(per, shared, "PlanePositionSequence"), "ImagePositionPatient"))
    if ipp is None:
        ipp = _grid_frame_position(ds, iop, f)
    transform = _group(per, shared, "PixelValueTransformationSequence")
    base = dict(base, rescale_type=str(_attr(transform, "RescaleType") or base["rescale_type"]))
    return SliceHeader(
        frame=f,
        pixel_spacing=(spacing[0], spacing[1]) if spacing else None,
        spacing_source="PixelSpacing" if spacing else "",
        iop=iop,
        ipp=ipp,
        slope=_float(_attr(transform, "RescaleSlope") or ds.get("RescaleSlope"), 1.0),
        intercept=_float(_attr(transform, "RescaleIntercept") or ds.get("RescaleIntercept"), 0.0),
        dims=_frame_dims(per) + _dims(ds),
        nominal_spacing=_float(_attr(measures, "SpacingBetweenSlices"), 0.0) or _nominal(ds),
        **base,
    )


def _grid_frame_position(
    ds: Header, iop: tuple[float, ...] | None, f: int
) -> tuple[float, float, float] | None:
    """RTDOSE-style frames: plane f sits at IPP + GridFrameOffsetVector[f] along the normal."""
    origin = _ipp(ds.get("ImagePositionPatient"))
    offsets = ds.get("GridFrameOffsetVector")
    if origin is None or iop is None or offsets is None or len(_multi(offsets)) <= f:
        return origin if f == 0 else None
    n = _normal(iop)
    step = float(_multi(offsets)[f])
    return (origin[0] + step * n[0], origin[1] + step * n[1], origin[2] + step * n[2])


def _normal(iop: Sequence[float]) -> tuple[float, float, float]:
    r, c = iop[0:3], iop[3:6]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


_DIM_KEYWORDS = (
    ("echo", "EchoNumbers"),
    ("temporal", "TemporalPositionIdentifier"),
    ("trigger", "TriggerTime"),
    ("acquisition", "AcquisitionNumber"),
    ("bvalue", "DiffusionBValue"),
    ("pet_frame", "FrameReferenceTime"),
    ("image_index", "ImageIndex"),
    ("content_time", "ContentTime"),
)


def _dims(ds: Header) -> tuple[tuple[str, str], ...]:
    out = []
    for key, keyword in _DIM_KEYWORDS:
        value = ds.get(keyword)
        if value is not None and str(value) != "":
            out.append((key, str(value)))
    return tuple(out)


def _frame_dims(per: Dataset | None) -> tuple[tuple[str, str], ...]:
    out = []
    segment = _attr(_first(_attr(per, "SegmentIdentificationSequence")), "ReferencedSegmentNumber")
    if segment is not None:
        out.append(("segment", str(segment)))
    content = _first(_attr(per, "FrameContentSequence"))
    for key, keyword in (
        ("stack", "StackID"),
        ("temporal", "TemporalPositionIndex"),
        ("acquisition", "FrameAcquisitionNumber"),
    ):
        value = _attr(content, keyword)
        if value is not None and str(value) != "":
            out.append((key, str(value)))
    echo = _attr(_first(_attr(per, "MREchoSequence")), "EffectiveEchoTime")
    if echo is not None:
        out.append(("echo", str(echo)))
    return tuple(out)


def _spacing(ds: Header) -> tuple[tuple[float, float] | None, str]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        vec = _vector(ds.get(keyword), 2)
        if vec is not None and vec[0] > 0 and vec[1] > 0:
            return (vec[0], vec[1]), keyword
    return None, ""


def _nominal(ds: Header) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _opt_float(ds.get(keyword))
        if value is not None and value > 0:
            return value
    return None


def _window(ds: Header) -> tuple[float, float] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    c, w = _multi(center), _multi(width)
    try:
        return (float(c[0]), float(w[0])) if c and w else None
    except (TypeError, ValueError):
        return None


def _ipp(value: Any) -> tuple[float, float, float] | None:
    vec = _vector(value, 3)
    return (vec[0], vec[1], vec[2]) if vec else None


def _vector(value: Any, size: int) -> tuple[float, ...] | None:
    """A finite numeric vector of exactly ``size`` values, or None (hostile headers: "", NaN)."""
    if value is None:
        return None
    items = _multi(value)
    if len(items) != size:
        return None
    try:
        out = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _multi(value: Any) -> list[Any]:
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return [value] if value not in (None, "") else []
    return list(value)


def _first(seq: Any) -> Dataset | None:
    return seq[0] if seq is not None and len(seq) > 0 else None


def _nth(seq: Any, index: int) -> Dataset | None:
    return seq[index] if seq is not None and len(seq) > index else None


def _attr(ds: Dataset | None, keyword: str) -> Any:
    return None if ds is None else ds.get(keyword)


def _group(per: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    return _first(_attr(per, keyword)) or _first(_attr(shared, keyword))


def _float(value: Any, default: float) -> float:
    parsed = _opt_float(value)
    return default if parsed is None else parsed


def _opt_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def require_uid(headers: Sequence[SliceHeader]) -> str:
    """The one top-level SeriesInstanceUID the planes share (files of one series folder)."""
    uids = {h.series_uid for h in headers}
    if len(uids) != 1:
        raise ConversionError(f"instances disagree on SeriesInstanceUID: {sorted(uids)[:3]}")
    return uids.pop()
