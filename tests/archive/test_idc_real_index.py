"""The adapter's listing over the real IDC v25 index shipped by ``idc-index-data`` (no
network: the Parquet files are installed), checked against the shared TCGA catalogue."""

from __future__ import annotations

import time

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mirror.archive.idc import IdcArchive
from mirror.archive.sim.presets import find_catalog

pytest.importorskip("idc_index_data")


@pytest.fixture(scope="module")
def archive() -> IdcArchive:
    return IdcArchive(env={})  # the installed package, AWS endpoint (never contacted here)


def test_a_collection_lists_fast_and_matches_the_catalogue(archive: IdcArchive) -> None:
    started = time.perf_counter()
    listed = archive.idc_series(["TCGA-LUAD"])
    elapsed = time.perf_counter() - started
    catalog = pq.read_table(
        find_catalog(),
        columns=["collection_id", "SeriesInstanceUID", "crdc_series_uuid", "analysis_result_id"],
    )
    catalog = catalog.filter(pc.equal(catalog["collection_id"], "tcga_luad"))
    catalog = catalog.filter(pc.is_null(catalog["analysis_result_id"]))
    expected = dict(zip(catalog["SeriesInstanceUID"].to_pylist(),
                        catalog["crdc_series_uuid"].to_pylist(), strict=True))  # fmt: skip
    assert {s.series_uid: s.crdc_series_uuid for s in listed} == expected
    assert all(s.collection == "TCGA-LUAD" and s.aws_bucket.startswith("idc-open") for s in listed)
    assert elapsed < 30  # a filtered read of one collection, not the whole 74 MB table


def test_real_rows_become_port_records(archive: IdcArchive) -> None:
    records = archive.series("tcga_luad", modality="ct")
    assert records and all(r.modality == "CT" and r.image_count > 0 for r in records)
    assert all(r.file_size > 0 and r.date_released is not None for r in records)
    assert archive.release.startswith("25.")


def test_collections_without_radiology_in_idc(archive: IdcArchive) -> None:
    # idc-source.md §3: v25 has no radiology for TCGA-GBM/LGG/HNSC; NBIA must serve those.
    names = {c.name for c in archive.collections()}
    assert "TCGA-LUAD" in names
    radiology = {"CT", "MR", "PT"}
    for name in ("TCGA-GBM", "TCGA-LGG", "TCGA-HNSC"):
        assert not [s for s in archive.idc_series([name]) if s.modality in radiology]
