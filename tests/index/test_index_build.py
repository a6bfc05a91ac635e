"""Index build on a laid-out destination: values, incrementality, snapshots, bad headers."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from index_expect import pydicom_value
from index_tree import commit_series, make_spec, slice_bytes

from mirror.errors import StoreError
from mirror.index import build as build_mod
from mirror.index.build import build_index
from mirror.index.publish import POINTER_KEY, read_pointer
from mirror.index.schema import ELEMENTS
from mirror.index.views import query
from mirror.layout import SeriesSidecar
from mirror.storage.port import Store


def _rows(store: Store, sql: str) -> list[dict]:
    return query(store, sql).to_pylist()


@pytest.mark.slow
def test_every_indexed_value_equals_pydicoms_reading(store, tree):
    report = build_index(store)
    assert report.series == len(tree) and report.extracted == len(tree)
    rows = _rows(store, "SELECT * FROM instances ORDER BY file_path")
    assert len(rows) == sum(s.image_count for s in tree.values()) == report.instances
    checked = 0
    for row in rows:
        with store.open_read(row["file_path"]) as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
        for element in ELEMENTS:
            expected = pydicom_value(ds, element)
            assert row[element.keyword] == expected, (row["file_path"], element.keyword)
            checked += expected is not None
        assert row["TransferSyntaxUID"] == ds.file_meta.TransferSyntaxUID
        assert row["read_error"] is None
    assert checked > 40 * len(rows)  # the files really carry many of the elements


def test_instance_rows_carry_sidecar_md5_size_and_path(store, tree):
    build_index(store)
    rows = _rows(store, "SELECT file_path, md5, file_size, collection_id FROM instances")
    by_path = {r["file_path"]: r for r in rows}
    for sidecar in tree.values():
        for entry in sidecar.instances:
            row = by_path[f"{sidecar.path}/{entry.name}"]
            assert (row["md5"], row["file_size"]) == (entry.md5, entry.size)
            assert row["collection_id"] == sidecar.collection.lower().replace("-", "_")


def test_pet_radiopharmaceutical_fields_come_from_the_sequence(store, tree):
    build_index(store)
    (row,) = _rows(store, "SELECT DISTINCT Radiopharmaceutical, RadionuclideTotalDose, "
                          "RadionuclideHalfLife, RadiopharmaceuticalStartTime, Units, "
                          "CorrectedImage FROM instances WHERE Modality = 'PT'")
    assert row == {"Radiopharmaceutical": "Fluorodeoxyglucose", "RadionuclideTotalDose": 370e6,
                   "RadionuclideHalfLife": 6586.2, "RadiopharmaceuticalStartTime": "101500.00",
                   "Units": "BQML", "CorrectedImage": ["ATTN", "DECY"]}


def test_series_table_uses_idc_columns_and_sidecar_facts(store, tree):
    build_index(store)
    rows = {r["SeriesInstanceUID"]: r for r in _rows(store, "SELECT * FROM series")}
    assert set(rows) == set(tree)
    for uid, sidecar in tree.items():
        row = rows[uid]
        assert row["instanceCount"] == sidecar.image_count
        assert row["series_size_MB"] == pytest.approx(sidecar.total_size / 1e6)
        assert row["content_hash"] == sidecar.content_hash
        assert row["series_path"] == sidecar.path
        assert row["Collection"] == sidecar.collection
        assert row["license_short_name"] == "CC BY 4.0"
    ge = [r for r in rows.values() if r["Manufacturer"] == "GE MEDICAL SYSTEMS"]
    assert len(ge) == 1 and ge[0]["Modality"] == "CT" and ge[0]["collection_id"] == "tcga_luad"
    (coll,) = _rows(store, "SELECT * FROM collections WHERE collection_id = 'tcga_luad'")
    assert coll["series_count"] == 3 and coll["patient_count"] == 2
    assert coll["modalities"] == ["CT", "MR"]
    studies = _rows(store, "SELECT * FROM studies")
    assert sum(s["series_count"] for s in studies) == len(tree)


def test_only_committed_series_are_indexed(store, tree):
    spec = make_spec("TCGA-LUAD", "TCGA-99", 1, slices=2)
    sidecar = commit_series(store, spec)
    # the same series, staged by an in-flight sync: never read
    store.put_bytes(f".staging/run-2/{sidecar.path}/_series.json", sidecar.to_json())
    # a series whose sidecar is not written yet (files only): not committed
    store.delete(f"{sidecar.path}/_series.json")
    report = build_index(store)
    assert report.series == len(tree)
    assert _rows(store, "SELECT count(*) AS n FROM series WHERE PatientID = 'TCGA-99'") == [{"n": 0}]


@pytest.mark.slow
def test_incremental_build_after_add_change_and_withdraw(store, tree):
    first = build_index(store)
    uids = sorted(tree)
    # add a series
    added = commit_series(store, make_spec("NEW-COLL", "N-1", 1, slices=2))
    # change one: new content, version 2 (fewer slices)
    changed = tree[uids[0]]
    spec = make_spec(changed.collection, changed.patient_id, 99, slices=2, version=2)
    spec.series_uid, spec.study_uid = changed.series_uid, changed.study_uid
    store.delete_prefix(changed.path + "/")
    commit_series(store, spec)
    # withdraw one (moved away with its sidecar)
    gone = tree[uids[1]]
    store.delete_prefix(gone.path + "/")

    second = build_index(store)
    assert second.snapshot_id != first.snapshot_id
    assert (second.extracted, second.removed) == (2, 1)
    assert second.carried == len(tree) - 2
    series = {r["SeriesInstanceUID"]: r for r in _rows(store, "SELECT * FROM series")}
    assert gone.series_uid not in series and added.series_uid in series
    assert series[changed.series_uid]["series_version"] == 2
    assert series[changed.series_uid]["instanceCount"] == 2
    inst = _rows(store, "SELECT SeriesInstanceUID, count(*) AS n FROM instances GROUP BY ALL")
    counts = {r["SeriesInstanceUID"]: r["n"] for r in inst}
    assert gone.series_uid not in counts
    assert counts[changed.series_uid] == 2 and counts[added.series_uid] == 2
    assert sum(counts.values()) == second.instances


def test_unchanged_rebuild_reads_no_headers_and_no_sidecars(store, tree, monkeypatch):
    build_index(store)
    calls = []
    monkeypatch.setattr("mirror.index.extract.read_header",
                        lambda fh: calls.append(1) or pytest.fail("header re-read"))
    monkeypatch.setattr("mirror.index.tasks.SeriesSidecar.from_json",
                        lambda raw: pytest.fail("sidecar re-read"))
    report = build_index(store)
    assert (report.extracted, report.carried, report.series) == (0, len(tree), len(tree))
    assert not calls
    full = _rows(store, "SELECT count(*) AS n FROM instances")
    assert full == [{"n": sum(s.image_count for s in tree.values())}]


def test_full_rebuild_rereads_everything(store, tree):
    build_index(store)
    report = build_index(store, full=True)
    assert report.extracted == len(tree) and report.carried == 0


class CrashBeforePointer:
    """A store that fails the LATEST swap, as a build killed before publishing would."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def put_bytes(self, key: str, data: bytes) -> None:
        if key == POINTER_KEY or key.endswith("/pointer.json"):
            raise StoreError("injected crash before the pointer swap")
        self.inner.put_bytes(key, data)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.mark.slow
