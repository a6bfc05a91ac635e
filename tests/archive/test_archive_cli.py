"""``mirror archive serve`` and ``mirror archive ls``."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from mirror.archive.sim import SimArchive, SimServer
from mirror.cli import app


def test_ls_lists_collections_and_series(archive_server: SimServer, sim: SimArchive) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["archive", "ls", "--archive", archive_server.base_url])
    assert out.exit_code == 0, out.output
    assert out.stdout.split() == ["Sim-Brain", "Sim-Lung"]
    out = runner.invoke(app, ["archive", "ls", "--archive", archive_server.base_url, "sim-lung"])
    assert out.exit_code == 0
    lines = out.stdout.strip().splitlines()
    assert {line.split("\t")[-1] for line in lines} == set(sim.series_uids("Sim-Lung"))


def test_ls_unreachable_archive_exits_3() -> None:
    out = CliRunner().invoke(
        app, ["archive", "ls", "--archive", "http://127.0.0.1:9/nbia-api/services/v4/"]
    )
    assert out.exit_code == 3
    assert "error:" in out.output


@pytest.mark.slow
def test_serve_runs_in_the_foreground_with_extra_series() -> None:
    cmd = [
        sys.executable, "-c", "from mirror.cli import main; main()", "archive", "serve",
        "--preset", "tiny", "--port", "0", "--compresslevel", "0", "--series", "BIG:B1:CT:3:16",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/nbia-api/services/v4/")
        rows = httpx.get(url + "getSeries", params={"Collection": "BIG"}, timeout=60).json()
        assert len(rows) == 1 and rows[0]["ImageCount"] == 3
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_rejects_a_bad_series_spec() -> None:
    out = CliRunner().invoke(
        app, ["archive", "serve", "--port", "0", "--preset", "tiny", "--series", "nope"]
    )
    assert out.exit_code == 2


@pytest.mark.slow
def test_serve_shapes_the_tcga_preset_from_the_command_line() -> None:
    cmd = [
        sys.executable, "-c", "from mirror.cli import main; main()", "archive", "serve",
        "--preset", "tcga", "--port", "0", "--collection", "TCGA-KIRC", "--max-series", "3",
        "--max-instances", "4", "--scale", "32",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.endswith("/nbia-api/services/v4/")
        names = [c["Collection"] for c in httpx.get(url + "getCollectionValues", timeout=60).json()]
        assert names == ["TCGA-KIRC"]
        rows = httpx.get(url + "getSeries", params={"Collection": "TCGA-KIRC"}, timeout=60).json()
        assert len(rows) == 3 and all(1 <= int(r["ImageCount"]) <= 4 for r in rows)
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_refuses_tcga_options_on_other_presets_and_a_bad_catalogue(tmp_path) -> None:
    other = CliRunner().invoke(
        app, ["archive", "serve", "--port", "0", "--preset", "tiny", "--collection", "TCGA-KIRC"]
    )
    assert other.exit_code == 2 and "tcga preset only" in other.output
    bad = tmp_path / "catalog.parquet"
    bad.write_bytes(b"not parquet")
    out = CliRunner().invoke(
        app, ["archive", "serve", "--port", "0", "--preset", "tcga", "--catalog", str(bad)]
    )
    assert out.exit_code == 2 and "cannot read the series catalogue" in out.output
