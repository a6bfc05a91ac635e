"""Pure units: schema contract, value conversion, pointer and garbage collection rules."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from pydicom.datadict import dictionary_VM, dictionary_VR
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSfloat, PersonName

from mirror.errors import IntegrityError, UsageError
from mirror.index.extract import ValueProblem, convert, parse_date
from mirror.index.publish import Pointer, collect_garbage, new_snapshot_id
from mirror.index.schema import (
    ELEMENTS,
    SCHEMA_VERSION,
    TABLES,
    Kind,
    collection_id,
    file_schema,
    schema,
)
from mirror.index.tables import part_collection, rebase_key
from mirror.index.views import empty_view_sql
from mirror.layout import InstanceEntry, SeriesSidecar
from mirror.storage.memory import MemoryStore

_STR_VRS = {"AE", "AS", "CS", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_INT_VRS = {"IS", "SL", "SS", "UL", "US"}
_FLOAT_VRS = {"DS", "FD", "FL"}


def _kind_for(keyword: str) -> Kind:
    vr, multi = dictionary_VR(keyword), dictionary_VM(keyword) != "1"
    if vr == "DA":
        return Kind.DATE
    for vrs, one, many in ((_STR_VRS, Kind.STR, Kind.STRS), (_INT_VRS, Kind.INT, Kind.INTS),
                           (_FLOAT_VRS, Kind.FLOAT, Kind.FLOATS)):
        if vr in vrs:
            return many if multi else one
    raise AssertionError(f"{keyword}: unexpected VR {vr}")


def test_instances_table_has_90_plus_elements_typed_by_the_dicom_dictionary():
    assert len(ELEMENTS) >= 90
    assert len({e.keyword for e in ELEMENTS}) == len(ELEMENTS)
    for element in ELEMENTS:
        assert element.kind == _kind_for(element.keyword), element.keyword


def test_required_researcher_fields_are_present():
    names = set(schema("instances").names)
    assert {"KVP", "XRayTubeCurrent", "Exposure", "SliceThickness", "SpacingBetweenSlices",
            "ConvolutionKernel", "ContrastBolusAgent", "RepetitionTime", "EchoTime",
            "InversionTime", "MagneticFieldStrength", "SequenceName", "ScanningSequence",
            "FlipAngle", "Radiopharmaceutical", "RadionuclideTotalDose", "RadionuclideHalfLife",
            "RadiopharmaceuticalStartTime", "DecayCorrection", "Units", "CorrectedImage",
            "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
            "PixelSpacing", "Rows", "Columns", "BitsAllocated", "BitsStored",
            "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "WindowCenter",
            "WindowWidth", "file_path", "file_size", "md5"} <= names


def test_series_schema_uses_idc_index_column_names():
    idc = ["collection_id", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
           "BodyPartExamined", "SeriesDescription", "Manufacturer", "ManufacturerModelName",
           "SeriesDate", "StudyDate", "SeriesNumber", "PatientAge", "PatientSex",
           "StudyDescription", "SOPClassUID", "TransferSyntaxUID", "PhotometricInterpretation",
           "instanceCount", "series_size_MB", "license_short_name"]
    names = schema("series").names
    assert names[: len(idc)] == idc
    assert {"Collection", "series_path", "content_hash", "series_version", "synced_at",
            "run_id"} <= set(names)
    assert str(schema("series").field("StudyDate").type) == "date32[day]"
    assert str(schema("instances").field("PixelSpacing").type) == "list<item: double>"


@pytest.mark.parametrize("table", TABLES)
def test_every_schema_is_versioned_and_partitioned_by_collection(table):
    full = schema(table)
    assert full.metadata[b"mirror_schema_version"] == str(SCHEMA_VERSION).encode()
    assert "collection_id" in full.names and "collection_id" not in file_schema(table).names


@pytest.mark.parametrize("table", TABLES)
def test_empty_views_have_the_arrow_schema(table):
    con = duckdb.connect()
    con.execute(empty_view_sql(table))
    got = con.sql(f"SELECT * FROM {table}").to_arrow_table().schema
    want = schema(table)
    assert got.names == want.names
    for name in want.names:
        assert str(got.field(name).type).replace("large_", "").replace("Etc/UTC", "UTC") in {
            str(want.field(name).type), str(want.field(name).type).replace("item", "l")}, name


@pytest.mark.parametrize(("name", "cid"), [("TCGA-LUAD", "tcga_luad"),
                                           ("NSCLC Radiogenomics", "nsclc_radiogenomics"),
                                           ("QIN-HEADNECK", "qin_headneck"), ("--", "unknown"),
                                           ("CPTAC-CCRCC", "cptac_ccrcc")])
def test_collection_id_matches_idc_form(name, cid):
    assert collection_id(name) == cid


def test_convert_follows_pydicom_types():
    assert convert(DSfloat("2.5"), Kind.FLOAT) == 2.5
    assert convert(IS("12"), Kind.INT) == 12
    assert convert(MultiValue(DSfloat, ["0.5", "0.7"]), Kind.FLOATS) == [0.5, 0.7]
    assert convert(DSfloat("0.5"), Kind.FLOATS) == [0.5]  # VM 1 value of a 1-n element
    assert convert(MultiValue(str, ["ORIGINAL", "PRIMARY"]), Kind.STRS) == ["ORIGINAL", "PRIMARY"]
    assert convert(PersonName("Doe^John"), Kind.STR) == "Doe^John"
    assert convert("20040119", Kind.DATE) == dt.date(2004, 1, 19)
    assert convert("", Kind.FLOAT) is None and convert(None, Kind.STRS) is None
    # a VM violation on a text element keeps pydicom's raw text
    assert convert(MultiValue(str, ["A", "B"]), Kind.STR) == "A\\B"


def test_convert_rejects_values_that_do_not_fit():
    with pytest.raises(ValueProblem):
        convert(MultiValue(DSfloat, ["1", "2"]), Kind.FLOAT)
    with pytest.raises(ValueProblem):
        convert("abc", Kind.FLOAT)
    with pytest.raises(ValueProblem):
        convert("20041399", Kind.DATE)


@pytest.mark.parametrize("text", ["2004.01.19", "20040119", " 20040119 "])
def test_parse_date_accepts_dicom_and_acr_nema_forms(text):
    assert parse_date(text) == dt.date(2004, 1, 19)


def test_pointer_roundtrip_and_garbage():
    pointer = Pointer("s1", "2026-11-22T00:00:00+00:00", 1,
                      {"series": ("_index/snapshots/s1/series/collection_id=a/part-0.parquet",)},
                      {"series": 3})
    assert Pointer.from_json(pointer.to_json()) == pointer
    with pytest.raises(IntegrityError):
        Pointer.from_json(b"{}")
    with pytest.raises(IntegrityError):
        Pointer.from_json(b"\xff")


def test_snapshot_ids_sort_by_creation_time():
    a = new_snapshot_id(dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC))
    b = new_snapshot_id(dt.datetime(2026, 1, 1, 0, 0, 0, 2, tzinfo=dt.UTC))
    assert a < b and a.startswith("20260101T000000000001Z-")


def _snapshot(store, snapshot_id, published=True):
    store.put_bytes(f"_index/snapshots/{snapshot_id}/series/collection_id=a/part-0.parquet", b"x")
    if published:
        store.put_bytes(f"_index/snapshots/{snapshot_id}/pointer.json", b"{}")


def test_garbage_collection_keeps_newest_published_and_inflight_builds():
    store = MemoryStore("gc-units")
    for sid in ("s1", "s2", "s3", "s4"):
        _snapshot(store, sid)
    _snapshot(store, "s2b", published=False)  # crashed build older than current
    _snapshot(store, "s9", published=False)  # newer: may be a build in flight
    deleted = collect_garbage(store, 2, current="s4")
    assert deleted == ["s1", "s2", "s2b"]
    left = {k.split("/")[2] for k in store.list("_index/snapshots/")}
    assert left == {"s3", "s4", "s9"}
    with pytest.raises(UsageError):
        collect_garbage(store, 0, current="s4")


def test_partition_key_helpers():
    key = "_index/snapshots/old/instances/collection_id=tcga_luad/part-1.parquet"
    assert part_collection(key) == "tcga_luad"
    assert rebase_key(key, "new") == "_index/snapshots/new/instances/collection_id=tcga_luad/part-1.parquet"


def test_one_shot_queries_bind_only_the_views_they_name():
    from mirror.index.views import tables_named_in

    assert tables_named_in("SELECT * FROM Series s JOIN studies USING (StudyInstanceUID)") == (
        "studies", "series")
    assert tables_named_in("SELECT 42") == TABLES
    assert "instances" in tables_named_in("select count(*) from INSTANCES")


def test_batches_give_every_worker_several_tasks_largest_first():
    from mirror.index.build import _batches, batch_size

    assert batch_size(3000, 2, 500) == 375  # 8 tasks for 2 workers, not 6 uneven ones
    assert batch_size(1_000_000, 2, 500) == 500  # never above the cap
    assert batch_size(40, 2, 500) == 50  # tiny builds: per-task cost wins
    assert batch_size(10, 1, 20) == 20
    sidecars = [SeriesSidecar(f"1.{i}", "1.9", "P", "C-1" if i < 5 else "C-2", "CT", f"p/{i}",
                              tuple(InstanceEntry(f"{j}.dcm", "0" * 32, 1) for j in range(n)),
                              (n, n, "", ""), 1, "r", "2026-01-01T00:00:00+00:00", "t", "")
                for i, n in enumerate([3, 3, 3, 3, 3, 1, 1, 8])]
    batches = _batches(sidecars, 6)
    sizes = [sum(s.image_count for s in b) for _, b in batches]
    assert sizes == sorted(sizes, reverse=True) == [10, 6, 6, 3]
    assert {cid for cid, _ in batches} == {"c_1", "c_2"}
    assert sorted(s.series_uid for _, b in batches for s in b) == sorted(s.series_uid for s in sidecars)
