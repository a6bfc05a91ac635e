"""``file://`` destination: plain paths, atomic renames, fsync before publishing.

Objects carry no metadata here (``ObjectInfo.md5`` is ``None``): a local mirror proves its
files by re-hashing them (``verify --deep``) against the sidecar, which is cheap next to
keeping a second copy of every digest in extended attributes that many file systems drop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, BinaryIO, TypeVar

from mirror.errors import ObjectNotFound, PreconditionFailed, StoreError, UsageError
from mirror.storage import publish
from mirror.storage.keys import PARTIAL_SUFFIX, check_key, check_prefix
from mirror.storage.oserrors import store_errors
from mirror.storage.port import ObjectInfo, StoreCapabilities
from mirror.storage.publish import ensure_parent, fsync_dir

_CHUNK = 1 << 20
FILE_MODE = 0o644
T = TypeVar("T")


class LocalStore:
    """A folder on this machine. Keys map to ``<root>/<key>``."""

    def __init__(self, root: str) -> None:
        self._root = os.path.abspath(os.path.expanduser(root))

    def __repr__(self) -> str:
        return f"LocalStore({self._root!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other._root == self._root

    def __hash__(self) -> int:
        return hash(("local", self._root))

    @property
    def url(self) -> str:
        return f"file://{self._root}"

    @property
    def root(self) -> str:
        return self._root

    @property
    def capabilities(self) -> StoreCapabilities:
        return StoreCapabilities(
            atomic_rename=True, object_metadata=False, conditional_put=True, local=True
        )

    def path(self, key: str) -> str:
        """Absolute local path of ``key`` (validated)."""
        return os.path.join(self._root, *check_key(key).split("/"))

    # --- writes -------------------------------------------------------------------------

    def put_file(self, local_path: str, key: str, *, md5: str | None = None) -> None:
        with store_errors(f"read {local_path}", missing_ok=True), open(local_path, "rb") as src:
            self._write_atomic(key, lambda out: shutil.copyfileobj(src, out, _CHUNK))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write_atomic(key, lambda out: out.write(data))

    def _write_atomic(self, key: str, fill: Any) -> None:
        target = self.path(key)
        directory, name = os.path.split(target)
        with store_errors(f"write {self.url}/{key}", missing_ok=True):
            fd, tmp = ensure_parent(
                directory,
                lambda: tempfile.mkstemp(prefix=f".{name}.", suffix=PARTIAL_SUFFIX, dir=directory),
            )
            try:
                # mkstemp makes 0600 files; mirrored data is meant to be world-readable.
                os.fchmod(fd, FILE_MODE)
                with os.fdopen(fd, "wb") as out:
                    fill(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            fsync_dir(directory)

    # --- compare-and-swap (the destination lease) -----------------------------------------

    def put_if(self, key: str, data: bytes, *, token: str | None) -> str:
        with self._cas_guard(f"put {self.url}/{key}"):
            check_token(self.url, key, self._token_or_none(key), token)
            self._write_atomic(key, lambda out: out.write(data))
        return content_token(data)

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        # Writes are atomic renames: this read sees one whole version, no guard needed.
        data = self.get_bytes(key)
        return data, content_token(data)

    def delete_if(self, key: str, token: str) -> None:
        with self._cas_guard(f"delete {self.url}/{key}"):
            current = self._token_or_none(key)
            if current is None:
                return
            check_token(self.url, key, current, token)
            self.delete(key)

    def _token_or_none(self, key: str) -> str | None:
        try:
            return content_token(self.get_bytes(key))
        except ObjectNotFound:
            return None

    @contextmanager
    def _cas_guard(self, what: str) -> Iterator[None]:
        """flock on the root folder: serialises compare-and-swap between processes on
        this host (and NFSv4 clients, where flock maps to byte-range locks)."""
        with store_errors(what, missing_ok=True):
            os.makedirs(self._root, exist_ok=True)
            fd = os.open(self._root, os.O_RDONLY)
        try:
            with store_errors(what, missing_ok=True):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    # --- reads --------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def open_read(self, key: str) -> BinaryIO:
        target = self.path(key)
        with store_errors(f"read {self.url}/{key}"):
            if os.path.isdir(target):
                raise ObjectNotFound(f"read {self.url}/{key}: is a folder, not an object")
            return open(target, "rb")

    def info(self, key: str) -> ObjectInfo:
        target = self.path(key)
        with store_errors(f"stat {self.url}/{key}"):
            st = os.stat(target)
        if not os.path.isfile(target):
            raise ObjectNotFound(f"stat {self.url}/{key}: not a file")
        return ObjectInfo(key=key, size=st.st_size, md5=None)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.path(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        base = check_prefix(prefix)
        top = os.path.join(self._root, *base.split("/")) if base else self._root
        if not os.path.isdir(top):
            return
        for dirpath, dirnames, filenames in os.walk(top, onerror=_raise_store_error):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self._root)
            for name in sorted(filenames):
                if name.endswith(PARTIAL_SUFFIX) or not os.path.isfile(os.path.join(dirpath, name)):
                    continue
                yield name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"

    # --- deletes and moves ----------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove one object; a missing object is not an error (deletes are idempotent)."""
        target = self.path(key)
        with store_errors(f"delete {self.url}/{key}"):
            try:
                os.unlink(target)
            except FileNotFoundError:
                return
        self._prune_empty(os.path.dirname(target))

    def delete_prefix(self, prefix: str) -> None:
        base = check_prefix(prefix)
        if not base:
            raise UsageError("refusing to delete the whole store")
        target = os.path.join(self._root, *base.split("/"))
        with store_errors(f"delete {self.url}/{base}/"):
            if os.path.isdir(target):
                shutil.rmtree(target)
        self._prune_empty(os.path.dirname(target))

    def move_prefix(self, src: str, dst: str) -> None:
        """Rename the folder ``src`` to ``dst`` in one atomic ``rename``."""
        src_dir, dst_dir = self._folder(src), self._folder(dst)
        if not os.path.isdir(src_dir):
            raise ObjectNotFound(f"move {self.url}/{src}/: no such prefix")
        if os.path.lexists(dst_dir):
            raise StoreError(f"move {self.url}/{src}/ -> {dst}/: destination exists")
        with store_errors(f"move {self.url}/{src}/ -> {dst}/", missing_ok=True):
            ensure_parent(os.path.dirname(dst_dir), lambda: os.rename(src_dir, dst_dir))
            fsync_dir(os.path.dirname(dst_dir))
        self._prune_empty(os.path.dirname(src_dir))

    def _folder(self, prefix: str) -> str:
        base = check_prefix(prefix)
        if not base:
            raise UsageError("the store root cannot be moved")
        return os.path.join(self._root, *base.split("/"))

    def _prune_empty(self, directory: str) -> None:
        """Remove now-empty parent folders up to (not including) the root."""
        while directory.startswith(self._root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    # --- staged series -------------------------------------------------------------------

    def staging(
        self, run_id: str, name: str, *, scratch_dir: str | None = None
    ) -> AbstractContextManager[str]:
        """``<root>/.staging/<run_id>/<name>/`` (``scratch_dir`` is not needed here)."""
        return publish.local_staging(self._root, run_id, name)

    def publish_series(
        self, staged: str, prefix: str, files: publish.Files, marker: tuple[str, bytes],
        *, attic: str,
    ) -> None:  # fmt: skip
        """Marker into ``staged``, previous version to ``attic`` (``~n`` if taken), one rename."""
        del files  # the staged folder is published whole
        publish.publish_local(
            self, self.path, staged, check_prefix(prefix), marker=marker, attic=attic
        )

    # --- adapters for readers -----------------------------------------------------------

    def filesystem(self) -> tuple[Any, str]:
        import fsspec

        return fsspec.filesystem("file"), self._root

    def zarr_store(self, prefix: str, *, read_only: bool = False) -> Any:
        import zarr.storage

        base = check_prefix(prefix)
        path = os.path.join(self._root, *base.split("/")) if base else self._root
        return zarr.storage.LocalStore(path, read_only=read_only)


def content_token(data: bytes) -> str:
    """The compare-and-swap token of a store without ETags: the content's MD5."""
    return hashlib.md5(data).hexdigest()


def check_token(url: str, key: str, current: str | None, expected: str | None) -> None:
    if current == expected:
        return
    if expected is None:
        raise PreconditionFailed(f"put {url}/{key}: the object already exists")
    state = "vanished" if current is None else "changed since it was read"
    raise PreconditionFailed(f"put {url}/{key}: the object {state}")


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _raise_store_error(exc: OSError) -> None:
    raise StoreError(f"list: {exc}") from exc
