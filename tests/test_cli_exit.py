"""The console entry point ends the process itself once a command is done (skipping the
interpreter's teardown): the exit code, the output and the logs must all still arrive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mirror import __version__

MAIN = "from mirror.cli import main; main()"


def _mirror(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_output_to_a_pipe_arrives_whole_with_exit_0() -> None:
    done = _mirror("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"mirror {__version__}\n", "")
    helped = _mirror("sync", "--help")
    assert helped.returncode == 0
    assert "--summary-json" in helped.stdout and helped.stdout.endswith("\n")


def test_a_usage_error_keeps_its_exit_code_and_message(tmp_path: Path) -> None:
    done = _mirror("sync", "Sim-Lung", "--dest", str(tmp_path / "m"), "--workers", "-1")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --workers must be >= 0, --threads and http slots >= 1"


def test_an_uncaught_exception_still_exits_1_with_its_traceback() -> None:
    code = "import mirror.cli as c; c.app = lambda: 1 / 0; c.main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "ZeroDivisionError" in done.stderr
