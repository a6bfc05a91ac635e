"""The sync CLI commands through Typer's runner: exit codes, files written, messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synchelp import assert_mirror_equals_archive
from typer.testing import CliRunner

from mirror.archive.sim import SimArchive, SimServer
from mirror.cli import app
from mirror.sync.lock import RunLock


@pytest.fixture
def cli(archive_server: SimServer, dest: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        argv = list(args)
        if argv[0] == "sync":
            argv += ["--archive", archive_server.base_url, "--threads-only", "--threads", "4"]
        return runner.invoke(app, [*argv, "--dest", str(dest)])

    return invoke


def test_sync_status_verify_and_reports(cli, sim: SimArchive, dest: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    summary, prom = tmp_path / "out" / "summary.json", tmp_path / "m.prom"
    changed = tmp_path / "changed.txt"
    first = cli("sync", "--summary-json", str(summary), "--metrics", str(prom),
                "--changed-files", str(changed))
    assert first.exit_code == 0, first.output
    lines = changed.read_text().splitlines()
    assert len(lines) == 6 and all((dest / line / "_series.json").exists() for line in lines)
    assert "6 new" in first.stdout
    data = json.loads(summary.read_text())
    assert data["status"] == "ok" and data["counts"]["downloaded"] == 6
    assert data["cluster"]["kind"] == "local-threads" and data["source"]["api_base"]
    assert "tcia_mirror_last_success_timestamp_seconds" in prom.read_text()
    assert_mirror_equals_archive(dest, sim)

    again = cli("sync", "--changed-files", str(changed), "--metrics", str(prom))
    assert again.exit_code == 0 and "0 new" in again.stdout
    assert changed.read_text() == ""
    assert "tcia_mirror_upstream_watermark_timestamp_seconds" in prom.read_text()

    status = cli("status", "--json")
    assert status.exit_code == 0
    info = json.loads(status.stdout)
    assert info["series"] == {"present": 6}
    assert set(info["collections"]) == {"Sim-Brain", "Sim-Lung"}
    assert info["last_success"]["exit_code"] == 0
    text = cli("status")
    assert "Sim-Brain" in text.stdout and "watermark" in text.stdout

    ok = cli("verify", "--deep")
    assert ok.exit_code == 0 and "6 series checked, ok" in ok.stdout


def test_verify_finds_damage_and_the_next_sync_repairs_it(cli, sim: SimArchive, dest: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("sync").exit_code == 0
    files = sorted(dest.glob("Sim-*/**/*.dcm"))
    files[0].unlink()
    corrupt = files[-1]
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 0xFF
    corrupt.write_bytes(bytes(data))

    quick = cli("verify", "--json")
    assert quick.exit_code == 5
    report = json.loads(quick.stdout)
    assert len(report["broken"]) == 1 and "missing" in report["broken"][0]["problems"][0]
    deep = cli("verify", "--deep")
    assert deep.exit_code == 5 and "MD5" in deep.stderr

    repaired = cli("sync")
    assert repaired.exit_code == 0, repaired.output
    assert files[0].exists() and corrupt.read_bytes() != bytes(data)
    assert cli("verify", "--deep").exit_code == 0
    assert_mirror_equals_archive(dest, sim)
    assert len(list((dest / "_attic").rglob("_series.json"))) == 2


def test_ledger_rebuild_from_sidecars(cli, dest: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("sync").exit_code == 0
    ledger = dest / "_state" / "ledger.sqlite"
    ledger.unlink()
    for extra in dest.glob("_state/ledger.sqlite-*"):
        extra.unlink()
    assert cli("status").exit_code == 2
    rebuilt = cli("ledger", "rebuild")
    assert rebuilt.exit_code == 0 and "6 series present" in rebuilt.stdout
    assert json.loads(cli("status", "--json").stdout)["series"] == {"present": 6}
    after = cli("sync")
    assert after.exit_code == 0 and "0 new" in after.stdout and "6 unchanged" in after.stdout


def test_dry_run_json_plan(cli, dest: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("sync", "--dry-run", "--json")
    assert out.exit_code == 0
    plan = json.loads(out.stdout)["plan"]
    assert plan["counts"]["new"] == 6 and len(plan["series"]) == 6
    assert not list(dest.rglob("*.dcm"))


def test_bad_input_exit_codes(cli, dest: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.tcia"
    bad.write_text("downloadServerUrl=x\nListOfSeriesToDownload=\n../../etc/passwd\n")
    malformed = cli("sync", "--manifest", str(bad))
    assert malformed.exit_code == 2 and "not a SeriesInstanceUID" in malformed.output
    assert cli("sync", "--max-delete", "lots").exit_code == 2
    unknown = cli("sync", "No-Such-Collection")
    assert unknown.exit_code == 2 and "unknown collection" in unknown.output
    nothing = CliRunner().invoke(app, ["verify", "--dest", str(tmp_path / "never-synced")])
    assert nothing.exit_code == 2 and "no ledger" in nothing.output


def test_lock_held_exits_75(cli, dest: Path) -> None:  # type: ignore[no-untyped-def]
    with RunLock(dest / "_state", "someone-else"):
        busy = cli("sync")
    assert busy.exit_code == 75 and "someone-else" in busy.output
    assert not list(dest.rglob("*.dcm"))


@pytest.mark.slow
def test_demo_runs_offline(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["demo", "--dest", str(tmp_path / "d"), "--preset", "tiny", "--workers", "0"])
    assert out.exit_code == 0, out.output
    assert "Sim-Lung" in out.stdout and "mirror status --dest" in out.stdout
    assert len(list((tmp_path / "d").rglob("_series.json"))) == 6


def test_sync_then_convert_and_index_in_one_run(cli, sim: SimArchive, dest: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("sync", "--index", "--convert")
    assert out.exit_code == 0, out.output
    from mirror.index.views import query

    series = query(str(dest), "select SeriesInstanceUID, instanceCount from series").to_pylist()
    assert {r["SeriesInstanceUID"] for r in series} == set(sim.series_uids())
    volumes = query(str(dest), "select distinct SeriesInstanceUID from volumes").to_pylist()
    # every image series of the tiny preset became a volume the same run indexed
    assert {r["SeriesInstanceUID"] for r in volumes} == set(sim.series_uids())
    again = cli("sync", "--index", "--convert")
    assert again.exit_code == 0, again.output
    assert "0 converted" in again.output
