"""The index on an S3 destination (a real moto server on 127.0.0.1)."""

from __future__ import annotations

import pytest
from index_tree import commit_series, make_spec

from mirror.index import connect, query
from mirror.index.build import build_index
from mirror.index.export import export_cohort
from mirror.index.publish import POINTER_KEY, read_pointer
from mirror.layout import SIDECAR_NAME
from mirror.storage import open_store
from mirror.storage.s3 import S3Store

pytestmark = pytest.mark.slow
S3_OPTIONS = {"key": "testing", "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}


@pytest.fixture
def s3(make_s3_store) -> S3Store:  # type: ignore[no-untyped-def]
    return make_s3_store(tag="index")


@pytest.fixture
def s3_tree(s3: S3Store):
    specs = [make_spec("TCGA-LUAD", "P1", 1, slices=3), make_spec("TCGA-LUAD", "P1", 2, slices=2),
             make_spec("LIDC-IDRI", "L1", 1, template="MR_small.dcm", slices=2)]
    return {s.series_uid: commit_series(s3, s) for s in specs}


def test_build_query_and_incremental_on_s3(s3, s3_tree):
    first = build_index(s3)
    assert (first.series, first.instances) == (3, 7)
    assert s3.exists(POINTER_KEY)
    rows = query(s3, "SELECT collection_id, count(*) AS n FROM instances GROUP BY ALL "
                     "ORDER BY 1").to_pylist()
    assert rows == [{"collection_id": "lidc_idri", "n": 2}, {"collection_id": "tcga_luad", "n": 5}]
    commit_series(s3, make_spec("TCGA-LUAD", "P2", 1, slices=2))
    second = build_index(s3)
    assert (second.extracted, second.carried, second.instances) == (1, 3, 9)
    # carried part files were copied server-side into the new snapshot
    assert all(k.startswith(f"_index/snapshots/{second.snapshot_id}/")
               for files in read_pointer(s3).tables.values() for k in files)
    con = connect(s3)
    try:
        assert con.sql("SELECT count(*) FROM series").fetchone() == (4,)
    finally:
        con.close()


def test_query_by_url_uses_the_endpoint_from_the_environment(s3, s3_tree, moto_endpoint, monkeypatch):
    build_index(s3)
    monkeypatch.setenv("MIRROR_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    table = query(s3.url, "SELECT Modality FROM series ORDER BY 1")
    assert table.column(0).to_pylist() == ["CT", "CT", "MR"]


def test_export_dicom_from_s3_to_local_and_back(s3, s3_tree, tmp_path, moto_endpoint, monkeypatch):
    build_index(s3)
    local = open_store(str(tmp_path / "cohort"))
    report = export_cohort(s3, "Modality = 'CT'", local.url, fmt="dicom")
    assert (report.copied, report.files) == (2, 5)
    for sidecar in s3_tree.values():
        expect = sidecar.modality == "CT"
        assert local.exists(f"{sidecar.path}/{SIDECAR_NAME}") is expect
    build_index(local)
    monkeypatch.setenv("MIRROR_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = s3.url.removeprefix("s3://").split("/")[0]
    back = export_cohort(local, "true", f"s3://{bucket}/copy", fmt="dicom")
    assert back.copied == 2
    copy = S3Store(f"s3://{bucket}/copy", endpoint_url=moto_endpoint, storage_options=S3_OPTIONS)
    for sidecar in (s for s in s3_tree.values() if s.modality == "CT"):
        for entry in sidecar.instances:
            assert copy.info(f"{sidecar.path}/{entry.name}").md5 == entry.md5
