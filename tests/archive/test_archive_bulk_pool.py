"""The series-body pool (urllib3) follows the proxy environment as httpx does."""

from __future__ import annotations

import pytest
import urllib3

from mirror.archive.http import bulk_pool

TIMEOUT = urllib3.Timeout(connect=1.0, read=2.0)


def test_direct_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    pool = bulk_pool("https://services.cancerimagingarchive.net/nbia-api/services/", 16, TIMEOUT)
    assert type(pool) is urllib3.PoolManager
    assert pool.connection_pool_kw["maxsize"] == 16
    assert pool.connection_pool_kw["timeout"] is TIMEOUT


def test_proxy_from_environment_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    via = bulk_pool("https://services.cancerimagingarchive.net/nbia-api/", 4, TIMEOUT)
    assert isinstance(via, urllib3.ProxyManager)
    assert via.proxy is not None and via.proxy.host == "proxy.example"
    direct = bulk_pool("https://internal.example/nbia-api/", 4, TIMEOUT)
    assert not isinstance(direct, urllib3.ProxyManager)


def test_the_sync_source_keeps_a_connection_for_every_download_of_a_worker() -> None:
    # A pool smaller than the worker's downloads discards a connection after each extra
    # download ("Connection pool is full"): the next series pays a new TCP + TLS handshake.
    from mirror.archive.sources import open_source
    from mirror.config import ClusterConfig

    threads_only = ClusterConfig(workers=0, threads=32, http_slots=32)
    capped = ClusterConfig(workers=2, threads=32, http_slots=8)
    for cluster, expected in ((threads_only, 32), (capped, 8)):
        source = open_source("nbia", "http://127.0.0.1:9/nbia-api/services/",
                             connections=cluster.downloads_per_worker)
        pool = source._http.bulk  # type: ignore[attr-defined]
        assert pool.connection_pool_kw["maxsize"] == expected


def test_the_library_sync_opens_its_default_nbia_source_with_the_same_pool(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch
) -> None:
    from mirror.cli import compose
    from mirror.config import ClusterConfig, SyncConfig

    seen = {}
    monkeypatch.setattr(compose.service, "sync", lambda config, **kw: seen.update(kw))
    cluster = ClusterConfig(workers=0, threads=32, http_slots=32)
    compose.sync(SyncConfig(dest=str(tmp_path / "m"), archive_url="http://127.0.0.1:9/nbia-api/services/",
                            cluster=cluster))  # fmt: skip
    pool = seen["archive"]._http.bulk
    assert pool.connection_pool_kw["maxsize"] == 32
