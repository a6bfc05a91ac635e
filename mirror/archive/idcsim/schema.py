"""IDC's Parquet schemas as ``idc-index-data`` 25 ships them (idc-source.md §2).

Column names, order and Arrow types are copied from the real files so the adapter reads
the simulated index exactly as it reads the published one.
"""

from __future__ import annotations

from typing import Any

_S = "large_string"
_I = "int64"
_D = "double"

IDC_INDEX: tuple[tuple[str, str], ...] = (
    ("collection_id", _S), ("analysis_result_id", _S), ("PatientID", _S),
    ("SeriesInstanceUID", _S), ("StudyInstanceUID", _S), ("source_DOI", _S),
    ("PatientAge", _S), ("PatientSex", _S), ("StudyDate", _S), ("StudyDescription", _S),
    ("BodyPartExamined", _S), ("Modality", _S), ("SOPClassUID", _S), ("sop_class_name", _S),
    ("TransferSyntaxUID", _S), ("transfer_syntax_name", _S),
    ("PhotometricInterpretation", _S), ("PixelRepresentation", _S), ("Manufacturer", _S),
    ("ManufacturerModelName", _S), ("SeriesDate", _S), ("SeriesDescription", _S),
    ("SeriesNumber", _S), ("instanceCount", _I), ("license_short_name", _S),
    ("series_init_idc_version", _I), ("series_revised_idc_version", _I), ("aws_bucket", _S),
    ("crdc_series_uuid", _S), ("series_aws_url", _S), ("series_size_MB", _D),
)  # fmt: skip

PRIOR_VERSIONS_INDEX: tuple[tuple[str, str], ...] = (
    ("collection_id", _S), ("PatientID", _S), ("SeriesInstanceUID", _S),
    ("StudyInstanceUID", _S), ("Modality", _S), ("gcs_bucket", _S), ("crdc_series_uuid", _S),
    ("series_size_MB", _D), ("series_aws_url", _S), ("aws_bucket", _S),
    ("min_idc_version", _I), ("max_idc_version", _I),
)  # fmt: skip

COLLECTIONS_INDEX: tuple[tuple[str, str], ...] = (
    ("collection_name", _S), ("collection_id", _S), ("subjects", _I), ("program_id", _S),
)  # fmt: skip

VERSION_METADATA_INDEX: tuple[tuple[str, str], ...] = (
    ("idc_version", _I), ("version_timestamp", _S),
)  # fmt: skip


def arrow_schema(columns: tuple[tuple[str, str], ...], version: str = "") -> Any:
    """The pyarrow schema, with IDC's ``idc_index_data_version`` metadata when given."""
    import pyarrow as pa

    types = {_S: pa.large_string(), _I: pa.int64(), _D: pa.float64()}
    schema = pa.schema([(name, types[kind]) for name, kind in columns])
    return schema.with_metadata({"idc_index_data_version": version}) if version else schema


__all__ = [
    "COLLECTIONS_INDEX",
    "IDC_INDEX",
    "PRIOR_VERSIONS_INDEX",
    "VERSION_METADATA_INDEX",
    "arrow_schema",
]
