"""`mirror serve` as a process: starts on the mirror, answers, stops on SIGTERM with 0;
refuses a destination without an index (exit 2); the catalogue pages."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

CLI = [sys.executable, "-c", "from mirror.cli import main; main()"]


def test_serve_command_runs_and_stops(mirror_dir):
    store, tree = mirror_dir
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]),
           "MIRROR_SERVE_TOKEN": "tok"}
    proc = subprocess.Popen([*CLI, "serve", "--dest", store.url, "--port", "0"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:  # blocks until the server says where it listens
            found = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
            if found:
                url = found.group(1)
                break
        assert url, "no 'serving ... on' line"
        assert httpx.get(url + "/healthz").json()["status"] == "ok"
        assert httpx.get(url + "/dicomweb/studies").status_code == 401
        r = httpx.get(url + "/dicomweb/studies", headers={"Authorization": "Bearer tok"})
        assert len(r.json()) == len(tree.studies)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_without_an_index_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([*CLI, "serve", "--dest", str(tmp_path / "empty"), "--port", "0"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert proc.returncode == 2
    assert "mirror index build" in proc.stderr


@pytest.mark.parametrize("env", [{"MIRROR_SERVE_TOKEN": "a", "MIRROR_SERVE_BASIC": "u:p"},
                                 {"MIRROR_SERVE_BASIC": "nocolon"}])
def test_bad_auth_environment(env):
    from mirror.errors import UsageError
    from mirror.serve import auth_from_env

    with pytest.raises(UsageError):
        auth_from_env(env)


def test_catalogue_pages(server, tree):
    home = httpx.get(server.base_url + "/")
    assert home.status_code == 200 and "TCGA-LUAD" in home.text and "LIDC-IDRI" in home.text
    # TCGA-LUAD: 2 subjects, 2 studies, 3 series, 10 instances
    assert re.search(r"TCGA-LUAD</a></td><td>2</td><td>2</td><td>3</td><td>10</td>", home.text)
    page = httpx.get(server.base_url + "/collections/tcga_luad")
    ct = tree.series["ct"]
    thumb = f"/dicomweb/studies/{ct.study.uid}/series/{ct.uid}/thumbnail"
    assert thumb in page.text
    assert httpx.get(server.base_url + thumb).headers["content-type"] == "image/jpeg"
    cine = httpx.get(f"{server.base_url}/cine/{ct.study.uid}/{ct.uid}")
    assert cine.status_code == 200 and cine.text.count("/rendered?viewport=") >= 5
    assert httpx.get(server.base_url + "/collections/nope").status_code == 404
    assert httpx.get(server.base_url + "/cine/1.2/x").status_code == 400


def test_listening_socket_is_tcp_so_answers_are_not_delayed():
    """asyncio sets TCP_NODELAY on accepted connections only for IPPROTO_TCP listeners;
    without it every two-write answer waited ~40 ms for the client's delayed ACK."""
    import socket

    from mirror.serve.server import bind

    with bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
