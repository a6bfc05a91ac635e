"""Shared body of the object-store adapters (``memory://`` and ``s3://``) over fsspec.

Writes never go through ``fs.open(..., "wb")``: fsspec's ``__exit__`` commits whatever was
buffered even when the block raised, which would publish a partial object. Every write is
one ``put_file`` / ``pipe_file`` call instead (a single PUT or one multipart upload).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, BinaryIO

from mirror.errors import StoreError, UsageError
from mirror.storage import publish
from mirror.storage.keys import check_key, check_prefix, join
from mirror.storage.oserrors import store_errors
from mirror.storage.port import ObjectInfo


class ObjectStore:
    """Keys map to ``<root>/<key>`` on an fsspec file system opened lazily by subclasses."""

    scheme = ""

    def __init__(self, root: str) -> None:
        self._root = root.strip("/")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self._root}"

    @property
    def fs(self) -> Any:
        raise NotImplementedError

    def _path(self, key: str) -> str:
        return join(self._fs_root(), check_key(key))

    def _fs_root(self) -> str:
        return self._root

    def _write_kwargs(self, md5: str | None) -> dict[str, Any]:
        return {}

    # --- writes -------------------------------------------------------------------------

    def put_file(self, local_path: str, key: str, *, md5: str | None = None) -> None:
        target = self._path(key)
        with store_errors(f"put {self.url}/{key}", missing_ok=True):
            self.fs.put_file(local_path, target, **self._write_kwargs(md5))

    def put_bytes(self, key: str, data: bytes) -> None:
        import hashlib

        target = self._path(key)
        with store_errors(f"put {self.url}/{key}", missing_ok=True):
            self.fs.pipe_file(target, data, **self._write_kwargs(hashlib.md5(data).hexdigest()))

    # --- reads --------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        target = self._path(key)
        with store_errors(f"read {self.url}/{key}"):
            data: bytes = self.fs.cat_file(target)
        return data

    def open_read(self, key: str) -> BinaryIO:
        target = self._path(key)
        with store_errors(f"read {self.url}/{key}"):
            if not self.fs.isfile(target):
                raise FileNotFoundError(target)
            handle: BinaryIO = self.fs.open(target, "rb")
        return handle

    def info(self, key: str) -> ObjectInfo:
        target = self._path(key)
        with store_errors(f"stat {self.url}/{key}"):
            meta = self.fs.info(target)
        if meta.get("type") != "file":
            raise store_missing(self.url, key)
        return ObjectInfo(key=key, size=int(meta["size"]), md5=None)

    def exists(self, key: str) -> bool:
        target = self._path(key)
        with store_errors(f"stat {self.url}/{key}"):
            return bool(self.fs.isfile(target))

    def list(self, prefix: str = "") -> Iterator[str]:
        base = check_prefix(prefix)
        root = self._fs_root()
        top = join(root, base)
        with store_errors(f"list {self.url}/{base}"):
            found = sorted(self.fs.find(top))  # [] for a missing prefix
        for path in found:
            key = path[len(root) + 1 :] if path.startswith(root + "/") else ""
            if key and (not base or key.startswith(base + "/")):
                yield key

    # --- deletes and moves ----------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove one object; a missing object is not an error (deletes are idempotent)."""
        target = self._path(key)
        with store_errors(f"delete {self.url}/{key}"):
            try:
                self.fs.rm_file(target)
            except FileNotFoundError:
                return

    def delete_prefix(self, prefix: str) -> None:
        base = check_prefix(prefix)
        if not base:
            raise UsageError("refusing to delete the whole store")
        for key in list(self.list(base)):
            self.delete(key)

    def move_prefix(self, src: str, dst: str) -> None:
        """Copy every object under ``src`` to ``dst``, then delete the sources.

        Not atomic on object stores: a crash midway leaves both copies, never neither.
        """
        src_base, dst_base = check_prefix(src), check_prefix(dst)
        if not src_base or not dst_base:
            raise UsageError("the store root cannot be moved")
        keys = list(self.list(src_base))
        if not keys:
            raise store_missing(self.url, src_base + "/")
        if next(iter(self.list(dst_base)), None) is not None:
            raise StoreError(f"move {self.url}/{src_base}/ -> {dst_base}/: destination exists")
        for key in keys:
            new_key = dst_base + key[len(src_base) :]
            with store_errors(f"copy {self.url}/{key} -> {new_key}"):
                self._copy(self._path(key), self._path(new_key))
        for key in keys:
            self.delete(key)

    def _copy(self, src_path: str, dst_path: str) -> None:
        self.fs.copy(src_path, dst_path)

    # --- staged series -------------------------------------------------------------------

    def staging(
        self, run_id: str, name: str, *, scratch_dir: str | None = None
    ) -> AbstractContextManager[str]:
        """A private scratch folder (in ``scratch_dir``): object stores cannot rename."""
        publish.check_component(run_id, "run id")
        return publish.scratch_staging(scratch_dir)

    def publish_series(
        self, staged: str, prefix: str, files: publish.Files, marker: tuple[str, bytes],
        *, attic: str,
    ) -> None:  # fmt: skip
        """Put each file once with its MD5, delete stale objects, marker last. The
        previous version is overwritten in place (``attic`` is unused: no atomic move)."""
        publish.publish_objects(self, staged, check_prefix(prefix), files, marker)

    def filesystem(self) -> tuple[Any, str]:
        return self.fs, self._fs_root()


def store_missing(url: str, key: str) -> Exception:
    from mirror.errors import ObjectNotFound

    return ObjectNotFound(f"{url}/{key}: not found")
