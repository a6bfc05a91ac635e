"""The embedded cluster's start/stop chatter reaches the terminal only with ``-v``."""

from __future__ import annotations

import subprocess
import sys

import pytest

MAIN = "from mirror.cli import main; main()"


def _build(store_url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", MAIN, *flags, "index", "build", "--dest", store_url,
           "--workers", "1", "--full"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.slow
def test_index_build_keeps_dask_info_lines_for_verbose(store, tree) -> None:
    quiet = _build(store.url)
    assert quiet.returncode == 0, quiet.stderr
    assert f"{len(tree)} series" in quiet.stdout
    assert "distributed." not in quiet.stderr, quiet.stderr
    loud = _build(store.url, "-v")
    assert loud.returncode == 0, loud.stderr
    assert "INFO distributed.scheduler" in loud.stderr
