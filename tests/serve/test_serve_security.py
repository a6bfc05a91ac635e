"""Hostile and restricted requests: traversal, bounds, methods, auth, CORS, visibility."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import httpx
import pytest

from mirror.serve import AuthConfig, Limits, ServeConfig
from mirror.serve.server import Running, serve_in_thread


def raw_get(running: Running, target: str) -> tuple[int, bytes]:
    """Send a request line exactly as given (httpx would normalise ``..`` away)."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", [
    "/dicomweb/studies/../../etc/passwd",
    "/dicomweb/studies/%2e%2e/%2e%2e/etc/passwd",
    "/zarr/..%2f..%2fetc/passwd",
    "/zarr/_index/LATEST",
    "/dicomweb/studies/1.2/series/1.3/instances/1.4/bulkdata/..%2f_series.json",
    "/dicomweb/studies/1.2/series/1.3/instances/1.4/bulkdata/7FE00010/../../x",
    "/TCGA-LUAD/P-001/",
    "/_index/LATEST",
    "/.staging/",
])
def test_traversal_and_store_paths_are_refused(server, target):
    status, body = raw_get(server, target)
    assert status in (400, 404), (target, status)
    assert b"root:" not in body and b"snapshot_id" not in body


@pytest.mark.parametrize("path", ["/studies/not-a-uid", "/studies/1.2.3/series/1..2",
                                  "/studies/1.2.3/series/1.2/instances/1.2/frames/0",
                                  "/studies/1.2.3/series/1.2/instances/1.2/frames/a,b",
                                  "/studies/" + "1." * 40 + "1"])
def test_malformed_uids_and_frame_lists(base, path):
    r = httpx.get(base + path)
    assert r.status_code == 400, path
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_too_many_frames_and_params(base, tree):
    s, se = tree.sidecars["ct"].study_uid, tree.sidecars["ct"].series_uid
    frames = ",".join(["1"] * 600)
    r = httpx.get(f"{base}/studies/{s}/series/{se}/instances/1.2/frames/{frames}")
    assert r.status_code == 400
    query = "&".join(f"p{n}=1" for n in range(100))
    assert httpx.get(f"{base}/studies?{query}").status_code == 400
    assert httpx.get(f"{base}/studies?x={'a' * 9000}").status_code == 414


def test_read_only_and_no_bodies(base):
    assert httpx.post(base + "/studies", content=b"x").status_code == 405
    assert httpx.delete(base + "/studies").status_code == 405
    r = httpx.request("GET", base + "/studies", content=b"x" * 10)
    assert r.status_code == 413


def test_request_id_is_echoed_or_made(base, caplog):
    r = httpx.get(base + "/studies", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    bad = httpx.get(base + "/studies?limit=x", headers={"X-Request-ID": "<script>"})
    assert bad.headers["x-request-id"] != "<script>"
    assert any(bad.headers["x-request-id"] in rec.getMessage() for rec in caplog.records)


def test_hidden_series_are_never_served(base, tree):
    for name, uid in tree.hidden.items():
        r = httpx.get(f"{base}/series?SeriesInstanceUID={uid}")
        assert r.status_code == 204, name
        study = tree.studies["C"].uid
        assert httpx.get(f"{base}/studies/{study}/series/{uid}").status_code == 404, name
        assert httpx.get(f"{base}/studies/{study}/series/{uid}/metadata").status_code == 404
    counts = httpx.get(f"{base}/studies?StudyInstanceUID={tree.studies['C'].uid}").json()[0]
    assert counts["00201206"]["Value"] == [1] and counts["00201208"]["Value"] == [3]


@pytest.fixture
def guarded(mirror_dir) -> Iterator[tuple[str, Running]]:
    store, _ = mirror_dir

    def run(auth: AuthConfig | None, cors: tuple[str, ...] = ()):
        config = ServeConfig(dest=store.url, port=0, auth=auth, cors_origins=cors,
                             limits=Limits(max_limit=2))
        return serve_in_thread(store, config)
    yield run


def test_bearer_token(guarded):
    with guarded(AuthConfig("bearer", "s3cret")) as running:
        url = running.base_url + "/dicomweb/studies"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(url, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and len(ok.json()) == 2  # max_limit=2 caps pages
        assert httpx.get(running.base_url + "/healthz").status_code == 200
        assert httpx.get(running.base_url + "/").status_code == 401


def test_basic_auth(guarded):
    with guarded(AuthConfig("basic", "ann:pw")) as running:
        url = running.base_url + "/dicomweb/studies"
        r = httpx.get(url)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert httpx.get(url, auth=("ann", "nope")).status_code == 401
        assert httpx.get(url, auth=("ann", "pw")).status_code == 200
        junk = base64.b64encode(b"\xff\xfe").decode()
        assert httpx.get(url, headers={"Authorization": f"Basic {junk}"}).status_code == 401


def test_cors_preflight_and_origin(guarded):
    with guarded(AuthConfig("bearer", "t"), cors=("https://viewer.example",)) as running:
        url = running.base_url + "/dicomweb/studies"
        pre = httpx.options(url, headers={
            "Origin": "https://viewer.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization,accept"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://viewer.example"
        r = httpx.get(url, headers={"Origin": "https://viewer.example",
                                    "Authorization": "Bearer t"})
        assert r.headers["access-control-allow-origin"] == "https://viewer.example"
        assert "warning" in r.headers["access-control-expose-headers"].lower()
        other = httpx.get(url, headers={"Origin": "https://evil.example",
                                        "Authorization": "Bearer t"})
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(base):
    r = httpx.get(base + "/studies", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_binds_loopback_by_default():
    assert ServeConfig(dest="x").host == "127.0.0.1"


def test_unknown_routes_answer_json_with_the_request_id(server, caplog):
    r = httpx.get(server.base_url + "/no/such/route")
    assert r.status_code == 404 and r.json()["request_id"] == r.headers["x-request-id"]
    assert any(r.headers["x-request-id"] in rec.getMessage() for rec in caplog.records)


def test_hostile_host_header_never_reaches_absolute_uris(server):
    status, body = raw_get_with_host(server, "/dicomweb/studies?limit=1", 'evil"><x')
    assert status == 200
    assert b"evil" not in body and f"127.0.0.1:{server.port}".encode() in body


def raw_get_with_host(running: Running, target: str, host: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_serving_writes_nothing_to_the_mirror(mirror_dir, server, tree):
    """Read-only: no lock, no cache, no state is written next to a sync."""
    store, _ = mirror_dir
    before = {k: store.info(k).size for k in store.list()}
    s, se = tree.sidecars["ct"].study_uid, tree.sidecars["ct"].series_uid
    base = server.base_url
    for path in ("/", "/collections/tcga_luad", f"/dicomweb/studies/{s}/metadata",
                 f"/dicomweb/studies/{s}", f"/dicomweb/studies/{s}/series/{se}/thumbnail"):
        assert httpx.get(base + path).status_code == 200, path
    assert {k: store.info(k).size for k in store.list()} == before
