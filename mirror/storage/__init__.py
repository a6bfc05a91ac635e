"""Destinations: the Store port and its adapters (``file://``, ``memory://``, ``s3://``).

Adapters are imported lazily by :func:`open_store`; the engine imports only the port.
"""

from __future__ import annotations

from typing import Any

from mirror.errors import UsageError
from mirror.storage.port import ObjectInfo, Store, StoreCapabilities

__all__ = ["ObjectInfo", "Store", "StoreCapabilities", "open_store"]


def open_store(url: str, **options: Any) -> Store:
    """Open the destination named by ``url``.

    ``file:///srv/tcia`` or a plain path → LocalStore; ``memory://name`` → MemoryStore;
    ``s3://bucket/prefix`` → S3Store (``endpoint_url=``, ``storage_options=`` accepted).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "file", url
    if scheme == "file":
        from mirror.storage.local import LocalStore

        _no_options(url, options)
        return LocalStore(rest)
    if scheme == "memory":
        from mirror.storage.memory import MemoryStore

        _no_options(url, options)
        return MemoryStore(rest.strip("/") or "mirror")
    if scheme == "s3":
        from mirror.storage.s3 import S3Store

        return S3Store(rest, **options)
    raise UsageError(f"unsupported destination {url!r}: use a path, file://, s3:// or memory://")


def _no_options(url: str, options: dict[str, Any]) -> None:
    if options:
        raise UsageError(f"{url}: options {sorted(options)} only apply to s3:// destinations")
