"""Operator overrides and loose ends, through the CLI against the simulator over HTTP:
``--allow-empty`` for a collection really emptied upstream, and manifest UIDs the archive
does not list (the run ends partial and names them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synchelp import assert_mirror_equals_archive
from typer.testing import CliRunner

from mirror.archive.sim import SimArchive, SimServer
from mirror.cli import app
from mirror.errors import EXIT_OK, EXIT_PARTIAL, EXIT_SAFETY
from mirror.sync.ledger import Ledger


@pytest.fixture
def cli(archive_server: SimServer, dest: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        argv = [*args, "--archive", archive_server.base_url, "--threads-only", "--threads", "4",
                "--dest", str(dest), "--json"]
        return runner.invoke(app, argv)

    return invoke


def states(dest: Path) -> dict[str, str]:
    with Ledger.open(dest / "_state" / "ledger.sqlite") as ledger:
        return {uid: e.state for uid, e in ledger.entries().items()}


def test_allow_empty_lets_a_really_emptied_collection_go(cli, sim: SimArchive, dest: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("sync").exit_code == EXIT_OK
    lung = sim.series_uids("Sim-Lung")
    for uid in lung:
        sim.withdraw_series(uid)
    blocked = cli("sync", "--full", "--max-delete", "100%")
    assert blocked.exit_code == EXIT_SAFETY
    assert "--allow-empty 'Sim-Lung'" in json.loads(blocked.stdout)["error"]
    assert set(states(dest).values()) == {"present"}

    allowed = cli("sync", "--full", "--delete", "--allow-empty", "Sim-Lung")
    assert allowed.exit_code == EXIT_OK, allowed.output
    summary = json.loads(allowed.stdout)
    assert summary["counts"]["withdrawn"] == len(lung)
    assert all(states(dest)[uid] == "withdrawn" for uid in lung)
    assert not list((dest / "Sim-Lung").rglob("_series.json"))  # moved to the attic
    assert len(list((dest / "_attic").rglob("_series.json"))) == len(lung)
    assert_mirror_equals_archive(dest, sim)
    again = cli("sync", "--full")  # tombstones need no override afterwards
    assert again.exit_code == EXIT_OK, again.output


def test_unknown_manifest_uids_end_the_run_partial_and_are_listed(  # type: ignore[no-untyped-def]
    cli, sim: SimArchive, dest: Path, tmp_path: Path
) -> None:
    known = sim.series_uids()[:2]
    unknown = ["1.2.840.99999.1", "1.2.840.99999.2"]
    manifest = tmp_path / "pick.txt"
    manifest.write_text("\n".join([known[0], *unknown, known[1]]) + "\n")
    run = cli("sync", "--manifest", str(manifest))
    assert run.exit_code == EXIT_PARTIAL, run.output
    summary = json.loads(run.stdout)
    assert summary["status"] == "partial"
    assert summary["counts"]["downloaded"] == 2 and summary["counts"]["failed"] == 2
    assert {f["series_uid"]: f["error_class"] for f in summary["failures"]} == dict.fromkeys(
        unknown, "NotListedUpstream"
    )
    assert summary["extra"]["not_found"] == unknown
    assert set(states(dest)) == set(known)  # nothing recorded for UIDs nobody lists
    assert all((dest / f["series_uid"]).exists() is False for f in summary["failures"])

    only_known = tmp_path / "known.txt"
    only_known.write_text("\n".join(known) + "\n")
    assert cli("sync", "--manifest", str(only_known)).exit_code == EXIT_OK
