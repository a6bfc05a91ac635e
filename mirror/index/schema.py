"""Versioned Arrow schemas of the metadata index tables.

Bump :data:`SCHEMA_VERSION` whenever a column is added, removed or retyped: a build that
finds a previous snapshot with another version rebuilds everything instead of reusing rows.

Every table is partitioned by ``collection_id`` (hive ``collection_id=<id>/`` folders); the
column is declared in the schema but not stored inside the Parquet files, DuckDB adds it
back from the folder name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 2  # 2: series.sidecar_stamp
PARTITION_COLUMN = "collection_id"
TABLES = ("collections", "patients", "studies", "series", "instances", "errors", "volumes")

_NOT_ID = re.compile(r"[^a-z0-9]+")


class Kind(Enum):
    """How a DICOM value is stored (decided by the element's VR and VM)."""

    STR = "str"  # AE AS CS LO LT PN SH ST TM UI UT (time stays text: TM has many forms)
    INT = "int"  # IS US SS UL SL, VM 1
    FLOAT = "float"  # DS FD FL, VM 1
    DATE = "date"  # DA
    STRS = "strs"  # string VRs with VM > 1
    INTS = "ints"  # integer VRs with VM > 1
    FLOATS = "floats"  # decimal VRs with VM > 1


@dataclass(frozen=True, slots=True)
class Element:
    """One DICOM attribute extracted into the ``instances`` table."""

    keyword: str
    kind: Kind
    sequence: str = ""  # read from the first item of this sequence (PET radiopharmaceutical)


def _e(kind: Kind, *keywords: str, sequence: str = "") -> tuple[Element, ...]:
    return tuple(Element(k, kind, sequence) for k in keywords)


S, N, F, D = Kind.STR, Kind.INT, Kind.FLOAT, Kind.DATE
SS, NN, FF = Kind.STRS, Kind.INTS, Kind.FLOATS

ELEMENTS: tuple[Element, ...] = (
    # patient
    *_e(S, "PatientID", "PatientName", "PatientSex", "PatientAge", "EthnicGroup"),
    *_e(D, "PatientBirthDate"),
    *_e(F, "PatientWeight", "PatientSize"),
    *_e(S, "PatientIdentityRemoved"),
    *_e(SS, "SpecificCharacterSet"),
    *_e(SS, "DeidentificationMethod"),
    # study
    *_e(S, "StudyInstanceUID", "StudyTime", "StudyDescription", "StudyID", "AccessionNumber"),
    *_e(D, "StudyDate"),
    # series
    *_e(S, "SeriesInstanceUID", "SeriesTime", "SeriesDescription", "Modality"),
    *_e(S, "BodyPartExamined", "ProtocolName", "PatientPosition", "Laterality"),
    *_e(S, "FrameOfReferenceUID"),
    *_e(D, "SeriesDate"),
    *_e(N, "SeriesNumber"),
    # instance
    *_e(S, "SOPInstanceUID", "SOPClassUID", "AcquisitionTime", "ContentTime"),
    *_e(N, "InstanceNumber", "AcquisitionNumber"),
    *_e(D, "AcquisitionDate", "ContentDate"),
    *_e(SS, "ImageType"),
    *_e(S, "BurnedInAnnotation", "LossyImageCompression"),
    # equipment
    *_e(S, "Manufacturer", "ManufacturerModelName", "StationName", "InstitutionName"),
    *_e(S, "DeviceSerialNumber"),
    *_e(SS, "SoftwareVersions"),
    # image plane
    *_e(FF, "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"),
    *_e(F, "SliceThickness", "SpacingBetweenSlices", "SliceLocation"),
    # image pixel description
    *_e(N, "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit"),
    *_e(N, "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames"),
    *_e(S, "PhotometricInterpretation", "RescaleType"),
    *_e(F, "RescaleSlope", "RescaleIntercept"),
    *_e(FF, "WindowCenter", "WindowWidth"),
    # CT acquisition
    *_e(F, "KVP", "ReconstructionDiameter", "DataCollectionDiameter", "GantryDetectorTilt"),
    *_e(F, "TableHeight", "SpiralPitchFactor", "CTDIvol", "RevolutionTime"),
    *_e(N, "XRayTubeCurrent", "Exposure", "ExposureTime", "GeneratorPower"),
    *_e(SS, "ConvolutionKernel", "ScanOptions"),
    *_e(S, "RotationDirection", "FilterType"),
    *_e(FF, "FocalSpots"),
    # contrast
    *_e(S, "ContrastBolusAgent", "ContrastBolusRoute"),
    *_e(F, "ContrastBolusVolume"),
    # MR acquisition
    *_e(F, "RepetitionTime", "EchoTime", "InversionTime", "MagneticFieldStrength"),
    *_e(F, "FlipAngle", "ImagingFrequency", "NumberOfAverages", "PixelBandwidth"),
    *_e(S, "SequenceName", "MRAcquisitionType", "ImagedNucleus", "ReceiveCoilName"),
    *_e(S, "TransmitCoilName"),
    *_e(SS, "ScanningSequence", "SequenceVariant"),
    *_e(N, "EchoTrainLength"),
    # PET
    *_e(S, "Radiopharmaceutical", "RadiopharmaceuticalStartTime",
        sequence="RadiopharmaceuticalInformationSequence"),
    *_e(F, "RadionuclideTotalDose", "RadionuclideHalfLife",
        sequence="RadiopharmaceuticalInformationSequence"),
    *_e(S, "DecayCorrection", "Units", "CountsSource", "AttenuationCorrectionMethod"),
    *_e(S, "ReconstructionMethod"),
    *_e(SS, "CorrectedImage", "SeriesType"),
    *_e(F, "DecayFactor"),
)

SERIES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("collection_id", "str"), ("PatientID", "str"), ("StudyInstanceUID", "str"),
    ("SeriesInstanceUID", "str"), ("Modality", "str"), ("BodyPartExamined", "str"),
    ("SeriesDescription", "str"), ("Manufacturer", "str"), ("ManufacturerModelName", "str"),
    ("SeriesDate", "date"), ("StudyDate", "date"), ("SeriesNumber", "int"),
    ("PatientAge", "str"), ("PatientSex", "str"), ("StudyDescription", "str"),
    ("SOPClassUID", "str"), ("TransferSyntaxUID", "str"), ("PhotometricInterpretation", "str"),
    ("instanceCount", "int"), ("series_size_MB", "float"), ("license_short_name", "str"),
    ("Collection", "str"), ("series_path", "str"), ("content_hash", "str"),
    ("series_version", "int"), ("synced_at", "timestamp"), ("run_id", "str"),
    ("unreadable_instances", "int"),
    # the listing's size/mtime/ETag of the sidecar this row was built from: an unchanged
    # stamp means the sidecar is not read again (mirror.index.discover.stamp)
    ("sidecar_stamp", "str"),
)


