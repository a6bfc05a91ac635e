"""Optional OAuth tokens: the simulator's token endpoint and the client's refresh logic."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from mirror.archive.auth import TokenManager, token_url_for
from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import FaultConfig, SimArchive, SimServer
from mirror.errors import AuthError

MakeClient = Callable[..., NbiaArchive]  # the make_client fixture (tests/archive/conftest.py)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_url_is_derived_from_the_api_root() -> None:
    assert token_url_for("https://nbia.example.org/nbia-api/services/v4/") == (
        "https://nbia.example.org/nbia-api/oauth/token"
    )
    assert token_url_for("http://127.0.0.1:8/x/nbia-api/v4/") == (
        "http://127.0.0.1:8/x/nbia-api/oauth/token"
    )


def test_token_endpoint_shape(archive_server: SimServer) -> None:
    for path in ("/nbia-api/oauth/token", "/nbia-api/services/oauth/token"):
        resp = httpx.post(
            archive_server.root_url + path,
            data={
                "username": "nbia_guest",
                "password": "",
                "grant_type": "password",
                "client_id": "x",
            },
        )
        body = resp.json()
        assert resp.status_code == 200
        assert {"access_token", "expires_in", "refresh_token", "token_type"} <= set(body)
        assert body["expires_in"] == 3600
    wrong = httpx.post(archive_server.root_url + "/nbia-api/oauth/token", data={"grant_type": "x"})
    assert wrong.status_code == 400 and "Wrong grant_type" in wrong.text


def test_stale_token_is_401_on_downloads_and_empty_on_metadata(
    archive_server: SimServer, sim: SimArchive
) -> None:
    clock = FakeClock()
    sim.clock = clock
    sim.faults = FaultConfig(token_ttl=100)
    token = httpx.post(
        archive_server.root_url + "/nbia-api/oauth/token",
        data={"username": "nbia_guest", "password": "", "grant_type": "password"},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    params = {"SeriesInstanceUID": sim.series_uids()[0]}
    url = archive_server.base_url
    assert httpx.get(url + "getImage", params=params, headers=headers).status_code == 200
    clock.now += 101
    assert httpx.get(url + "getImage", params=params, headers=headers).status_code == 401
    listing = httpx.get(url + "getSeries", headers=headers)
    assert listing.status_code == 200 and listing.content == b""
    assert (
        httpx.get(
            url + "getImage", params=params, headers={"Authorization": "Bearer undefined"}
        ).status_code
        == 200
    )


def test_client_refreshes_before_expiry_and_never_sends_a_stale_token(
    make_client: MakeClient, archive_server: SimServer, sim: SimArchive
) -> None:
    server_clock, client_clock = FakeClock(), FakeClock()
    sim.clock = server_clock
    sim.users["alice"] = "secret"
    sim.faults = FaultConfig(token_ttl=300)
    client = make_client(archive_server.base_url, username="alice", password="secret")
    assert client._tokens is not None
    client._tokens.clock = client_clock
    uid = sim.series_uids()[0]
    for _ in range(6):  # 6 x 100 s: crosses two token lifetimes
        with client.stream_series(uid) as chunks:
            b"".join(chunks)
        server_clock.now += 100
        client_clock.now += 100
    grants = [
        r.params.get("grant_type") for r in archive_server.requests if r.path.endswith("/token")
    ]
    assert grants[0] == "password" and "refresh_token" in grants
    downloads = [r for r in archive_server.requests if "getImage" in r.path]
    assert all(r.authorization and r.authorization.startswith("Bearer ") for r in downloads)


def test_bad_credentials_raise_auth_error(
    make_client: MakeClient, archive_server: SimServer
) -> None:
    client = make_client(archive_server.base_url, username="mallory", password="guess")
    with pytest.raises(AuthError):
        client.collections()


def test_expired_refresh_token_falls_back_to_password(
    archive_server: SimServer, sim: SimArchive
) -> None:
    sim.users["bob"] = "pw"
    clock = FakeClock()
    manager = TokenManager(token_url_for(archive_server.base_url), "bob", "pw", clock=clock)
    with httpx.Client() as http:
        first = manager.headers(http)
        manager._refresh = "forged"
        clock.now += 10_000
        second = manager.headers(http)
    assert first != second and second["Authorization"].startswith("Bearer ")


def test_401_from_archive_is_auth_error(
    make_client: MakeClient, archive_server: SimServer, sim: SimArchive
) -> None:
    client = make_client(archive_server.base_url, username="nbia_guest")
    sim.clock = FakeClock()
    sim.faults = FaultConfig(token_ttl=100)
    assert client._tokens is not None
    client._tokens.margin = 0
    client._tokens.clock = FakeClock()
    uid = sim.series_uids()[0]
    with client.stream_series(uid) as chunks:
        b"".join(chunks)
    sim.clock.now += 500  # type: ignore[attr-defined]  # server-side revocation/skew
    with pytest.raises(AuthError), client.stream_series(uid):
        pass
