"""SIGKILL a worker in the middle of updating a series, then look from outside and rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from task_consistency import assert_consistent, snapshot
from task_zips import FakeArchive, build_zip, record_for, series_files

from mirror.sync.task import SeriesTask, sync_series

UID = "1.2.840.66.1"
PATH = f"TEST/P-1/1.2.3.4/{UID}"
HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["download", "publish"])
def test_kill_mid_update_leaves_no_partial_series(mode, local_store, settings) -> None:
    v1 = series_files(UID, count=3)
    archive = FakeArchive()
    archive.queue(UID, build_zip(v1))
    first = sync_series(SeriesTask(record_for(UID, v1), PATH, 1, "run1"), archive, local_store, settings)
    before = snapshot(local_store)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "task_kill_child.py"), local_store.root,
         settings.scratch_dir, mode, UID, PATH],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    try:
        assert child.stdout.readline().strip() == b"ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    assert os.path.isdir(os.path.join(local_store.root, ".staging", "run2", UID))  # left over
    seen = assert_consistent(local_store)
    if mode == "download":
        # The old version is untouched; the half-written new one sits only in .staging/.
        visible = {k: v for k, v in snapshot(local_store).items() if not k.startswith(".staging/")}
        assert visible == before
    else:
        assert seen == {}  # the tiny window: old version in the attic, new not yet in
        assert any(k.startswith("_attic/run2/") for k in local_store.list())
    assert first.sidecar is not None

    v2 = series_files(UID, count=8, size=700)
    archive.queue(UID, build_zip(v2))
    res = sync_series(SeriesTask(record_for(UID, v2), PATH, 2, "run3", first.sidecar),
                      archive, local_store, settings)
    assert res.outcome == "committed"
    assert assert_consistent(local_store)[PATH] == res.sidecar
    assert not os.path.exists(os.path.join(local_store.root, ".staging"))
