"""The layering in pyproject.toml's [tool.importlinter] holds (issue #10), and it bites.

Contracts: CLI > convert > index > sync > the two ports > config > errors; adapters never
import the engine; the engine imports no concrete adapter (no exceptions: the CLI composes
sources and the destination); real adapters never import the simulators; no import cycles between
siblings at any depth.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first: the venv's editable install may point at another checkout.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", _LINT, "pyproject.toml", "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_import_contracts_are_kept() -> None:
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    shutil.copytree(
        ROOT / "mirror", tmp_path / "mirror", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "reported"),
    [
        (
            "mirror/config.py",
            "from mirror.sync import plan",
            "mirror.config is not allowed to import",
        ),
        (
            "mirror/archive/nbia.py",
            "import mirror.sync.ledger",
            "mirror.archive.nbia -> mirror.sync",
        ),
        ("mirror/sync/run.py", "import mirror.storage.s3", "mirror.sync.run -> mirror.storage.s3"),
        (
            "mirror/archive/sim/records.py",
            "import mirror.archive.sim.model",
            "No cycles are allowed",
        ),
    ],
    ids=["config-imports-engine", "adapter-imports-engine", "engine-imports-adapter", "cycle"],
)
def test_a_violation_breaks_the_suite(
    tmp_path: Path, module: str, line: str, reported: str
) -> None:
    proc = _lint(_copy_with(tmp_path, module, line))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert reported in proc.stdout