def collection_id(collection: str) -> str:
    """IDC's form of a collection name: ``TCGA-LUAD`` -> ``tcga_luad``."""
    cid = _NOT_ID.sub("_", collection.lower()).strip("_")
    return cid or "unknown"


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "bool": pa.bool_(),
        "strs": pa.list_(pa.string()),
        "ints": pa.list_(pa.int64()),
        "floats": pa.list_(pa.float64()),
    }[kind]


def _schema(columns: tuple[tuple[str, str], ...]) -> pa.Schema:
    import pyarrow as pa

    fields = [pa.field(name, _arrow_type(kind)) for name, kind in columns]
    return pa.schema(fields, metadata={"mirror_schema_version": str(SCHEMA_VERSION)})


def instances_columns() -> tuple[tuple[str, str], ...]:
    extra = (("collection_id", "str"), ("Collection", "str"), ("file_path", "str"),
             ("file_size", "int"), ("md5", "str"), ("TransferSyntaxUID", "str"),
             ("read_error", "str"))
    return extra + tuple((e.keyword, e.kind.value) for e in ELEMENTS)


COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "series": SERIES_COLUMNS,
    "studies": (
        ("collection_id", "str"), ("PatientID", "str"), ("StudyInstanceUID", "str"),
        ("StudyDate", "date"), ("StudyDescription", "str"), ("PatientAge", "str"),
        ("series_count", "int"), ("instanceCount", "int"), ("study_size_MB", "float"),
        ("modalities", "strs"),
    ),
    "patients": (
        ("collection_id", "str"), ("PatientID", "str"), ("PatientSex", "str"),
        ("study_count", "int"), ("series_count", "int"), ("instanceCount", "int"),
    ),
    "collections": (
        ("collection_id", "str"), ("Collection", "str"), ("patient_count", "int"),
        ("study_count", "int"), ("series_count", "int"), ("instanceCount", "int"),
        ("collection_size_MB", "float"), ("modalities", "strs"), ("licenses", "strs"),
    ),
    "errors": (
        ("collection_id", "str"), ("SeriesInstanceUID", "str"), ("file_path", "str"),
        ("element", "str"), ("reason", "str"),
    ),
    # One row per OME-Zarr stack written by ``mirror convert`` (mirror.convert.volume_rows).
    "volumes": (
        ("collection_id", "str"), ("SeriesInstanceUID", "str"), ("Collection", "str"),
        ("stack_id", "int"), ("role", "str"), ("store_path", "str"), ("image_path", "str"),
        ("axes", "strs"), ("shape", "ints"), ("dtype", "str"), ("spacing", "floats"),
        ("levels", "int"), ("flags", "strs"), ("tilt_deg", "float"), ("regular", "bool"),
        ("missing_slices", "ints"), ("fourth_dim", "str"), ("n_instances", "int"),
        ("Modality", "str"), ("content_hash", "str"),
    ),
}


def table_columns(table: str) -> tuple[tuple[str, str], ...]:
    """``(column, kind)`` pairs of ``table``, partition column included."""
    return instances_columns() if table == "instances" else COLUMNS[table]


@cache  # Arrow schemas are immutable; building one costs more than a small part write
def schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table`` (including the partition column)."""
    return _schema(table_columns(table))


@cache
def file_schema(table: str) -> pa.Schema:
    """The schema stored inside each Parquet file (the partition column lives in the path)."""
    full = schema(table)
    return full.remove(full.get_field_index(PARTITION_COLUMN))