def test_crashed_build_leaves_previous_snapshot_visible(store, tree):
    first = build_index(store)
    before = _rows(store, "SELECT SeriesInstanceUID FROM series ORDER BY 1")
    commit_series(store, make_spec("NEW-COLL", "N-1", 1, slices=2))
    with pytest.raises(StoreError):
        build_index(CrashBeforePointer(store))  # type: ignore[arg-type]
    assert read_pointer(store).snapshot_id == first.snapshot_id
    assert _rows(store, "SELECT SeriesInstanceUID FROM series ORDER BY 1") == before
    # the next build publishes, and garbage-collects the crashed leftovers
    third = build_index(store)
    assert len(_rows(store, "SELECT * FROM series")) == len(tree) + 1
    snapshots = {k.split("/")[2] for k in store.list("_index/snapshots/")}
    assert snapshots == {first.snapshot_id, third.snapshot_id}


def test_reader_sees_old_snapshot_while_build_writes(store, tree, monkeypatch):
    """A query made after the new snapshot's files exist but before the swap."""
    build_index(store)
    commit_series(store, make_spec("NEW-COLL", "N-1", 1, slices=2))
    seen = []
    real_publish = build_mod.publish

    def publish_after_query(st, pointer):
        seen.append(_rows(store, "SELECT count(*) AS n FROM series")[0]["n"])
        real_publish(st, pointer)

    monkeypatch.setattr(build_mod, "publish", publish_after_query)
    build_index(store)
    assert seen == [len(tree)]
    assert _rows(store, "SELECT count(*) AS n FROM series") == [{"n": len(tree) + 1}]


@pytest.mark.slow
def test_old_snapshots_are_garbage_collected_after_the_swap(store, tree):
    ids = [build_index(store, keep=2).snapshot_id for _ in range(4)]
    kept = {k.split("/")[2] for k in store.list("_index/snapshots/")}
    assert kept == set(ids[-2:])
    assert json.loads(store.get_bytes(POINTER_KEY))["snapshot_id"] == ids[-1]
    older = query(store, "SELECT count(*) AS n FROM series", snapshot=ids[-2]).to_pylist()
    assert older == [{"n": len(tree)}]


