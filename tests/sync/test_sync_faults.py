"""Every simulator fault mode: nothing partial is ever visible, and a re-run converges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from synchelp import SyncFn, assert_mirror_equals_archive, assert_nothing_partial

from mirror.archive.sim import FaultConfig, SimArchive

FAULTS: dict[str, dict[str, Any]] = {
    "500s": {"fail_next": 3},
    "429s": {"rate_limit_next": 3, "retry_after": 2.0},
    "metadata_500": {"metadata_fail_next": 2},
    "metadata_429": {"metadata_rate_limit_next": 2},
    "truncated": {"truncate_next": 3, "truncate_after": 1500},
    "short_zip": {"short_next": 6},
    "license_only": {"license_only_next": 6},
    "random_errors": {"error_rate": 0.4, "rate_limit_rate": 0.2},
    "over_connection_limit": {"max_connections": 1},
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_mode_converges(name: str, run_sync: SyncFn, sim: SimArchive, dest: Path) -> None:
    sim.faults = FaultConfig(**FAULTS[name])
    first = run_sync()
    assert first.exit_code in (0, 1), first.error
    assert (first.exit_code == 1) == bool(first.failures)
    assert_nothing_partial(dest, sim)
    sim.faults = FaultConfig()
    second = run_sync()
    assert second.exit_code == 0, second.failures
    assert_mirror_equals_archive(dest, sim)
    assert run_sync().counts["planned"] == 0


def test_persistent_wrong_md5_fails_that_series_only_then_converges(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    bad = sim.series_uids()[0]
    sim.faults = FaultConfig(wrong_md5=frozenset({(bad, 0)}))
    first = run_sync()
    assert first.exit_code == 1
    assert [(f.series_uid, f.error_class) for f in first.failures] == [(bad, "ChecksumMismatch")]
    assert first.retries >= 1, "retryable failures get an end-of-run pass"
    assert bad not in assert_nothing_partial(dest, sim)
    assert first.watermark["after"] is None
    sim.faults = FaultConfig()
    second = run_sync()
    assert second.exit_code == 0 and second.counts["downloaded"] == 1
    assert_mirror_equals_archive(dest, sim)


def test_series_withdrawn_during_download_is_not_retried(
    run_sync: SyncFn, sim: SimArchive, dest: Path
) -> None:
    sim.faults = FaultConfig(withdraw_next=1)
    first = run_sync()
    assert first.exit_code == 1
    (failure,) = first.failures
    assert failure.error_class == "AccessDenied" and not failure.retryable
    sim.faults = FaultConfig()
    # The failed run did not set a watermark, so the next run lists in full and sees it gone.
    second = run_sync(delete=True)  # never present: nothing to move to the attic
    assert second.exit_code == 0 and second.counts["withdrawn"] == 1
    assert_mirror_equals_archive(dest, sim)
