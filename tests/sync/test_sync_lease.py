"""The destination lease: one sync per destination, whatever each run's state dir.

Units drive :class:`DestinationLease` over a memory store with an injected clock; the
integration test runs ``mirror sync`` twice against one S3 bucket (moto) with different
state dirs, then SIGKILLs the holder and waits out its lease.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror.archive.sim import FaultConfig, SimArchive, SimServer
from mirror.errors import EXIT_LOCKED, LeaseLost, LockHeld, PreconditionFailed
from mirror.storage.memory import MemoryStore
from mirror.sync.lease import LEASE_KEY, DestinationLease, LeaseRecord


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(request: pytest.FixtureRequest) -> MemoryStore:
    return MemoryStore(f"lease-{request.node.name}")


def holder(store: MemoryStore) -> LeaseRecord:
    record = LeaseRecord.from_bytes(store.get_bytes(LEASE_KEY))
    assert record is not None
    return record


def test_second_run_is_refused_while_the_lease_is_live(store: MemoryStore) -> None:
    clock = Clock()
    first = DestinationLease(store, "run-a", duration=60, clock=clock)
    first.acquire()
    assert holder(store).run_id == "run-a" and holder(store).expires_at == clock.now + 60
    clock.now += 59
    with pytest.raises(LockHeld, match="run run-a"):
        DestinationLease(store, "run-b", duration=60, clock=clock).acquire()
    assert holder(store).run_id == "run-a"


def test_renewal_keeps_the_lease_alive_past_its_first_expiry(store: MemoryStore) -> None:
    clock = Clock()
    first = DestinationLease(store, "run-a", duration=60, clock=clock)
    first.acquire()
    for _ in range(5):
        clock.now += 20
        first.renew()
    assert holder(store).expires_at == clock.now + 60
    with pytest.raises(LockHeld):
        DestinationLease(store, "run-b", duration=60, clock=clock).acquire()


def test_expired_lease_is_taken_over_and_the_stalled_holder_learns_it(store: MemoryStore) -> None:
    clock = Clock()
    stalled = DestinationLease(store, "run-a", duration=60, clock=clock)
    stalled.acquire()
    clock.now += 61
    late = DestinationLease(store, "run-b", duration=60, clock=clock)
    late.acquire()
    assert holder(store).run_id == "run-b"
    with pytest.raises(LeaseLost):
        stalled.renew()
    assert stalled.lost and not stalled.held
    stalled.release()  # must not delete run-b's lease
    assert holder(store).run_id == "run-b"
    late.release()
    assert not store.exists(LEASE_KEY)


def test_two_late_comers_cannot_both_take_an_expired_lease(store: MemoryStore) -> None:
    clock = Clock()
    DestinationLease(store, "dead", duration=60, clock=clock).acquire()
    clock.now += 61
    _, stale_token = store.get_with_token(LEASE_KEY)
    DestinationLease(store, "run-b", duration=60, clock=clock).acquire()
    # run-c read the dead holder's version before run-b replaced it: its swap loses.
    with pytest.raises(PreconditionFailed):
        store.put_if(LEASE_KEY, b"{}", token=stale_token)
    with pytest.raises(LockHeld):
        DestinationLease(store, "run-c", duration=60, clock=clock).acquire()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(store: MemoryStore) -> None:
    clock = Clock()
    DestinationLease(store, "killed", duration=60, clock=clock, host="h1", pidns="ns1").acquire()
    DestinationLease(
        store, "next", clock=clock, host="h1", pidns="ns1", alive=lambda pid: False
    ).acquire()
    assert holder(store).run_id == "next"


def test_a_holder_in_another_pid_namespace_of_this_host_waits_for_expiry(
    store: MemoryStore,
) -> None:
    clock = Clock()  # two containers sharing the host's name: the pid means nothing here
    DestinationLease(store, "other", duration=60, clock=clock, host="h1", pidns="ns1").acquire()
    late = DestinationLease(
        store, "next", clock=clock, host="h1", pidns="ns2", alive=lambda pid: False
    )
    with pytest.raises(LockHeld):
        late.acquire()


def test_a_dead_holder_on_another_host_blocks_until_expiry(store: MemoryStore) -> None:
    clock = Clock()
    DestinationLease(store, "killed", duration=60, clock=clock, host="h1").acquire()
    late = DestinationLease(store, "next", clock=clock, host="h2", alive=lambda pid: False)
    with pytest.raises(LockHeld):  # its pid means nothing here: only expiry counts
        late.acquire()
    clock.now += 60
    late.acquire()
    assert holder(store).run_id == "next"


def test_release_after_a_takeover_marks_the_lease_lost(store: MemoryStore) -> None:
    clock = Clock()
    stalled = DestinationLease(store, "run-a", duration=60, clock=clock)
    stalled.acquire()
    clock.now += 61
    DestinationLease(store, "run-b", duration=60, clock=clock).acquire()
    stalled.release()  # the renewer never ran: release is where it finds out
    assert stalled.lost and holder(store).run_id == "run-b"


def test_unreadable_lease_object_counts_as_expired(store: MemoryStore) -> None:
    store.put_bytes(LEASE_KEY, b"not json")
    lease = DestinationLease(store, "run-a", duration=60, clock=Clock())
    lease.acquire()
    assert holder(store).run_id == "run-a"


def test_context_manager_releases_on_error(store: MemoryStore) -> None:
    with pytest.raises(RuntimeError), DestinationLease(store, "run-a", duration=60):
        assert store.exists(LEASE_KEY)
        raise RuntimeError("boom")
    assert not store.exists(LEASE_KEY)


def test_local_destination_lease_is_a_file_in_the_destination(tmp_path: Path) -> None:
    from mirror.storage.local import LocalStore

    dest = LocalStore(str(tmp_path / "mirror"))
    clock = Clock()
    with DestinationLease(dest, "run-a", duration=60, clock=clock):
        assert (tmp_path / "mirror" / "_locks" / "sync.lease").is_file()
        with pytest.raises(LockHeld):
            DestinationLease(LocalStore(str(tmp_path / "mirror")), "run-b", clock=clock).acquire()
    assert not (tmp_path / "mirror" / "_locks").exists()


# --- two CLI runs on one S3 destination ---------------------------------------------------

MAIN = "from mirror.cli import main; main()"


def cli_env(moto_endpoint: str, lease_seconds: float) -> dict[str, str]:
    return {
        **os.environ,
        "MIRROR_S3_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MIRROR_LEASE_SECONDS": str(lease_seconds),
    }


def sync_argv(server: SimServer, dest: str, state_dir: Path) -> list[str]:
    (state_dir / "scratch").mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-c", MAIN, "sync", "--dest", dest, "--archive", server.base_url,
            "--state-dir", str(state_dir), "--scratch-dir", str(state_dir / "scratch"),
            "--workers", "0", "--threads", "2"]


def start(server: SimServer, dest: str, state: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(sync_argv(server, dest, state), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_lease(store, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not store.exists(LEASE_KEY):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the first run never took the lease"
        time.sleep(0.05)


def run_json(server: SimServer, dest: str, state: Path, env: dict[str, str]) -> dict:
    done = subprocess.run([*sync_argv(server, dest, state), "--json"], env=env,
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout)


def series_held(store, sim: SimArchive) -> int:
    return len([k for k in store.list("Sim-Lung") if k.endswith("_series.json")])


@pytest.fixture
def s3_env(moto_endpoint: str) -> dict[str, str]:
    return cli_env(moto_endpoint, lease_seconds=5)


@pytest.fixture
def grown(sim: SimArchive) -> SimArchive:
    for i in range(20):
        sim.add_series("Sim-Lung", patient_id=f"LEASE-{i:02d}", n_instances=2)
    sim.faults = FaultConfig(latency=0.3)
    return sim


@pytest.mark.slow
def test_two_runs_on_one_s3_destination_exclude_each_other_and_a_killed_holder_frees_it(
    grown: SimArchive, archive_server: SimServer, make_s3_store, s3_env, tmp_path: Path
) -> None:
    store = make_s3_store(prefix="mirror", tag="lease")
    first = start(archive_server, store.url, tmp_path / "state-a", s3_env)
    try:
        wait_for_lease(store, first)
        second = subprocess.run(sync_argv(archive_server, store.url, tmp_path / "state-b"),
                                env=s3_env, capture_output=True, timeout=120, check=False)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        assert second.returncode == EXIT_LOCKED, second.stderr.decode()[-2000:]
        assert b"another sync holds" in second.stderr
        assert not (tmp_path / "state-b" / "ledger.sqlite").exists()  # refused before any work
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(60)
    assert store.exists(LEASE_KEY)  # SIGKILL left it behind, unexpired (5 s)
    grown.faults = FaultConfig()
    summary = run_json(archive_server, store.url, tmp_path / "state-c", s3_env)
    assert summary["counts"]["failed"] == 0
    assert series_held(store, grown) == len(grown.series_uids("Sim-Lung"))
    assert not store.exists(LEASE_KEY)  # released at the end


@pytest.mark.slow
def test_a_stalled_holder_loses_the_s3_lease_after_expiry_and_exits_75(
    grown: SimArchive, archive_server: SimServer, make_s3_store, s3_env, tmp_path: Path
) -> None:
    store = make_s3_store(prefix="mirror", tag="stall")
    first = start(archive_server, store.url, tmp_path / "state-a", s3_env)
    try:
        wait_for_lease(store, first)
        first.send_signal(signal.SIGSTOP)  # alive (pid exists) but no longer renewing
        left = LeaseRecord.from_bytes(store.get_bytes(LEASE_KEY))
        assert left is not None
        if time.time() < left.expires_at - 0.5:
            with pytest.raises(LockHeld):  # still live: refused
                DestinationLease(store, "probe", duration=5).acquire()
        while time.time() <= left.expires_at:  # wait out the lease (< 5 s)
            time.sleep(0.1)
        summary = run_json(archive_server, store.url, tmp_path / "state-c", s3_env)
        assert summary["counts"]["failed"] == 0
        assert series_held(store, grown) == len(grown.series_uids("Sim-Lung"))
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(120) == EXIT_LOCKED, first.stderr.read().decode()[-2000:]
    assert b"taken over" in first.stderr.read()
