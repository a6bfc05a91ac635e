"""The real-server tier of ``mirror sync --source idc``: the simulated IDC published to
SeaweedFS (``weed mini`` on 127.0.0.1), synced through the CLI with a real Dask LocalCluster
(a worker process first, so each process's shared loop is exercised; then the default,
threads only). Checked from outside: every visible file equals the bucket's bytes, every
check passed, and the second run fetches nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from synchelp import visible_series

from mirror.archive.idcsim import BucketWriter, IdcSim, seaweedfs_s3
from mirror.archive.sim import build_preset
from mirror.errors import EXIT_OK
from mirror.layout import SIDECAR_NAME, SeriesSidecar

pytestmark = pytest.mark.slow


def cli(*argv: str) -> Any:
    from typer.testing import CliRunner

    from mirror.cli import app

    return CliRunner().invoke(app, list(argv))


def test_sync_from_seaweedfs_equals_the_bucket_then_does_nothing(tmp_path: Path) -> None:
    sim = build_preset("tiny", seed=3)
    dest = tmp_path / "mirror"
    with seaweedfs_s3(tmp_path / "weed") as endpoint:
        writer = BucketWriter(endpoint, "idc-open-data")
        writer.create_public_bucket()
        idc = IdcSim(sim, writer)
        index = idc.publish(tmp_path / "v20").index_dir
        argv = ["sync", "--dest", str(dest), "--source", "idc", "--idc-index", str(index),
                "--idc-endpoint", endpoint, "--json"]  # fmt: skip
        first = cli(*argv, "--workers", "1")
        assert first.exit_code == EXIT_OK, first.output
        report = json.loads(first.stdout)
        assert report["counts"]["downloaded"] == len(sim.series_uids())
        assert report["cluster"]["kind"] == "local-processes"
        held = visible_series(dest)
        assert len(held) == len(sim.series_uids())
        for files in held.values():
            sidecar = SeriesSidecar.from_json(files[SIDECAR_NAME])
            keys = idc.object_keys(sidecar.series_uid)
            expected = {k.split("/", 1)[1]: writer.get(k) for k in keys}
            assert {n: b for n, b in files.items() if n != SIDECAR_NAME} == expected
            for outcome in sidecar.extra["instance_checks"].values():
                assert set(outcome.values()) == {"passed"}, outcome
        second = cli(*argv)
        assert second.exit_code == EXIT_OK, second.output
        again = json.loads(second.stdout)
        assert again["cluster"]["kind"] == "local-threads"  # the IDC default
        assert again["counts"]["downloaded"] == again["counts"]["updated"] == 0
        assert again["counts"]["unchanged"] == len(sim.series_uids())
        assert visible_series(dest) == held
        writer.close()
