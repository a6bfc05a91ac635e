"""IDC's names, checked: collection ids, crdc UUIDs, object keys and ETags.

Everything a bucket listing returns is hostile until it passes here. IDC's layout is
``<crdc_series_uuid>/<crdc_instance_uuid>.dcm`` (idc-source.md §1), so anything else under
a series prefix (``..``, an absolute path, a nested folder, a foreign prefix) is refused
before a byte is written.
"""

from __future__ import annotations

import re
from typing import Literal

from mirror.errors import UnsafeArchiveEntry, UsageError

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID_RE = re.compile(_UUID)
_NAME_RE = re.compile(_UUID + r"\.dcm")
_MD5_ETAG_RE = re.compile(r"[0-9a-f]{32}")
_MULTIPART_ETAG_RE = re.compile(r"[0-9a-f]{32}-[1-9][0-9]{0,4}")

EtagKind = Literal["md5", "multipart", "other"]


def collection_id(name: str) -> str:
    """``TCGA-LUAD``, ``tcga_luad`` and ``TCGA LUAD`` all name IDC's ``tcga_luad``."""
    cid = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if not cid:
        raise UsageError(f"not a collection name: {name!r}")
    return cid


def check_series_uuid(value: str) -> str:
    """A ``crdc_series_uuid`` as IDC writes them (lowercase, hyphenated), or refused."""
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise UnsafeArchiveEntry(f"not a crdc_series_uuid: {value!r}")
    return value


def instance_name(series_uuid: str, key: str) -> str:
    """The file name of ``key`` inside its series prefix, refusing every other shape."""
    prefix = f"{check_series_uuid(series_uuid)}/"
    name = key[len(prefix) :] if key.startswith(prefix) else ""
    if not _NAME_RE.fullmatch(name):
        raise UnsafeArchiveEntry(f"refused object key under {prefix}: {key!r}")
    return name


def etag_kind(etag: str) -> EtagKind:
    """A single-PUT S3 ETag is the hex MD5; ``<hex>-<parts>`` (multipart) is not."""
    bare = etag_hex(etag)
    if _MD5_ETAG_RE.fullmatch(bare):
        return "md5"
    if _MULTIPART_ETAG_RE.fullmatch(bare):
        return "multipart"
    return "other"


def etag_hex(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"').lower()


__all__ = [
    "EtagKind",
    "check_series_uuid",
    "collection_id",
    "etag_hex",
    "etag_kind",
    "instance_name",
]
