"""Single-host scheduling: systemd units and timers, the cron file."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from croniter import croniter
from deploy_helpers import DEPLOY

SYSTEMD = DEPLOY / "systemd"
CRON = DEPLOY / "cron" / "tcia-mirror.cron"
UNITS = sorted([*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.timer")])


def ini(path: Path) -> dict[str, dict[str, str]]:
    """systemd's unit syntax (sections, Key=value, backslash continuations)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


@pytest.fixture
def units_with_local_binary(tmp_path: Path) -> list[Path]:
    # systemd-analyze verify checks that ExecStart exists; point it at this venv's `mirror`.
    mirror = shutil.which("mirror")
    if mirror is None:
        pytest.skip("the `mirror` console script is not installed")
    out = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/tcia-mirror/venv/bin/mirror", mirror))
        out.append(copy)
    return out


def test_systemd_analyze_verify_is_clean(units_with_local_binary: list[Path]) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    proc = subprocess.run(
        [analyze, "verify", *map(str, units_with_local_binary)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # Unknown keys and unparsable values are only warnings (rc stays 0): fail on them too.
    ours = [ln for ln in proc.stderr.splitlines() if "tcia-mirror" in ln]
    assert ours == [], ours


def test_systemd_analyze_catches_a_misspelt_key(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    bad = tmp_path / "tcia-mirror.timer"
    bad.write_text(
        (SYSTEMD / "tcia-mirror.timer").read_text().replace("Persistent=", "Persistant=")
    )
    (tmp_path / "tcia-mirror.service").write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    proc = subprocess.run(
        [analyze, "verify", str(bad)], capture_output=True, text=True, check=False
    )
    assert "Unknown key 'Persistant'" in proc.stderr


@pytest.mark.parametrize("name", ["tcia-mirror.timer", "tcia-mirror-full.timer"])
def test_timers_catch_up_spread_load_and_target_their_service(name: str) -> None:
    timer = ini(SYSTEMD / name)["Timer"]
    assert timer["Persistent"] == "true"
    assert timer["RandomizedDelaySec"]
    assert (SYSTEMD / timer["Unit"]).exists()
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        proc = subprocess.run(
            [analyze, "calendar", timer["OnCalendar"]], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["tcia-mirror.service", "tcia-mirror-full.service"])
def test_services_run_non_root_with_a_deadline_and_no_inline_secrets(name: str) -> None:
    unit = ini(SYSTEMD / name)
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    assert service["User"] == "tcia-mirror"
    assert service["EnvironmentFile"] == "/etc/tcia-mirror/env"
    assert service["TimeoutStartSec"].endswith("h")
    assert service["SuccessExitStatus"] == "75"
    assert service["NoNewPrivileges"] == "true"
    assert service["ProtectSystem"] == "strict"
    assert not re.search(r"AWS_SECRET|PASSWORD", (SYSTEMD / name).read_text())
    argv = shlex.split(service["ExecStart"])
    assert argv[argv.index("--metrics") + 1].startswith(service["ReadWritePaths"])
    # The ledger must be on the unit's local StateDirectory.
    assert argv[argv.index("--state-dir") + 1] == f"/var/lib/{service['StateDirectory']}"


def cron_entries() -> list[list[str]]:
    lines = CRON.read_text().splitlines()
    return [ln.split(None, 6) for ln in lines if re.match(r"^[0-9*@]", ln)]


def test_cron_entries_are_valid_and_use_flock_with_exit_75() -> None:
    entries = cron_entries()
    assert len(entries) == 2
    for fields in entries:
        schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        assert croniter.is_valid(schedule), schedule
        assert user == "tcia-mirror"
        # cron turns an unescaped % into a newline.
        assert "%" not in command
        words = shlex.split(command)
        i = words.index("flock")
        assert words[i + 1 : i + 4] == ["-n", "-E", "75"]


def test_cron_flock_form_really_exits_75_when_the_lock_is_held(tmp_path: Path) -> None:
    import fcntl

    flock = shutil.which("flock")
    if flock is None:
        pytest.skip("flock (util-linux) is not installed")
    lock = tmp_path / "tcia-mirror.lock"
    marker = tmp_path / "ran"
    cmd = [flock, "-n", "-E", "75", str(lock), "touch", str(marker)]
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert subprocess.run(cmd, check=False).returncode == 75
        assert not marker.exists()
    assert subprocess.run(cmd, check=False).returncode == 0
    assert marker.exists()
