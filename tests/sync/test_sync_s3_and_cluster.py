"""A real S3 destination (moto server) and a real multi-process Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from synchelp import SyncFn, assert_mirror_equals_archive, store_sidecars
from typer.testing import CliRunner

from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import FaultConfig, SimArchive, SimServer
from mirror.cli import app
from mirror.cli.compose import sync
from mirror.config import ClusterConfig, SyncConfig
from mirror.storage.s3 import S3Store
from mirror.sync.ops import rebuild_ledger, verify
from mirror.sync.task import FetchSettings

S3_OPTIONS = {"key": "testing", "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}
NO_WAIT = FetchSettings(backoff_initial=0.0, backoff_max=0.0)


@pytest.fixture
def bucket(moto_endpoint: str, request: pytest.FixtureRequest) -> str:
    import boto3

    name = f"sync-{zlib.crc32(request.node.name.encode())}"
    boto3.client(
        "s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name


@pytest.mark.slow
def test_sync_into_s3_then_verify_rebuild_and_delete_to_attic(
    sim: SimArchive, archive: NbiaArchive, archive_server: SimServer, moto_endpoint: str,
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = S3Store(f"s3://{bucket}/tcia", endpoint_url=moto_endpoint, storage_options=S3_OPTIONS)
    config = SyncConfig(dest=store.url, archive_url=archive_server.base_url,
                        state_dir=str(tmp_path / "state"), cluster=ClusterConfig(workers=0, threads=4))

    def go(**kw: Any) -> Any:
        return sync(replace(config, **kw), archive=archive, store=store,
                    today=lambda: sim.today, fetch_settings=NO_WAIT)

    first = go()
    assert first.exit_code == 0, first.failures
    sidecars = store_sidecars(store)
    assert set(sidecars) == set(sim.series_uids())
    for uid, sc in sidecars.items():
        assert sorted(i.md5 for i in sc.instances) == sorted(sim.true_md5s(uid))
    assert json.loads(store.get_bytes(f"_runs/{first.run_id}.json"))["status"] == "ok"
    assert go().counts["planned"] == 0

    assert verify(store, config.ledger_path, deep=True).ok
    rebuilt = rebuild_ledger(store, config.ledger_path)
    assert rebuilt.series == 6 and rebuilt.backup is not None

    gone = sim.series_uids("Sim-Brain")[0]
    sim.withdraw_series(gone)
    deleted = go(full=True, delete=True)
    assert deleted.exit_code == 0 and deleted.counts["withdrawn"] == 1
    assert gone not in store_sidecars(store)
    assert any(gone in k for k in store.list(f"_attic/{deleted.run_id}"))

    # The CLI reaches the same bucket through environment variables.
    monkeypatch.setenv("MIRROR_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    out = CliRunner().invoke(app, ["verify", "--dest", store.url, "--state-dir", str(tmp_path / "state")])
    assert out.exit_code == 0 and "5 series checked, ok" in out.stdout


# --- a real scheduler and worker processes ----------------------------------------------------


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True,
    )


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    sched_file = tmp_path / "scheduler.json"
    procs = [_spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(sched_file)], tmp_path / "sched.log")]
    deadline = time.monotonic() + 60
    address = None
    while address is None:  # the scheduler writes its file in place: wait until it parses
        try:
            address = json.loads(sched_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            assert time.monotonic() < deadline, (tmp_path / "sched.log").read_text()
            time.sleep(0.05)
    workers = [
        _spawn(["worker", address, "--host", "127.0.0.1", "--nthreads", "2", "--no-nanny",
                "--no-dashboard", "--resources", "tcia_http=2", "--name", f"w{i}"],
               tmp_path / f"worker{i}.log")
        for i in range(2)
    ]
    procs += workers
    try:
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_worker_killed_mid_run_on_a_real_cluster(
    sim: SimArchive, archive: NbiaArchive, run_sync: SyncFn, dest: Path,
    real_cluster: tuple[str, list[subprocess.Popen[bytes]]],
) -> None:
    address, workers = real_cluster
    for i in range(10):
        sim.add_series("Sim-Lung", patient_id=f"CL-{i}", n_instances=2)
    sim.faults = FaultConfig(latency=0.1)
    killed: list[int] = []

    def kill_one(event: Any) -> None:
        if event.done == 3 and not killed:
            os.kill(workers[1].pid, signal.SIGKILL)
            killed.append(workers[1].pid)

    summary = run_sync(progress=kill_one, cluster=ClusterConfig(scheduler=address))
    assert killed and workers[1].wait(30) == -signal.SIGKILL
    assert summary.cluster["kind"] == "address" and summary.cluster["workers"] == 2
    if summary.exit_code != 0:  # lost series are recorded retryable, never dropped
        assert all(f.retryable for f in summary.failures), summary.failures
        summary = run_sync(cluster=ClusterConfig(scheduler=address))
    assert summary.exit_code == 0, summary.failures
    assert_mirror_equals_archive(dest, sim)
