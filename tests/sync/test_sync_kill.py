"""The driver killed (SIGKILL) or stopped (SIGTERM) mid-run: nothing partial, then resume.

``mirror sync`` runs as a subprocess against the simulator served by this test process;
the simulator's latency/bandwidth faults keep the run long enough to interrupt it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from synchelp import SyncFn, assert_mirror_equals_archive, assert_nothing_partial

from mirror.archive.sim import FaultConfig, SimArchive, SimServer

pytestmark = pytest.mark.slow

MAIN = "from mirror.cli import main; main()"


def start_sync(server: SimServer, dest: Path) -> subprocess.Popen[bytes]:
    scratch = dest.parent / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-c", MAIN, "sync", "--dest", str(dest), "--scratch-dir", str(scratch),
            "--archive", server.base_url, "--workers", "0", "--threads", "2"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"sync ended early: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.02)


def states(dest: Path) -> dict[str, int]:
    path = dest / "_state" / "ledger.sqlite"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return dict(conn.execute("SELECT state, count(*) FROM series GROUP BY state"))
    except sqlite3.OperationalError:
        return {}


def grow(sim: SimArchive, n: int) -> None:
    for i in range(n):
        sim.add_series("Sim-Lung", patient_id=f"KILL-{i:02d}", n_instances=2)


def test_sigkill_after_some_series_then_resume(
    sim: SimArchive, archive_server: SimServer, dest: Path, run_sync: SyncFn
) -> None:
    grow(sim, 10)
    sim.faults = FaultConfig(latency=0.15)
    proc = start_sync(archive_server, dest)
    wait_until(lambda: states(dest).get("present", 0) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    left = states(dest)
    assert left.get("in_progress", 0) > 0 and left.get("present", 0) < 16
    assert_nothing_partial(dest, sim)
    sim.faults = FaultConfig()
    resumed = run_sync()
    assert resumed.exit_code == 0, resumed.failures
    assert resumed.counts["downloaded"] + resumed.counts["unchanged"] >= 16 - left["present"]
    assert_mirror_equals_archive(dest, sim)
    assert states(dest) == {"present": 16}


def test_sigkill_mid_download_leaves_nothing_visible(
    sim: SimArchive, archive_server: SimServer, dest: Path, run_sync: SyncFn
) -> None:
    sim.add_series("Sim-Lung", patient_id="BIG", n_instances=6, rows=128, cols=128)
    sim.faults = FaultConfig(bandwidth=60_000)
    proc = start_sync(archive_server, dest)
    big = next(u for u in sim.series_uids() if sim.record(u).patient_id == "BIG")
    # The big series is half-way through its (throttled) streaming extraction into staging.
    wait_until(lambda: len(list(dest.glob(f".staging/*/{big}/*.dcm"))) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert_nothing_partial(dest, sim)
    assert big not in {p.parent.name for p in dest.rglob("_series.json")}
    sim.faults = FaultConfig()
    assert run_sync().exit_code == 0
    assert_mirror_equals_archive(dest, sim)
    assert not any(p.is_file() for p in (dest / ".staging").rglob("*"))


def test_sigterm_stops_with_130_and_keeps_the_watermark(
    sim: SimArchive, archive_server: SimServer, dest: Path
) -> None:
    grow(sim, 8)
    sim.faults = FaultConfig(latency=0.15)
    proc = start_sync(archive_server, dest)
    wait_until(lambda: states(dest).get("present", 0) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 130
    assert_nothing_partial(dest, sim)
    with sqlite3.connect(dest / "_state" / "ledger.sqlite") as conn:
        runs = list(conn.execute("SELECT exit_code, watermark_after FROM runs"))
        marks = list(conn.execute("SELECT watermark FROM collections WHERE watermark IS NOT NULL"))
    assert runs == [(130, None)] and marks == []
    assert os.path.exists(dest / "_runs")
