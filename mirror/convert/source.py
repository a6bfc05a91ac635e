"""Where a series' instance files are read from: a local folder or a mirror Store prefix.

Both are small picklable values so they travel into Dask tasks; files are opened lazily.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from mirror.errors import ObjectNotFound, UsageError
from mirror.storage.port import Store


class InstanceSource(Protocol):
    def names(self) -> list[str]:
        """Instance file names, sorted."""
        ...

    def open(self, name: str) -> AbstractContextManager[BinaryIO]:
        """Context manager yielding a readable binary file."""
        ...


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise UsageError(f"unsafe instance name: {name[:80]!r}")
    return name


@dataclass(frozen=True, slots=True)
class DirSource:
    """Files directly in ``root``: ``only`` when given, else every ``*.dcm`` file (or every
    file, when none end in .dcm)."""

    root: str
    only: tuple[str, ...] = ()

    def names(self) -> list[str]:
        if self.only:
            return sorted(self.only)
        entries = sorted(
            e.name
            for e in os.scandir(self.root)
            if e.is_file() and not e.name.startswith(("_", "."))
        )
        dcm = [n for n in entries if n.lower().endswith(".dcm")]
        return dcm or entries

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        path = os.path.join(self.root, _check_name(name))
        try:
            with open(path, "rb") as fp:
                yield fp
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"missing instance {path}") from exc


@dataclass(frozen=True, slots=True)
class StoreSource:
    """Instances listed by a committed sidecar, read through the destination Store."""

    store: Store
    prefix: str
    instance_names: tuple[str, ...]

    def names(self) -> list[str]:
        return sorted(self.instance_names)

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        with self.store.open_read(f"{self.prefix}/{_check_name(name)}") as fp:
            yield fp
