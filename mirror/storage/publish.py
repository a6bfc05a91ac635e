"""Atomic publication of a staged series folder, behind the Store port.

A series is staged as plain files in a folder (``Store.staging``) and made visible whole by
``Store.publish_series``: the marker object (the sidecar) is the commit point.

- Local stores stage under ``<root>/.staging/<run_id>/<name>/`` (same file system as the
  final folder), write the marker into the staged folder, fsync, move any previous version
  to the attic and publish with one ``rename``: readers see the whole series or nothing.
- Object stores stage in a scratch folder, put each file once (with its MD5 in metadata),
  delete the previous version's stale objects and put the marker last. If a put fails, the
  objects this publish added are removed again, best effort.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, TypeVar

from mirror.errors import StoreError, UsageError
from mirror.storage.keys import check_key
from mirror.storage.oserrors import store_errors

if TYPE_CHECKING:
    from mirror.storage.port import Store


class _Objects(Protocol):
    """What publishing to an object store needs of it."""

    def list(self, prefix: str = "") -> Iterator[str]: ...
    def put_file(self, local_path: str, key: str, *, md5: str | None = None) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def delete(self, key: str) -> None: ...

log = logging.getLogger(__name__)

PUT_CONCURRENCY = 8
STAGING = ".staging"
T = TypeVar("T")
Files = Sequence[tuple[str, str | None]]  # (file name in the staged folder, verified MD5)


def check_component(value: str, what: str) -> str:
    if not value or "/" in value or value.startswith("."):
        raise UsageError(f"{what} {value!r} must be one plain path component")
    return check_key(value)


def free_slot(base: str, taken: Callable[[str], bool]) -> str:
    """``base``, or ``base~2``, ``base~3`` … when taken (an attic slot this run already used)."""
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}~{n}"
        if not taken(candidate):
            return candidate
    raise StoreError(f"no free slot for {base}")


def ensure_parent(directory: str, create: Callable[[], T]) -> T:
    """``makedirs(directory)`` then ``create()``, retried if a concurrent task pruned an
    empty parent in between (deletes and moves remove emptied folders)."""
    for _ in range(9):
        try:
            os.makedirs(directory, exist_ok=True)
        except FileExistsError:
            # exist_ok does not cover a folder that existed at makedirs' mkdir and was
            # pruned before its isdir check: it is gone, so make it again.
            continue
        try:
            return create()
        except FileNotFoundError:
            continue
    os.makedirs(directory, exist_ok=True)
    return create()


def fsync_dir(path: str) -> None:
    """Persist a directory entry change (rename, create) on POSIX file systems."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- staging -----------------------------------------------------------------------------


@contextlib.contextmanager
def local_staging(root: str, run_id: str, name: str) -> Iterator[str]:
    """``<root>/.staging/<run_id>/<name>/``: same file system as the final folder."""
    run_dir = os.path.join(root, STAGING, check_component(run_id, "run id"))
    staged = os.path.join(run_dir, check_component(name, "staging name"))
    with store_errors(f"staging {staged}", missing_ok=True):
        gc_staging(root, name)
        _makedirs_racing(staged)
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        for empty in (run_dir, os.path.dirname(run_dir)):
            with contextlib.suppress(OSError):
                os.rmdir(empty)


@contextlib.contextmanager
def scratch_staging(scratch_dir: str | None) -> Iterator[str]:
    """A private temporary folder for stores that cannot rename (removed afterwards)."""
    with store_errors(
        f"scratch folder in {scratch_dir or tempfile.gettempdir()}", missing_ok=True
    ):
        holder = tempfile.TemporaryDirectory(prefix="mirror-series-", dir=scratch_dir)
    with holder as path:
        yield path


def _makedirs_racing(path: str) -> None:
    """``makedirs`` that tolerates a sibling task removing an empty parent meanwhile."""
    for _ in range(9):
        try:
            os.makedirs(path)
            return
        except FileNotFoundError:
            continue
    os.makedirs(path)


def gc_staging(root: str, name: str) -> None:
    """Drop leftovers of this series from earlier crashed runs (harmless but wasteful)."""
    top = os.path.join(root, STAGING)
    with contextlib.suppress(FileNotFoundError):
        for run_dir in os.scandir(top):
            leftover = os.path.join(run_dir.path, name)
            if os.path.isdir(leftover):
                log.info("removing stale staging folder %s", leftover)
                shutil.rmtree(leftover, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(run_dir.path)


# --- publishing --------------------------------------------------------------------------


def publish_local(
    store: Store,
    path_of: Callable[[str], str],
    staged: str,
    prefix: str,
    *,
    marker: tuple[str, bytes],
    attic: str,
) -> None:
    """Marker into the staged folder, fsync, old version to the attic, one rename (the
    folder is published whole: every file in it was staged and verified)."""
    final = path_of(prefix)
    with store_errors(f"commit {prefix}", missing_ok=True):
        _fsync_files(staged)
        _write_synced(os.path.join(staged, check_component(marker[0], "marker")), marker[1])
        fsync_dir(staged)
        if os.path.lexists(final):
            slot = free_slot(attic, lambda key: os.path.lexists(path_of(key)))
            store.move_prefix(prefix, slot)
        ensure_parent(os.path.dirname(final), lambda: os.rename(staged, final))
        fsync_dir(os.path.dirname(final))


def _fsync_files(directory: str) -> None:
    """Make every staged file durable before the rename publishes them (one pass, after
    all writes, lets the kernel write them back together)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                fd = os.open(entry.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def _write_synced(target: str, data: bytes) -> None:
    with open(target, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def publish_objects(
    store: _Objects, staged: str, prefix: str, files: Files, marker: tuple[str, bytes]
) -> None:
    """Put each verified file once (with its MD5), drop stale objects, marker last."""
    before = {key[len(prefix) + 1 :] for key in store.list(prefix)}
    try:
        _put_all(store, staged, prefix, files)
    except BaseException:
        _remove_quietly(store, prefix, {n for n, _ in files} - before)
        raise
    keep = {marker[0]} | {name for name, _ in files}
    for name in sorted(before - keep):
        store.delete(f"{prefix}/{name}")
    store.put_bytes(f"{prefix}/{marker[0]}", marker[1])


def _put_all(store: _Objects, directory: str, prefix: str, files: Files) -> None:
    def put(item: tuple[str, str | None]) -> None:
        name, md5 = item
        store.put_file(os.path.join(directory, name), f"{prefix}/{name}", md5=md5)

    # Object stores answer each PUT in tens of ms: overlap them. Leaving the block waits
    # for every started PUT, so the cleanup after a failure sees them all.
    with ThreadPoolExecutor(max(1, min(PUT_CONCURRENCY, len(files)))) as pool:
        list(pool.map(put, files))


def _remove_quietly(store: _Objects, prefix: str, names: set[str]) -> None:
    for name in sorted(names):
        try:
            store.delete(f"{prefix}/{name}")
        except StoreError as exc:
            log.warning("could not remove %s/%s after a failed commit: %s", prefix, name, exc)
