"""Immutable index snapshots and the ``_index/LATEST`` pointer.

A build writes every file under ``_index/snapshots/<snapshot_id>/`` and only then replaces
``_index/LATEST`` (one small atomic object write). Readers resolve the pointer once and
read only the files it lists, so they never see a half-built snapshot. Old snapshots are
deleted only after the pointer has moved, keeping the newest ``keep``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mirror.errors import IntegrityError, ObjectNotFound, StoreError, UsageError
from mirror.storage.port import Store

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

INDEX_PREFIX = "_index"
POINTER_KEY = f"{INDEX_PREFIX}/LATEST"
SNAPSHOTS_PREFIX = f"{INDEX_PREFIX}/snapshots"


class NoIndex(UsageError):
    """The destination has no published index yet."""


@dataclass(frozen=True)
class Pointer:
    """Contents of ``_index/LATEST``: which snapshot is current and which files it holds."""

    snapshot_id: str
    created_at: str
    schema_version: int
    tables: Mapping[str, tuple[str, ...]]  # table -> file keys relative to the store root
    rows: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {"snapshot_id": self.snapshot_id, "created_at": self.created_at,
                "schema_version": self.schema_version,
                "tables": {t: {"files": list(f), "rows": self.rows.get(t, 0)}
                           for t, f in self.tables.items()}}
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Pointer:
        try:
            body = json.loads(raw)
            tables = {t: tuple(v["files"]) for t, v in body["tables"].items()}
            rows = {t: int(v.get("rows", 0)) for t, v in body["tables"].items()}
            return cls(str(body["snapshot_id"]), str(body["created_at"]),
                       int(body["schema_version"]), tables, rows)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"unreadable {POINTER_KEY}: {exc}") from exc


def new_snapshot_id(now: datetime | None = None) -> str:
    """Sortable by creation time, unique: ``20261122T051500123456Z-3fa2c1``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def snapshot_prefix(snapshot_id: str) -> str:
    return f"{SNAPSHOTS_PREFIX}/{snapshot_id}"


def read_pointer(store: Store) -> Pointer | None:
    """The current pointer, or ``None`` when nothing was ever published."""
    try:
        return Pointer.from_json(store.get_bytes(POINTER_KEY))
    except ObjectNotFound:
        return None


def require_pointer(store: Store, snapshot_id: str | None = None) -> Pointer:
    """The pointer to read (``snapshot_id`` picks an older kept snapshot by its manifest)."""
    if snapshot_id:
        try:
            raw = store.get_bytes(f"{snapshot_prefix(snapshot_id)}/pointer.json")
        except ObjectNotFound as exc:
            raise NoIndex(f"no index snapshot {snapshot_id!r} in {store.url}") from exc
        return Pointer.from_json(raw)
    pointer = read_pointer(store)
    if pointer is None:
        raise NoIndex(f"no index in {store.url} yet: run `mirror index build --dest ...` first")
    return pointer


def write_table(store: Store, key: str, table: pa.Table) -> None:
    """Write one Parquet file through a local temp file (the store's put is atomic)."""
    import pyarrow.parquet as pq

    fd, tmp = tempfile.mkstemp(suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=128 * 1024)
        store.put_file(tmp, key)
    finally:
        os.unlink(tmp)


def copy_object(store: Store, src: str, dst: str) -> None:
    """Copy a finished object: an atomic local copy, or a server-side copy (S3 CopyObject)."""
    fs, root = store.filesystem()
    base = root.rstrip("/")
    if store.capabilities.local:
        store.put_file(f"{base}/{src}", dst)
        return
    try:
        fs.copy(f"{base}/{src}", f"{base}/{dst}")
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"{store.url}/{src}: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"copy {store.url}/{src} -> {dst}: {exc}") from exc


def publish(store: Store, pointer: Pointer) -> None:
    """Make ``pointer`` current: its own copy first, then the atomic ``LATEST`` swap."""
    body = pointer.to_json()
    store.put_bytes(f"{snapshot_prefix(pointer.snapshot_id)}/pointer.json", body)
    store.put_bytes(POINTER_KEY, body)
    log.info("published index snapshot %s", pointer.snapshot_id)


def collect_garbage(store: Store, keep: int, current: str) -> list[str]:
    """Delete old snapshots after the pointer moved; return the deleted ids.

    Keeps the newest ``keep`` published snapshots (those with a ``pointer.json``) and always
    ``current``; unpublished leftovers of crashed builds older than ``current`` go too.
    Newer unpublished ones may belong to a build in flight and are left alone.
    """
    if keep < 1:
        raise UsageError("keep must be at least 1")
    published: set[str] = set()
    seen: set[str] = set()
    for key in store.list(SNAPSHOTS_PREFIX + "/"):
        snapshot_id, _, rest = key[len(SNAPSHOTS_PREFIX) + 1 :].partition("/")
        seen.add(snapshot_id)
        if rest == "pointer.json":
            published.add(snapshot_id)
    kept = set(sorted(published)[-keep:]) | {current}
    doomed = sorted(i for i in seen if i not in kept and (i in published or i < current))
    for snapshot_id in doomed:
        store.delete_prefix(snapshot_prefix(snapshot_id) + "/")
        log.info("deleted old index snapshot %s", snapshot_id)
    return doomed
