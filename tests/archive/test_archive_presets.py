"""Presets: tiny is fast and small, demo is varied, tcga follows the real catalogue."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mirror.archive.sim import build_preset
from mirror.archive.sim.presets import CATALOG_NAME, catalog_candidates, find_catalog
from mirror.errors import UsageError


def test_tiny_shape_and_speed() -> None:
    started = time.process_time()
    sim = build_preset("tiny", seed=0)
    uids = sim.series_uids()
    for uid in uids:
        sim.true_md5s(uid)  # generates every byte once
    assert time.process_time() - started < 5  # generous: the real figure is ~0.1 s
    assert len(uids) == 6
    assert {sim.record(u).collection for u in uids} == {"Sim-Lung", "Sim-Brain"}
    assert all(2 <= sim.record(u).image_count <= 6 for u in uids)


def test_demo_is_varied() -> None:
    sim = build_preset("demo", seed=3)
    records = [sim.record(u) for u in sim.series_uids()]
    assert 40 <= len(records) <= 80
    assert len({r.collection for r in records}) == 3
    assert {"CT", "MR", "PT"} <= {r.modality for r in records}


def test_unknown_preset_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        build_preset("huge")


@pytest.mark.slow
def test_tcga_preset_follows_the_catalogue() -> None:
    sim = build_preset("tcga", collections=["TCGA-KIRC"], max_series=15, scale=16)
    uids = sim.series_uids()
    assert len(uids) == 15
    table = pq.read_table(find_catalog())
    table = table.filter(pc.is_in(table["SeriesInstanceUID"], value_set=_strings(uids)))
    expected = {r["SeriesInstanceUID"]: r for r in table.to_pylist()}
    for uid in uids:
        record = sim.record(uid)
        row = expected[uid]
        assert record.collection == "TCGA-KIRC"
        assert record.modality == row["Modality"]
        assert record.patient_id == row["PatientID"]
        assert record.study_uid == row["StudyInstanceUID"]
        assert record.image_count == min(row["instanceCount"], 200)
    first = sim.get_series(uids[0])
    assert first is not None and first.rows == 32


def _strings(values: list[str]) -> object:
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def test_data_dir_caches_bytes(tmp_path: Path) -> None:
    sim = build_preset("tiny", seed=0, data_dir=tmp_path)
    uid = sim.series_uids()[0]
    first = sim.instance_bytes(uid, 0)
    cached = list(tmp_path.rglob("*.dcm"))
    assert len(cached) == 1 and cached[0].read_bytes() == first
    assert build_preset("tiny", seed=0, data_dir=tmp_path).instance_bytes(uid, 0) == first


def test_catalog_is_found_only_in_the_documented_places(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MIRROR_CATALOG_DIR", str(tmp_path))
    assert catalog_candidates()[0] == tmp_path / CATALOG_NAME
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data" / CATALOG_NAME
    assert catalog_candidates()[1:] == [beside_checkout]
    (tmp_path / CATALOG_NAME).write_bytes(b"")
    assert find_catalog() == tmp_path / CATALOG_NAME


def test_missing_catalog_is_a_usage_error_naming_the_places(tmp_path, monkeypatch) -> None:
    import mirror.archive.sim.presets as presets

    monkeypatch.setenv("MIRROR_CATALOG_DIR", str(tmp_path))
    monkeypatch.setattr(presets, "catalog_candidates", lambda: [tmp_path / CATALOG_NAME])
    with pytest.raises(UsageError, match="MIRROR_CATALOG_DIR"):
        build_preset("tcga", collections=["TCGA-KIRC"])
