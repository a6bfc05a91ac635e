"""The index over a mirror the real sync engine wrote from the simulated archive (HTTP)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from index_expect import pydicom_value
from typer.testing import CliRunner

from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import SimArchive, SimServer
from mirror.cli import app
from mirror.cli.compose import sync
from mirror.config import ClusterConfig, SyncConfig
from mirror.index import extract, query
from mirror.index.build import build_index, withdrawn_series
from mirror.index.export import export_cohort
from mirror.index.schema import ELEMENTS
from mirror.storage import open_store
from mirror.storage.port import Store
from mirror.sync.manifest import read_manifest
from mirror.sync.task import FetchSettings

pytestmark = pytest.mark.slow
NO_WAIT = FetchSettings(backoff_initial=0.0, backoff_max=0.0)


@pytest.fixture
def mirrored(tmp_path: Path, archive_server: SimServer, archive: NbiaArchive, sim: SimArchive):
    dest = tmp_path / "mirror"
    config = SyncConfig(dest=str(dest), archive_url=archive_server.base_url,
                        cluster=ClusterConfig(workers=0, threads=4))

    def run(**overrides):
        from dataclasses import replace

        summary = sync(replace(config, **overrides), archive=archive, today=lambda: sim.today,
                       fetch_settings=NO_WAIT)
        assert summary.exit_code == 0, summary.failures
        return summary

    run()
    return dest, run


def test_index_of_a_synced_mirror_equals_pydicom_for_every_instance(mirrored, sim):
    dest, _ = mirrored
    store = open_store(str(dest))
    report = build_index(store)
    assert report.series == len(sim.series_uids())
    rows = query(store, "SELECT * FROM instances").to_pylist()
    assert len(rows) == sum(len(sim.get_series(u).instances) for u in sim.series_uids())
    for row in rows:
        ds = pydicom.dcmread(dest / row["file_path"], stop_before_pixels=True)
        for element in ELEMENTS:
            assert row[element.keyword] == pydicom_value(ds, element), element.keyword
    series = {r["SeriesInstanceUID"]: r for r in query(store, "SELECT * FROM series").to_pylist()}
    for uid in sim.series_uids():
        record = sim.record(uid)
        assert series[uid]["Collection"] == record.collection
        assert series[uid]["instanceCount"] == record.image_count
        assert series[uid]["Modality"] == record.modality
        assert series[uid]["series_size_MB"] == pytest.approx(record.file_size / 1e6)
    assert query(store, "SELECT count(*) AS n FROM errors").to_pylist() == [{"n": 0}]


def test_add_and_withdraw_through_sync_then_incremental_index(mirrored, sim, tmp_path):
    dest, run = mirrored
    runner = CliRunner()
    first = runner.invoke(app, ["index", "build", "--dest", str(dest), "--workers", "0"])
    assert first.exit_code == 0, first.output
    uids = sim.series_uids()
    sim.today = sim.today + timedelta(days=1)
    added = sim.add_series(sim.record(uids[0]).collection, patient_id="NEW-1", n_instances=2)
    sim.withdraw_series(uids[1])
    gone_path = query(str(dest), "SELECT series_path FROM series WHERE SeriesInstanceUID = "
                      f"'{uids[1]}'").column(0)[0].as_py()
    run()  # incremental: the new series
    run(full=True)  # a full listing tombstones the withdrawn series (its files stay)
    assert (dest / gone_path / "_series.json").exists()
    assert withdrawn_series(str(dest)) == {uids[1]}

    second = runner.invoke(app, ["index", "build", "--dest", str(dest), "--workers", "0"])
    assert second.exit_code == 0, second.output
    assert "1 read" in second.output and "1 removed" in second.output
    series = {r["SeriesInstanceUID"]: r for r in query(str(dest), "SELECT * FROM series")
              .to_pylist()}
    assert uids[1] not in series and added in series
    n = query(str(dest), f"SELECT count(*) FROM instances WHERE SeriesInstanceUID = '{added}'")
    assert n.column(0)[0].as_py() == series[added]["instanceCount"] == 2
    gone = query(str(dest), f"SELECT count(*) FROM instances WHERE SeriesInstanceUID = '{uids[1]}'")
    assert gone.column(0)[0].as_py() == 0

    manifest = tmp_path / "cohort.tcia"
    export_cohort(str(dest), "instanceCount >= 2", str(manifest))
    assert set(read_manifest(manifest)) == {u for u, r in series.items() if r["instanceCount"] >= 2}


class CountingStore:
    """A Store that records which objects a build opens (DICOM files vs everything else)."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.opened, self.got = inner, [], []

    def open_read(self, key: str):
        self.opened.append(key)
        return self.inner.open_read(key)

    def get_bytes(self, key: str) -> bytes:
        self.got.append(key)
        return self.inner.get_bytes(key)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_build_after_a_sync_reads_only_the_changed_series(mirrored, sim, monkeypatch):
    """k series changed upstream and one withdrawn: exactly their files are read again."""
    dest, run = mirrored
    store = open_store(str(dest))
    build_index(store)
    uids = sim.series_uids()
    sim.today = sim.today + timedelta(days=1)
    added = sim.add_series(sim.record(uids[0]).collection, patient_id="NEW-1", n_instances=2)
    sim.replace_instance(uids[0])  # same slices, one with new bytes
    sim.add_instances(uids[2], count=1)
    sim.withdraw_series(uids[1])
    run(full=True)
    changed = {added, uids[0], uids[2]}
    headers: list[int] = []
    real_read = extract.read_header
    monkeypatch.setattr(extract, "read_header", lambda fh: headers.append(1) or real_read(fh))
    counting = CountingStore(store)
    report = build_index(counting, exclude=withdrawn_series(str(dest)))  # type: ignore[arg-type]

    assert (report.extracted, report.removed) == (3, 1)
    assert report.carried == len(uids) - 3  # all but the two changed and the withdrawn
    folders = {r["SeriesInstanceUID"]: r["series_path"]
               for r in query(store, "SELECT * FROM series").to_pylist()}
    dicom_reads = [k for k in counting.opened if not k.startswith("_index/")]
    assert {k.rsplit("/", 1)[0] for k in dicom_reads} == {folders[u] for u in changed}
    expected = sum(len(sim.get_series(u).instances) for u in changed)
    assert len(dicom_reads) == len(headers) == expected  # each changed file read once
    assert uids[1] not in folders
    # only the rewritten sidecars are read: the listing shows the others unchanged
    sidecar_reads = {k.rsplit("/", 1)[0] for k in counting.got if k.endswith("/_series.json")}
    assert sidecar_reads == {folders[u] for u in changed}