def test_schema_version_change_forces_full_rebuild(store, tree, monkeypatch):
    build_index(store)
    monkeypatch.setattr(build_mod, "SCHEMA_VERSION", 999)
    report = build_index(store)
    assert report.extracted == len(tree)
    assert read_pointer(store).schema_version == 999


def _bad_value_file(spec) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(slice_bytes(spec, 0)))
    ds.KVP = "98761"
    ds.StudyDate = "20041399"  # month 13: well-formed text, not a date
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue().replace(b"98761", b"9x761")


def test_malformed_headers_are_recorded_not_fatal(store, tree):
    spec = make_spec("TCGA-LUAD", "TCGA-BAD", 1, slices=1)
    good = slice_bytes(spec, 0)
    files = [good, b"not a dicom file at all" * 10, good[:400], _bad_value_file(spec)]
    sidecar = commit_series(store, spec, files)
    report = build_index(store)
    assert report.series == len(tree) + 1
    errors = _rows(store, "SELECT file_path, element, reason FROM errors ORDER BY file_path, element")
    by_file: dict[str, list] = {}
    for e in errors:
        by_file.setdefault(e["file_path"].rsplit("/", 1)[1], []).append(e)
    names = [e.name for e in sidecar.instances]
    assert names[0] not in by_file
    assert by_file[names[1]][0]["element"] is None and by_file[names[1]][0]["reason"]
    assert by_file[names[2]][0]["element"] is None
    assert {e["element"] for e in by_file[names[3]]} == {"KVP", "StudyDate"}
    rows = {r["file_path"].rsplit("/", 1)[1]: r for r in _rows(
        store, f"SELECT * FROM instances WHERE SeriesInstanceUID = '{spec.series_uid}'")}
    assert len(rows) == 4
    assert rows[names[1]]["read_error"] and rows[names[1]]["SOPInstanceUID"] is None
    assert rows[names[3]]["KVP"] is None and rows[names[3]]["StudyDate"] is None
    assert rows[names[3]]["Rows"] == 128  # the rest of that header is still indexed
    (series,) = _rows(store, f"SELECT * FROM series WHERE SeriesInstanceUID = '{spec.series_uid}'")
    assert series["unreadable_instances"] == 2 and series["instanceCount"] == 4


def test_corrupt_sidecar_is_skipped(store, tree):
    sidecar = next(iter(tree.values()))
    store.put_bytes(f"{sidecar.path}/_series.json", b"{not json")
    report = build_index(store)
    assert report.series == len(tree) - 1


def test_sidecar_roundtrip_helper_is_consistent(tree):
    for sidecar in tree.values():
        assert SeriesSidecar.from_json(sidecar.to_json()) == sidecar


def test_header_contradicting_the_sidecar_is_flagged(store, tree):
    spec = make_spec("TCGA-LUAD", "TCGA-MIX", 1, slices=1)
    other = make_spec("TCGA-LUAD", "TCGA-MIX", 2, slices=1)
    commit_series(store, spec, [slice_bytes(spec, 0), slice_bytes(other, 1)])
    build_index(store)
    errors = _rows(store, f"SELECT element, reason FROM errors WHERE SeriesInstanceUID = "
                          f"'{spec.series_uid}'")
    assert [e["element"] for e in errors] == ["SeriesInstanceUID"]
    assert other.series_uid in errors[0]["reason"]
    # the row keeps what the header says (the index reports, it does not rewrite)
    rows = _rows(store, f"SELECT SeriesInstanceUID FROM instances WHERE file_path LIKE "
                        f"'%{spec.series_uid}/%'")
    assert sorted(r["SeriesInstanceUID"] for r in rows) == sorted([spec.series_uid,
                                                                 other.series_uid])


def test_object_store_listing_stamps_skip_unchanged_sidecars(tmp_path, monkeypatch):
    """On an object store (fsspec listing details, not a local walk) the same holds."""
    from mirror.index import tasks
    from mirror.storage.memory import MemoryStore

    memory = MemoryStore(f"stamps-{tmp_path.name}")
    specs = [make_spec("COLL-A", f"P{i}", 1, slices=2) for i in range(3)]
    for spec in specs:
        commit_series(memory, spec)
    build_index(memory)
    parsed: list[str] = []
    real = SeriesSidecar.from_json
    monkeypatch.setattr(tasks.SeriesSidecar, "from_json",
                        lambda raw: parsed.append("x") or real(raw))
    assert build_index(memory).extracted == 0 and parsed == []
    again = make_spec("COLL-A", "P1", 1, slices=3, version=2)
    again.series_uid, again.study_uid = specs[1].series_uid, specs[1].study_uid
    commit_series(memory, again)  # same folder, new files and sidecar
    report = build_index(memory)
    assert (report.extracted, report.carried, len(parsed)) == (1, 2, 1)
    for prefix in ("COLL-A/", "_index/"):
        memory.delete_prefix(prefix)
