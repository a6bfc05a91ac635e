"""Deterministic DICOM Part-10 files for the simulated archive.

Every byte is a pure function of an :class:`InstanceSpec` (which carries the seed and the
instance's version), so nothing large is ever held in memory: files are regenerated on
demand. Pixel data is appended by hand after the pydicom-encoded header: (7FE0,0010) is the
last element of an image, so this is valid Part-10, and it lets the file size be known
from the header alone.
"""

from __future__ import annotations

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
        return [0.0, 1.0, 0.0, 0.0, 0.0, -1.0], [1.0, 0.0, 0.0]
    return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0]


def _common(spec: InstanceSpec) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASSES.get(spec.modality, SECONDARY_CAPTURE)
    ds.SOPInstanceUID = spec.sop_uid
    ds.StudyDate = spec.study_date.strftime("%Y%m%d")
    ds.SeriesDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.StudyTime = "120000"
    ds.ContentTime = f"{120000 + spec.version:06d}"
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
    ds.InstanceNumber = f"{spec.instance_number:06d}"
    ds.FrameOfReferenceUID = spec.frame_uid
    ds.ClinicalTrialProtocolID = spec.collection
    return ds


def _image_header(spec: InstanceSpec) -> Dataset:
    ds = _common(spec)
    ds.AcquisitionNumber = f"{spec.acquisition_number:04d}"
    iop, normal = _orientation(spec.modality)
    z = spec.index * spec.slice_thickness
    origin = [-spec.cols * spec.pixel_spacing / 2, -spec.rows * spec.pixel_spacing / 2, 0.0]
    ds.ImagePositionPatient = [_ds(o + z * n) for o, n in zip(origin, normal, strict=True)]
    ds.ImageOrientationPatient = iop
    ds.SliceLocation = _ds(z)
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


def pixels(spec: InstanceSpec) -> np.ndarray:
    """A phantom-like slice: smooth anatomy that drifts with z plus a little seeded noise."""
    yy, xx = np.mgrid[-1.0 : 1.0 : spec.rows * 1j, -1.0 : 1.0 : spec.cols * 1j]
    phase = spec.index / 12.0
    body = (xx / 0.85) ** 2 + (yy / 0.65) ** 2 < 1.0
    lung_r = 0.22 + 0.05 * np.sin(phase)
    lungs = ((xx - 0.35) ** 2 + yy**2 < lung_r**2) | ((xx + 0.35) ** 2 + yy**2 < lung_r**2)
    spine = xx**2 + (yy - 0.45) ** 2 < 0.01
    img = np.where(body, 1064.0, 24.0) - 800.0 * lungs + 900.0 * spine
    img += 60.0 * np.cos(3.0 * xx + phase) * body
    rng = np.random.default_rng([spec.seed, spec.index, spec.version, spec.rows])
    img += rng.normal(0.0, 6.0, img.shape)
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


def header_bytes(spec: InstanceSpec) -> bytes:
    """The file up to (not including) the pixel data element."""
    if is_image(spec.modality):
        return _encode(_image_header(spec), spec)
    return _encode(_non_image_header(spec), spec)


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
