"""The worker command lines deploy/ produces start real Dask workers with the intended shape.

Scheduler and workers run as separate processes on 127.0.0.1, started through the image's
`dask-scheduler` / `dask-worker` shims exactly as the dask/dask chart and the operator call them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import DEPLOY, K8S, load_one

pytestmark = pytest.mark.slow

SHIMS = DEPLOY / "docker" / "dask-compat"
VALUES = DEPLOY / "helm" / "values-dask.yaml"


def chart_worker_args(values: dict[str, Any], scheduler: str) -> list[str]:
    """The worker container args the dask/dask chart renders (templates/dask-worker-deployment)."""
    worker = values["worker"]
    limits = worker["resources"]["limits"]
    threads = worker.get("threads_per_worker") or limits["cpu"]
    return [
        worker["image"]["dask_worker"],
        scheduler,
        "--nthreads",
        str(threads),
        "--memory-limit",
        str(limits["memory"]),
        "--no-dashboard",
        "--dashboard-address",
        str(worker.get("portDashboard", 8790)),
        *worker["extraArgs"],
    ]


def operator_worker_args(doc: dict[str, Any], name: str) -> list[str]:
    (container,) = doc["spec"]["worker"]["spec"]["containers"]
    args = [a.replace("$(DASK_WORKER_NAME)", name) for a in container["args"]]
    # No bokeh here: keep the worker's HTTP server on loopback instead of port 8788.
    i = args.index("--dashboard-address")
    return [*args[: i + 1], "127.0.0.1:0", *args[i + 2 :]]


def shim_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(SHIMS), str(Path(sys.executable).parent), env["PATH"]])
    env.update(extra or {})
    return env


def wait_for(path: Path, timeout: float) -> None:
    """Wait until the scheduler file exists and parses (dask writes it in place)."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        try:
            json.loads(path.read_text())["address"]
            return
        except (OSError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not appear in {timeout}s") from None
            time.sleep(0.1)


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[str]:
    sched_file = tmp_path / "scheduler.json"
    proc = subprocess.Popen(
        [
            str(SHIMS / "dask-scheduler"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--scheduler-file",
            str(sched_file),
        ],
        env=shim_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(sched_file, 120)
        import json

        yield str(json.loads(sched_file.read_text())["address"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*args, "--host", "127.0.0.1"],
        env=shim_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_chart_and_operator_workers_join_with_threads_and_download_slots(scheduler: str) -> None:
    from distributed import Client

    chart = start(chart_worker_args(load_one(VALUES), scheduler))
    cluster = load_one(K8S / "operator" / "daskcluster.yaml")
    # The operator passes the scheduler only through DASK_SCHEDULER_ADDRESS.
    operator = start(
        [str(SHIMS / "dask-worker"), *operator_worker_args(cluster, "op-0")[2:]],
        env={"DASK_SCHEDULER_ADDRESS": scheduler},
    )
    try:
        with Client(scheduler, timeout=120) as client:
            client.wait_for_workers(2, timeout=180)
            workers = client.scheduler_info(n_workers=-1)["workers"].values()
            shapes = sorted((w["nthreads"], w["resources"].get("tcia_http")) for w in workers)
            assert shapes == [(8, 8), (8, 8)]
            names = {w["name"] for w in workers}
            assert "op-0" in names
            # A builtin, so the worker processes can unpickle it without this test module.
            futures = client.map(abs, range(-8, 8), resources={"tcia_http": 1}, pure=False)
            assert client.gather(futures) == [abs(x) for x in range(-8, 8)]
    finally:
        for proc in (chart, operator):
            proc.terminate()
            proc.wait(timeout=60)
