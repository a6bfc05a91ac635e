"""Deterministic DICOM Part-10 files for the simulated archive.

Every byte is a pure function of an :class:`InstanceSpec` (which carries the seed and the
instance's version), so nothing large is ever held in memory: files are regenerated on
demand. Pixel data is appended by hand after the pydicom-encoded header: (7FE0,0010) is the
last element of an image, so this is valid Part-10, and it lets the file size be known
from the header alone.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import struct
from dataclasses import dataclass
from datetime import date

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",
    "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "NM": "1.2.840.10008.5.1.4.1.1.20",
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
NON_IMAGE_MODALITIES = frozenset({"RTSTRUCT", "SEG", "SR", "RWV", "PR", "KO", "REG"})
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.7433.1.1"


def make_uid(*parts: object) -> str:
    """A stable ``2.25.<38 digits>`` UID derived from ``parts`` (always 43 characters)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    number = 10**37 + int.from_bytes(digest[:16], "big") % (9 * 10**37)
    return f"2.25.{number}"


def _ds(value: float) -> str:
    # Fixed-width decimal strings (valid DS) keep every slice's header the same length,
    # so a series' FileSize is n x one header + pixels, without encoding every file.
    return f"{value:+012.4f}"


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """Everything that determines one instance's bytes."""

    seed: int
    collection: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    frame_uid: str
    modality: str
    index: int  # 0-based slice position along the normal
    version: int
    instance_number: int
    acquisition_number: int
    rows: int
    cols: int
    series_number: int
    series_description: str
    body_part: str
    manufacturer: str
    study_date: date
    pixel_spacing: float = 0.8
    slice_thickness: float = 2.5


def is_image(modality: str) -> bool:
    return modality not in NON_IMAGE_MODALITIES


def _orientation(modality: str) -> tuple[list[float], list[float]]:
    # MR is sagittal so converters meet a non-axial normal; CT/PT are axial.
    if modality == "MR":
        return [0.0, 1.0, 0.0, 0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]  # normal = row x col
    return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0]


# Elements that differ between the slices of one series (tag + VR bytes, little endian).
# All are fixed width, so a per-series template header is patched in place instead of
# re-encoding every slice with pydicom (which costs more than generating the pixels).
_VARYING_TAGS = {
    b"\x02\x00\x03\x00UI": "sop",  # MediaStorageSOPInstanceUID
    b"\x08\x00\x18\x00UI": "sop",  # SOPInstanceUID
    b"\x08\x00\x33\x00TM": "time",  # ContentTime
    b"\x20\x00\x12\x00IS": "acq",  # AcquisitionNumber
    b"\x20\x00\x13\x00IS": "inst",  # InstanceNumber
    b"\x20\x00\x32\x00DS": "ipp",  # ImagePositionPatient
    b"\x20\x00\x41\x10DS": "sloc",  # SliceLocation
}
_TEMPLATE_SOP = "2.25." + "1" * 38


def _content_time(version: int) -> str:
    """HHMMSS: noon plus one second per replacement (a valid TM for every version)."""
    seconds = (12 * 3600 + version) % 86400
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def _varying(spec: InstanceSpec) -> dict[str, str]:
    _, normal = _orientation(spec.modality)
    z = spec.index * spec.slice_thickness
    origin = [-spec.cols * spec.pixel_spacing / 2, -spec.rows * spec.pixel_spacing / 2, 0.0]
    ipp = [_ds(o + z * n) for o, n in zip(origin, normal, strict=True)]
    return {
        "sop": spec.sop_uid,
        "time": _content_time(spec.version),
        "acq": f"{spec.acquisition_number:04d}",
        "inst": f"{spec.instance_number:06d}",
        "ipp": "\\".join(ipp),
        "sloc": _ds(z),
    }


def _common(spec: InstanceSpec) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASSES.get(spec.modality, SECONDARY_CAPTURE)
    ds.SOPInstanceUID = spec.sop_uid
    ds.StudyDate = spec.study_date.strftime("%Y%m%d")
    ds.SeriesDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.StudyTime = "120000"
    ds.ContentTime = _varying(spec)["time"]
    ds.Modality = spec.modality
    ds.Manufacturer = spec.manufacturer
    ds.SeriesDescription = spec.series_description
    ds.PatientName = f"{spec.patient_id}^SIM"
    ds.PatientID = spec.patient_id
    ds.PatientSex = "O"
    ds.PatientAge = "050Y"
    ds.BodyPartExamined = spec.body_part
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = spec.series_number
    ds.InstanceNumber = _varying(spec)["inst"]
    ds.FrameOfReferenceUID = spec.frame_uid
    ds.ClinicalTrialProtocolID = spec.collection
    return ds


