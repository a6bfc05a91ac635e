"""End-to-end syncs against the simulated archive over real HTTP into a local folder."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from synchelp import SyncFn, assert_mirror_equals_archive, assert_nothing_partial, next_day

from mirror.archive.sim import SimArchive
from mirror.sync.ledger import Ledger
from mirror.sync.manifest import write_manifest
from mirror.sync.plan import MaxDelete


def ledger_states(dest: Path) -> dict[str, str]:
    with sqlite3.connect(dest / "_state" / "ledger.sqlite") as conn:
        return dict(conn.execute("SELECT series_uid, state FROM series"))


@pytest.mark.slow
def test_first_sync_mirrors_everything_and_second_is_a_no_op(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    first = run_sync()
    assert first.exit_code == 0, first.error
    assert first.counts["downloaded"] == len(sim.series_uids()) == first.counts["verified"]
    assert_mirror_equals_archive(dest, sim)
    run_file = json.loads((dest / "_runs" / f"{first.run_id}.json").read_text())
    assert run_file["status"] == "ok" and run_file["watermark"]["after"] == sim.today.isoformat()

    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.dcm")}
    second = run_sync()
    assert second.exit_code == 0
    assert second.bytes["downloaded"] == 0 and second.counts["planned"] == 0
    assert second.counts["unchanged"] == len(sim.series_uids())
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.dcm")} == before


def test_incremental_add_change_then_full_withdraw_tombstone_then_delete(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    assert run_sync().exit_code == 0
    uids = sim.series_uids()
    next_day(sim)
    added = sim.add_series("Sim-Lung", patient_id="LUNG-NEW", n_instances=2)
    sim.replace_instance(uids[0], index=0)
    sim.withdraw_series(uids[1])

    inc = run_sync()
    assert inc.exit_code == 0, inc.failures
    assert inc.counts["downloaded"] == 1 and inc.counts["updated"] == 1
    assert inc.counts["withdrawn"] == 0, "withdrawals need a full listing"
    assert ledger_states(dest)[added] == "present"
    assert_nothing_partial(dest, sim)
    with Ledger.open(dest / "_state" / "ledger.sqlite") as led:
        assert led.entry(uids[0]).series_version == 2  # type: ignore[union-attr]

    full = run_sync(full=True)
    assert full.exit_code == 0 and full.counts["withdrawn"] == 1
    assert ledger_states(dest)[uids[1]] == "withdrawn"
    assert any(uids[1] in p for p in (str(x) for x in dest.rglob("_series.json"))), "tombstone keeps files"
    assert_mirror_equals_archive(dest, sim)

    sim.withdraw_series(uids[2])
    deleted = run_sync(full=True, delete=True)
    # the new withdrawal and the earlier tombstone both go to the attic
    assert deleted.exit_code == 0 and deleted.counts["withdrawn"] == 2
    attic = dest / "_attic" / deleted.run_id
    assert sorted(p.parent.name for p in attic.rglob("_series.json")) == sorted(uids[1:3])
    assert not any(p.parent.name in uids[1:3] for p in dest.glob("Sim-*/**/_series.json"))
    assert run_sync(full=True).counts["planned"] == 0


def test_max_delete_and_empty_listing_abort_with_exit_6(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    assert run_sync().exit_code == 0
    lung = sim.series_uids("Sim-Lung")
    sim.withdraw_series(lung[0])
    tripped = run_sync(full=True, max_delete=MaxDelete.parse("0"))
    assert tripped.exit_code == 6 and "max-delete" in tripped.error
    assert ledger_states(dest)[lung[0]] == "present"
    for uid in lung[1:]:
        sim.withdraw_series(uid)
    empty = run_sync(full=True, max_delete=MaxDelete.parse("100%"))
    assert empty.exit_code == 6 and "listed no series" in empty.error
    assert set(ledger_states(dest).values()) == {"present"}
    with Ledger.open(dest / "_state" / "ledger.sqlite") as led:
        assert led.last_run(successful=True).run_id != empty.run_id  # type: ignore[union-attr]


def test_dry_run_plans_without_touching_anything(run_sync: SyncFn, sim: SimArchive, dest: Path) -> None:
    plan_only = run_sync(dry_run=True)
    assert plan_only.exit_code == 0 and plan_only.plan is not None
    assert plan_only.plan["counts"]["new"] == len(sim.series_uids())
    assert plan_only.plan["bytes_to_fetch"] == sum(sim.record(u).file_size for u in sim.series_uids())
    assert not list(dest.rglob("*.dcm"))
    assert ledger_states(dest) == {}


def test_manifest_and_filters_sync_only_what_was_asked(
    run_sync: SyncFn, sim: SimArchive, dest: Path, tmp_path: Path
) -> None:
    from mirror.config import Selection
    from mirror.sync.manifest import read_manifest

    uids = sim.series_uids()
    manifest = write_manifest(uids[:2], tmp_path / "pick.tcia")
    picked = run_sync(selection=Selection(manifest_uids=tuple(read_manifest(manifest))))
    assert picked.exit_code == 0 and set(ledger_states(dest)) == set(uids[:2])
    assert picked.watermark["after"] is None, "a partial selection never moves the watermark"

    one = sim.record(uids[3])
    by_patient = run_sync(selection=Selection(collections=(one.collection,), patients=(one.patient_id,)))
    assert by_patient.exit_code == 0
    assert uids[3] in ledger_states(dest)
    assert_nothing_partial(dest, sim)


def test_unknown_collection_is_a_usage_error(run_sync: SyncFn) -> None:
    from mirror.config import Selection

    summary = run_sync(selection=Selection(collections=("Sim-Lungs",)))
    assert summary.exit_code == 2
    assert "unknown collection 'Sim-Lungs'" in summary.error and "Sim-Lung" in summary.error


def test_hostile_patient_id_lands_inside_the_destination(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    uid = sim.add_series("Sim-Lung", patient_id="../../../etc", n_instances=1)
    assert run_sync().exit_code == 0
    (sidecar_path,) = [p for p in dest.rglob("_series.json") if p.parent.name == uid]
    assert sidecar_path.resolve().is_relative_to(dest.resolve())
    assert ".." not in sidecar_path.relative_to(dest).parts
    assert not (dest.parent.parent / "etc").exists() or not any((dest.parent.parent / "etc").iterdir())


def test_unwritable_destination_exits_4(run_sync: SyncFn, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    summary = run_sync(dest=str(blocker / "mirror"), state_dir=str(tmp_path / "state"))
    assert summary.exit_code == 4, summary


@pytest.mark.slow
def test_max_connections_caps_concurrent_downloads_cluster_wide(
    run_sync: SyncFn, sim: SimArchive, dest: Path, tmp_path: Path
) -> None:
    from mirror.archive.sim import FaultConfig
    from mirror.config import ClusterConfig

    for i in range(4):  # over 2 MB each, so each is its own Dask task
        sim.add_series("Sim-Lung", patient_id=f"CAP-{i}", n_instances=5, rows=512, cols=512)
    # The archive refuses (400, not retried) any request beyond one at a time.
    sim.faults = FaultConfig(max_connections=1, over_limit_status=400, latency=0.02)
    capped = run_sync(cluster=ClusterConfig(workers=0, threads=4, max_connections=1))
    assert capped.exit_code == 0, capped.failures
    assert_mirror_equals_archive(dest, sim)
    uncapped = run_sync(dest=str(tmp_path / "control"), cluster=ClusterConfig(workers=0, threads=4))
    assert uncapped.exit_code == 1 and uncapped.failures, "control: without the cap requests collide"


def test_listing_rows_with_unparsable_dates_still_sync_and_stay_stable(
    run_sync: SyncFn, sim: SimArchive, archive: object, dest: Path
) -> None:
    from dataclasses import dataclass, replace

    @dataclass
    class NoDates:  # what the client yields for garbage MM-DD-YYYY values: None
        inner: object

        @property
        def url(self) -> str:
            return self.inner.url  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def series(self, *a: object, **kw: object) -> list[object]:
            rows = self.inner.series(*a, **kw)  # type: ignore[attr-defined]
            return [replace(r, date_released=None, max_submission=None) for r in rows]

    from mirror.cli.compose import sync as do_sync
    from mirror.config import ClusterConfig, SyncConfig

    config = SyncConfig(dest=str(dest), cluster=ClusterConfig(workers=0, threads=2))
    wrapped = NoDates(archive)
    first = do_sync(config, archive=wrapped, today=lambda: sim.today)  # type: ignore[arg-type]
    assert first.exit_code == 0, first.failures
    again = do_sync(replace(config, full=True), archive=wrapped, today=lambda: sim.today)  # type: ignore[arg-type]
    assert again.exit_code == 0 and again.counts["planned"] == 0
    assert_mirror_equals_archive(dest, sim)


def test_archive_down_before_any_work_exits_3(config: object, dest: Path, sim: SimArchive) -> None:
    import socket
    from dataclasses import replace

    from mirror.archive.nbia import NbiaArchive
    from mirror.cli.compose import sync as do_sync

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = NbiaArchive(f"http://127.0.0.1:{port}/nbia-api/services/v4/", sleep=lambda s: None)
    summary = do_sync(replace(config, archive_url=down.url), archive=down, today=lambda: sim.today)  # type: ignore[type-var]
    assert summary.exit_code == 3 and "Archive" in summary.error
    assert not list(dest.rglob("*.dcm"))
