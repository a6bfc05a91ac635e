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