def _image_header(spec: InstanceSpec) -> Dataset:
    ds = _common(spec)
    values = _varying(spec)
    ds.AcquisitionNumber = values["acq"]
    ds.ImagePositionPatient = values["ipp"].split("\\")
    ds.ImageOrientationPatient = _orientation(spec.modality)[0]
    ds.SliceLocation = values["sloc"]
    ds.PixelSpacing = [spec.pixel_spacing, spec.pixel_spacing]
    ds.SliceThickness = spec.slice_thickness
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if spec.modality == "CT":
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = 40
        ds.WindowWidth = 400
    elif spec.modality == "PT":
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 0.5
        ds.Units = "BQML"
    return ds


def _non_image_header(spec: InstanceSpec) -> Dataset:
    ds = _common(spec)
    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = spec.frame_uid
    roi.ROIName = "GTV"
    ds.StructureSetLabel = "SIM"
    ds.StructureSetROISequence = Sequence([roi])
    return ds


@functools.lru_cache(maxsize=8)
def _phantom(rows: int, cols: int) -> tuple[np.ndarray, ...]:
    """The slice-independent parts of the phantom (read-only, memoised per matrix size)."""
    yy, xx = np.mgrid[-1.0 : 1.0 : rows * 1j, -1.0 : 1.0 : cols * 1j]
    body = (xx / 0.85) ** 2 + (yy / 0.65) ** 2 < 1.0
    spine = xx**2 + (yy - 0.45) ** 2 < 0.01
    base = (np.where(body, 1064.0, 24.0) + 900.0 * spine).astype(np.float32)
    left = ((xx - 0.35) ** 2 + yy**2).astype(np.float32)
    right = ((xx + 0.35) ** 2 + yy**2).astype(np.float32)
    arrays = (base, body.astype(np.float32), left, right, xx[0].astype(np.float32))
    for array in arrays:
        array.flags.writeable = False
    return arrays


def pixels(spec: InstanceSpec) -> np.ndarray:
    """A phantom-like slice: smooth anatomy that drifts with z plus a little seeded noise."""
    base, body, left, right, x = _phantom(spec.rows, spec.cols)
    phase = spec.index / 12.0
    lung_r2 = (0.22 + 0.05 * np.sin(phase)) ** 2
    img = base - 800.0 * ((left < lung_r2) | (right < lung_r2))
    img += 60.0 * np.cos(3.0 * x + phase)[None, :] * body
    rng = np.random.default_rng([spec.seed, spec.index, spec.version, spec.rows])
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    out: np.ndarray = np.clip(img, 0, 4095).astype("<u2")
    return out


def _encode(ds: Dataset, spec: InstanceSpec) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = UID(spec.sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "MIRRORSIM1"
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _pixel_element_header(nbytes: int) -> bytes:
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, nbytes)


def encode_header(spec: InstanceSpec) -> bytes:
    """The file up to the pixel data, encoded by pydicom from scratch."""
    if is_image(spec.modality):
        return _encode(_image_header(spec), spec)
    return _encode(_non_image_header(spec), spec)


@functools.lru_cache(maxsize=64)
def _template(spec: InstanceSpec) -> bytes:
    return encode_header(spec)


def header_bytes(spec: InstanceSpec) -> bytes:
    """:func:`encode_header`, fast: the series template with this slice's values patched in."""
    key = dataclasses.replace(
        spec, index=0, version=0, instance_number=1, acquisition_number=1, sop_uid=_TEMPLATE_SOP
    )
    patched = _patch(_template(key), _varying(spec))
    return patched if patched is not None else encode_header(spec)


def _patch(template: bytes, values: dict[str, str]) -> bytes | None:
    out = bytearray(template)
    for marker, key in _VARYING_TAGS.items():
        at = out.find(marker)
        if at < 0:
            continue  # non-image objects carry no geometry
        length = int.from_bytes(out[at + 6 : at + 8], "little")
        pad = b"\0" if marker.endswith(b"UI") else b" "
        value = values[key].encode()
        value += pad * (len(value) % 2)
        if len(value) != length:
            return None  # a value of another width: fall back to a full encode
        out[at + 8 : at + 8 + length] = value
    return bytes(out)


def instance_size(spec: InstanceSpec) -> int:
    """Size of :func:`instance_bytes` without generating pixels."""
    size = len(header_bytes(spec))
    if is_image(spec.modality):
        size += 12 + spec.rows * spec.cols * 2
    return size


def instance_bytes(spec: InstanceSpec) -> bytes:
    """The complete Part-10 file."""
    head = header_bytes(spec)
    if not is_image(spec.modality):
        return head
    data = pixels(spec).tobytes()
    return head + _pixel_element_header(len(data)) + data
