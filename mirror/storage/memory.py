"""``memory://name``: an in-process store for tests and dry runs.

Backed by fsspec's ``MemoryFileSystem``, whose contents live in one dict per process, so
every ``MemoryStore("x")`` in a process (including unpickled copies in Dask threads)
sees the same objects. Nothing survives the process; use it with threads only.
"""

from __future__ import annotations

import threading
from typing import Any

from mirror.errors import ObjectNotFound
from mirror.storage.keys import check_prefix, join
from mirror.storage.local import check_token, content_token
from mirror.storage.objects import ObjectStore
from mirror.storage.oserrors import store_errors
from mirror.storage.port import StoreCapabilities

# One process-wide guard, like the process-wide MemoryFileSystem it protects.
_CAS_GUARD = threading.Lock()


class MemoryStore(ObjectStore):
    scheme = "memory"

    def __init__(self, name: str = "mirror") -> None:
        super().__init__(name)

    def __repr__(self) -> str:
        return f"MemoryStore({self._root!r})"

    @property
    def capabilities(self) -> StoreCapabilities:
        return StoreCapabilities(
            atomic_rename=False, object_metadata=False, conditional_put=True, local=False
        )

    @property
    def fs(self) -> Any:
        import fsspec

        return fsspec.filesystem("memory")

    def _fs_root(self) -> str:
        return "/" + self._root

    def put_file(self, local_path: str, key: str, *, md5: str | None = None) -> None:
        # MemoryFileSystem.put_file streams through open("wb"), which would publish a
        # partial object on error; one pipe_file of the whole file is a single swap.
        with store_errors(f"read {local_path}", missing_ok=True), open(local_path, "rb") as f:
            data = f.read()
        self.put_bytes(key, data)

    def put_if(self, key: str, data: bytes, *, token: str | None) -> str:
        with _CAS_GUARD:
            check_token(self.url, key, self._token_or_none(key), token)
            self.put_bytes(key, data)
        return content_token(data)

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        data = self.get_bytes(key)
        return data, content_token(data)

    def delete_if(self, key: str, token: str) -> None:
        with _CAS_GUARD:
            current = self._token_or_none(key)
            if current is not None:
                check_token(self.url, key, current, token)
                self.delete(key)

    def _token_or_none(self, key: str) -> str | None:
        try:
            return content_token(self.get_bytes(key))
        except ObjectNotFound:
            return None

    def zarr_store(self, prefix: str, *, read_only: bool = False) -> Any:
        import zarr.storage

        url = "memory://" + join(self._fs_root(), check_prefix(prefix)).lstrip("/")
        return zarr.storage.FsspecStore.from_url(url, read_only=read_only)
