"""The Store port: the only way the engine touches the destination.

Keys are ``/``-separated paths relative to the store's root (never absolute, never ``..``).
Every write is atomic per object: a reader sees the old object, the new object, or no
object, never a prefix of one. Adapters (local files, memory, S3) declare what else they
guarantee in :class:`StoreCapabilities`, and all pass one conformance suite.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class StoreCapabilities:
    atomic_rename: bool  # a prefix ("directory") can be renamed atomically (local disk)
    object_metadata: bool  # objects carry user metadata, e.g. the verified MD5 (S3)
    conditional_put: bool  # put_if / delete_if are atomic across hosts (S3 If-None-Match/If-Match)
    local: bool  # keys map to paths on this machine's file system


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    md5: str | None  # verified MD5 recorded at put time, when the store keeps metadata


@runtime_checkable
class Store(Protocol):
    """A destination root: ``file:///srv/tcia``, ``s3://bucket/prefix`` or ``memory://name``.

    Implementations are picklable (they travel into Dask tasks) and open clients lazily.
    Missing keys raise :class:`~mirror.errors.ObjectNotFound`; other I/O failures raise
    :class:`~mirror.errors.StoreError`.
    """

    @property
    def url(self) -> str: ...

    @property
    def capabilities(self) -> StoreCapabilities: ...

    def put_file(self, local_path: str, key: str, *, md5: str | None = None) -> None:
        """Upload/copy a finished local file to ``key`` atomically (one PUT or a rename)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically (sidecars, pointers, summaries)."""
        ...

    def put_if(self, key: str, data: bytes, *, token: str | None) -> str:
        """Compare-and-swap one small object; returns its new token.

        ``token=None`` creates ``key`` only if absent (``If-None-Match: *``); otherwise the
        object is replaced only while its current token is ``token`` (``If-Match``). Losing
        raises :class:`~mirror.errors.PreconditionFailed`. The destination lease is built on
        this and on :meth:`get_with_token` / :meth:`delete_if`, nothing else.
        """
        ...

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        """A small object's bytes and the token :meth:`put_if` compares against."""
        ...

    def delete_if(self, key: str, token: str) -> None:
        """Delete ``key`` only while its token is ``token`` (else PreconditionFailed);
        a missing object is not an error."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def open_read(self, key: str) -> BinaryIO: ...

    def info(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """All object keys under ``prefix``, recursively, relative to the root."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def move_prefix(self, src: str, dst: str) -> None:
        """Move every object under ``src`` to ``dst`` (the attic); atomic where renames are."""
        ...

    def staging(
        self, run_id: str, name: str, *, scratch_dir: str | None = None
    ) -> AbstractContextManager[str]:
        """A fresh, empty local folder to stage one series in, removed on exit.

        Local stores put it under the root (``.staging/<run_id>/<name>``) so that
        :meth:`publish_series` can rename it; object stores use a scratch folder.
        """
        ...

    def publish_series(
        self,
        staged: str,
        prefix: str,
        files: Sequence[tuple[str, str | None]],
        marker: tuple[str, bytes],
        *,
        attic: str,
    ) -> None:
        """Make the staged folder visible at ``prefix``, whole, with ``marker`` last.

        ``files`` are ``(name, verified MD5 or None)`` in ``staged``; ``marker`` is
        ``(name, bytes)`` of the commit marker (the sidecar), written last: a reader that
        sees it sees every file. A previous version at ``prefix`` is moved to ``attic``
        (``attic~2`` … when taken) where renames are atomic; object stores overwrite in
        place and delete the previous version's stale objects.
        """
        ...

    def filesystem(self) -> tuple[Any, str]:
        """The underlying ``(fsspec filesystem, root path)`` for DuckDB and readers."""
        ...

    def zarr_store(self, prefix: str, *, read_only: bool = False) -> Any:
        """A zarr v3 store rooted at ``prefix`` (LocalStore, MemoryStore or FsspecStore)."""
        ...
