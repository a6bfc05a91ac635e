"""Issue 12 ("Trust"): the mirror never keeps stale or damaged bytes while exiting 0.

Each test drives the real CLI or ``sync()`` against the simulated archive over HTTP and
judges the result from outside: the files a reader sees, the exit code, the report.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from synchelp import SyncFn, assert_mirror_equals_archive, next_day
from typer.testing import CliRunner

from mirror.archive.sim import FaultConfig, SimArchive, SimServer
from mirror.archive.sim.api import cache_collection_md5
from mirror.cli import app
from mirror.errors import StoreError, exit_code_for
from mirror.layout import RESERVED_PREFIXES, SeriesSidecar
from mirror.sync.ledger import Ledger


@pytest.fixture
def cli(archive_server: SimServer, dest: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        argv = list(args)
        if argv[0] == "sync":
            argv += ["--archive", archive_server.base_url, "--threads-only", "--threads", "4"]
        return runner.invoke(app, [*argv, "--dest", str(dest)])

    return invoke


def _fill(folder: Path) -> None:
    """Write until the file system answers ENOSPC."""
    fd = os.open(folder / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# --- 6: a full state dir exits 4 with a message, never a traceback ----------------------


def test_full_state_dir_exits_4_without_traceback(  # type: ignore[no-untyped-def]
    cli, sim: SimArchive, small_disk: Path
) -> None:
    state = small_disk / "state"
    state.mkdir()
    first = cli("sync", "--state-dir", str(state))
    assert first.exit_code == 0, first.output

    sim.replace_instance(sim.series_uids()[0])
    _fill(small_disk)
    with pytest.raises(OSError) as full:
        (small_disk / "probe").write_bytes(b"x" * 8192)
    assert full.value.errno == errno.ENOSPC

    again = cli("sync", "--state-dir", str(state))
    assert again.exit_code == 4, again.output
    assert "Traceback" not in again.output and isinstance(again.exception, SystemExit)
    assert "No space left" in again.output

    (small_disk / "ballast").unlink()
    (state / "sync.lock").unlink()
    (state / "ledger.sqlite").unlink()
    for leftover in state.iterdir():
        leftover.unlink()
    _fill(small_disk)  # now a fresh state dir on a full disk: the lock holder cannot be written
    fresh = cli("sync", "--state-dir", str(state))
    assert fresh.exit_code == 4, fresh.output
    assert isinstance(fresh.exception, SystemExit)
    assert "run lock" in fresh.output and "No space left" in fresh.output


def test_full_state_dir_ledger_writes_raise_store_error(small_disk: Path) -> None:
    with Ledger.open(small_disk / "ledger.sqlite") as ledger:
        ledger.begin_run("r1", "sync", "2025-01-01T00:00:00+00:00")
        _fill(small_disk)
        with pytest.raises(StoreError, match="cannot write the ledger"):
            for n in range(2, 200):  # the WAL grows until a page cannot be written
                ledger.begin_run(f"r{n}", "sync", "2025-01-01T00:00:00+00:00" + "x" * 2000)
        assert exit_code_for(StoreError("x")) == 4


# --- 2: a re-download repairs damage instead of calling it "unchanged" --------------------


def _series_dir(dest: Path, uid: str) -> Path:
    return next(p.parent for p in dest.rglob("_series.json") if p.parent.name == uid and
                p.relative_to(dest).parts[0] not in RESERVED_PREFIXES)


def test_redownload_repairs_damaged_local_files(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    assert run_sync().exit_code == 0
    uid = sim.series_uids()[0]
    files = sorted(_series_dir(dest, uid).glob("*.dcm"))
    flipped = bytearray(files[0].read_bytes())
    flipped[-1] ^= 0xFF
    files[0].write_bytes(bytes(flipped))  # same size, wrong bytes
    files[1].write_bytes(files[1].read_bytes()[:100])  # truncated
    next_day(sim)
    sim.rerelease_series(uid)  # same content, new DateReleased: the sync downloads it again

    again = run_sync()
    assert again.exit_code == 0, again.failures
    assert again.counts["unchanged"] == len(sim.series_uids()) - 1
    assert again.counts["updated"] == 1
    assert_mirror_equals_archive(dest, sim)  # every visible file is the archive's bytes


def test_full_checks_sizes_of_unchanged_series_and_repairs_them(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    assert run_sync().exit_code == 0
    uid = sim.series_uids("Sim-Brain")[0]
    victim = sorted(_series_dir(dest, uid).glob("*.dcm"))[-1]
    victim.write_bytes(victim.read_bytes()[:-1])
    full = run_sync(full=True)  # nothing changed upstream
    assert full.exit_code == 0 and full.counts["updated"] == 1, full.counts
    assert_mirror_equals_archive(dest, sim)
    assert run_sync(full=True).counts["planned"] == 0


# --- 5: verify keeps reporting damage until it is repaired ---------------------------------


def test_verify_reports_damage_on_every_run_until_repaired(  # type: ignore[no-untyped-def]
    cli, run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    assert run_sync().exit_code == 0
    uid = sim.series_uids()[0]
    victim = sorted(_series_dir(dest, uid).glob("*.dcm"))[0]
    victim.write_bytes(victim.read_bytes()[:-10])

    for _ in range(3):
        res = cli("verify", "--deep")
        assert res.exit_code == 5, res.output
        assert f"BROKEN {uid}" in res.output and "6 series checked" in res.output

    assert run_sync().exit_code == 0
    assert_mirror_equals_archive(dest, sim)
    fixed = cli("verify", "--deep")
    assert fixed.exit_code == 0 and "6 series checked, ok" in fixed.output


def test_verify_leaves_a_series_a_sync_took_up_meanwhile_to_that_sync(  # type: ignore[no-untyped-def]
    run_sync: SyncFn, sim: SimArchive, dest: Path, monkeypatch
) -> None:
    from mirror.storage.local import LocalStore
    from mirror.sync import ops

    assert run_sync().exit_code == 0
    damaged, other = sim.series_uids()[:2]
    for uid in (damaged, other):
        victim = sorted(_series_dir(dest, uid).glob("*.dcm"))[0]
        victim.write_bytes(victim.read_bytes()[:-10])
    ledger_path = dest / "_state" / "ledger.sqlite"
    real_check = ops._check

    def check_then_a_sync_starts_on_it(store, entry, *, deep):  # type: ignore[no-untyped-def]
        problem = real_check(store, entry, deep=deep)
        if entry.series_uid == damaged:  # a sync submits it between the check and the mark
            with Ledger.open(ledger_path) as other_run:
                other_run.mark_in_progress([(sim.record(damaged), entry.path)], "run-meanwhile")
        return problem

    monkeypatch.setattr(ops, "_check", check_then_a_sync_starts_on_it)
    report = ops.verify(LocalStore(str(dest)), ledger_path, deep=True, threads=1)
    assert not report.ok, "the damage seen is still reported"
    assert {b.series_uid for b in report.broken} == {damaged, other}
    assert report.superseded == (damaged,)
    with Ledger.open(ledger_path) as ledger:
        taken, marked = ledger.entry(damaged), ledger.entry(other)
    assert taken is not None and marked is not None
    assert (taken.state, taken.last_error_class, taken.attempts) == ("present", "", 1), "left alone"
    assert (marked.state, marked.last_error_class) == ("failed", "VerifyFailed")

    repair = run_sync()
    assert repair.exit_code == 0 and repair.counts["planned"] == 2, repair.counts
    assert_mirror_equals_archive(dest, sim)


# --- 3: a tombstone goes to the attic on a later --delete ----------------------------------


def _visible_uids(dest: Path) -> set[str]:
    return {p.parent.name for p in dest.rglob("_series.json") if p.relative_to(dest).parts[0]
            not in ("_attic", ".staging")}


def test_tombstone_moves_to_attic_on_a_later_delete(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    assert run_sync().exit_code == 0
    gone = sim.series_uids("Sim-Lung")[0]
    sim.withdraw_series(gone)
    tomb = run_sync(full=True)
    assert tomb.exit_code == 0 and tomb.counts["withdrawn"] == 1
    assert gone in _visible_uids(dest), "a tombstone stays visible without --delete"

    first = run_sync(full=True, delete=True)
    assert first.exit_code == 0 and first.counts["withdrawn"] == 1, first.counts
    assert gone not in _visible_uids(dest)
    assert [p.parent.name for p in (dest / "_attic" / first.run_id).rglob("_series.json")] == [gone]
    assert_mirror_equals_archive(dest, sim)

    second = run_sync(full=True, delete=True)
    assert second.exit_code == 0 and second.counts["withdrawn"] == 0 and second.counts["planned"] == 0


# --- 1: a silent same-size change upstream is found by --full's MD5 hierarchy --------------


def test_full_finds_silent_same_size_changes_top_down(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    assert run_sync().exit_code == 0
    quiet = run_sync(full=True)
    assert quiet.exit_code == 0 and quiet.counts["planned"] == 0
    # one request per collection proves both collections unchanged
    assert quiet.extra["md5_hierarchy"] == {"requests": 2, "drifted": [], "unknown": []}

    uid = sim.series_uids("Sim-Lung")[0]
    for index in (0, 1):  # once, then a second silent replacement after the first is mirrored
        listed = sim.record(uid).fingerprint
        sim.replace_instance(uid, index, rerelease=False)
        assert sim.record(uid).fingerprint == listed, "no listing field shows the change"
        nightly = run_sync()
        assert nightly.exit_code == 0 and nightly.counts["planned"] == 0

        full = run_sync(full=True)
        assert full.exit_code == 0, full.failures
        assert full.counts["updated"] == 1 and full.counts["unchanged"] == len(sim.series_uids()) - 1
        assert full.extra["md5_hierarchy"]["drifted"] == [uid], full.extra
        # Sim-Brain: 1 request. Sim-Lung: the collection, its 2 patients, the changed
        # patient's 1 study, that study's 2 series; the other patient is not descended.
        assert full.extra["md5_hierarchy"]["requests"] == 1 + 1 + 2 + 1 + 2
        assert_mirror_equals_archive(dest, sim)
    assert run_sync(full=True).extra["md5_hierarchy"]["drifted"] == []


def test_verify_upstream_reports_a_silent_change_and_sync_repairs_it(  # type: ignore[no-untyped-def]
    cli, run_sync: SyncFn, sim: SimArchive, dest: Path, archive_server: SimServer
) -> None:
    assert run_sync().exit_code == 0
    plain = cli("verify", "--upstream", "--archive", archive_server.base_url)
    assert plain.exit_code == 0 and "6 series checked, ok" in plain.output

    uid = sim.series_uids("Sim-Brain")[1]
    sim.replace_instance(uid, 0, rerelease=False)
    assert cli("verify", "--deep").exit_code == 0, "the sidecar alone cannot see it"
    for _ in range(2):  # reported until repaired
        res = cli("verify", "--upstream", "--archive", archive_server.base_url)
        assert res.exit_code == 5, res.output
        assert f"BROKEN {uid}: content differs from the archive's" in res.output

    fixed = run_sync()  # verify marked it failed: a plain nightly run fetches it again
    assert fixed.exit_code == 0 and fixed.counts["updated"] == 1, fixed.counts
    assert_mirror_equals_archive(dest, sim)
    assert cli("verify", "--upstream", "--archive", archive_server.base_url).exit_code == 0


def test_ledger_without_series_hashes_adopts_them_without_refetching(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    """A ledger and sidecars from before the hash was kept: --full checks each series once
    against the archive, fetches nothing, and from then on proves collections in one call."""
    assert run_sync().exit_code == 0
    ledger = dest / "_state" / "ledger.sqlite"
    with sqlite3.connect(ledger) as conn:
        # as a ledger upgraded from 0.1.0 reads: the column is there, every value empty
        # (test_sync_ledger_migrate upgrades a real 0.1.0 ledger)
        conn.execute("UPDATE series SET md5_hierarchy = ''")
    for path in dest.rglob("_series.json"):
        data = json.loads(path.read_text())
        del data["md5_hierarchy"]
        path.write_text(json.dumps(data))

    first = run_sync(full=True)
    assert first.exit_code == 0 and first.counts["planned"] == 0, first.counts
    assert first.extra["md5_hierarchy"]["drifted"] == []
    assert first.extra["md5_hierarchy"]["requests"] == len(sim.series_uids())
    assert run_sync(full=True).extra["md5_hierarchy"]["requests"] == 2


# --- 4: results of running series are never lost -------------------------------------------


def _ledger_rows(dest: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(dest / "_state" / "ledger.sqlite") as conn:
        return {uid: (state, chash) for uid, state, chash in
                conn.execute("SELECT series_uid, state, content_hash FROM series")}


def _committed(dest: Path) -> dict[str, SeriesSidecar]:
    return {p.parent.name: SeriesSidecar.from_json(p.read_bytes())
            for p in dest.rglob("_series.json")
            if p.relative_to(dest).parts[0] not in RESERVED_PREFIXES}  # not staging, not attic


@pytest.mark.slow
def test_sigterm_drains_running_series_and_records_every_commit(
    sim: SimArchive, archive_server: SimServer, dest: Path
) -> None:
    for i in range(18):
        sim.add_series("Sim-Lung", patient_id=f"TERM-{i:02d}", n_instances=2)
    sim.faults = FaultConfig(latency=0.2)
    scratch = dest.parent / "scratch"
    scratch.mkdir(parents=True)
    argv = [sys.executable, "-c", "from mirror.cli import main; main()", "sync", "--dest",
            str(dest), "--archive", archive_server.base_url, "--workers", "0", "--threads", "4"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_committed(dest)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 130
    committed = _committed(dest)
    rows = _ledger_rows(dest)
    unrecorded = {uid for uid, sc in committed.items() if rows.get(uid) != ("present", sc.content_hash)}
    assert not unrecorded, f"{len(unrecorded)} of {len(committed)} committed series unrecorded"
    assert len(committed) >= 2


def test_commits_a_run_never_recorded_are_reconciled_and_listed(
    run_sync: SyncFn, sim: SimArchive, dest: Path, tmp_path: Path
) -> None:
    """The ledger as a run leaves it when tasks commit after the driver stopped recording
    (a stop with running tasks, the driver killed): the sidecars are on disk, the ledger
    still holds the old content or 'in_progress'."""
    assert run_sync().exit_code == 0
    ledger = dest / "_state" / "ledger.sqlite"
    before = tmp_path / "ledger-before.sqlite"
    with sqlite3.connect(ledger) as src, sqlite3.connect(before) as copy:
        src.backup(copy)
    next_day(sim)
    changed = sim.series_uids("Sim-Brain")[0]
    sim.replace_instance(changed, 1)
    added = sim.add_series("Sim-Brain", patient_id="LATE", n_instances=2)
    assert run_sync().counts["updated"] == 1

    with sqlite3.connect(before) as src, sqlite3.connect(ledger) as back:
        src.backup(back)  # the committing run's results never reached the ledger
    with Ledger.open(ledger) as led:
        led.mark_in_progress([(sim.record(changed), _path(dest, changed)),
                              (sim.record(added), _path(dest, added))], "lost-run")
    listing = tmp_path / "changed.txt"
    again = run_sync(changed_files=str(listing))
    assert again.exit_code == 0, again.failures
    assert sorted(listing.read_text().splitlines()) == sorted([_path(dest, changed), _path(dest, added)])
    assert again.extra["reconciled"] == sorted([changed, added])
    rows, committed = _ledger_rows(dest), _committed(dest)
    assert all(rows[uid] == ("present", sc.content_hash) for uid, sc in committed.items())
    assert_mirror_equals_archive(dest, sim)
    assert run_sync().counts["planned"] == 0


def _path(dest: Path, uid: str) -> str:
    return _series_dir(dest, uid).relative_to(dest).as_posix()


def test_lagging_collection_cache_full_finds_after_refresh_verify_at_once(  # type: ignore[no-untyped-def]
    cli, run_sync: SyncFn, sim: SimArchive, dest: Path, archive_server: SimServer
) -> None:
    """NBIA serves the collection level from a cache its background job refills."""
    assert run_sync().exit_code == 0
    cache_collection_md5(sim)
    uid = sim.series_uids("Sim-Lung")[2]
    sim.replace_instance(uid, 0, rerelease=False)

    lagging = run_sync(full=True)
    assert lagging.exit_code == 0 and lagging.extra["md5_hierarchy"]["drifted"] == []

    cache_collection_md5(sim)  # the background job ran
    found = run_sync(full=True)
    assert found.exit_code == 0 and found.counts["updated"] == 1, found.counts
    assert found.extra["md5_hierarchy"]["drifted"] == [uid]
    assert_mirror_equals_archive(dest, sim)

    sim.replace_instance(uid, 1, rerelease=False)  # the cache lags again
    res = cli("verify", "--upstream", "--archive", archive_server.base_url)
    assert res.exit_code == 5 and f"BROKEN {uid}: content differs" in res.output, res.output
