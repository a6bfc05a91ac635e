"""Publish a verified series: staging + rename locally, per-object puts elsewhere.

The sidecar ``_series.json`` is the commit marker. On a local store it is written into the
staged folder before the one ``rename`` that publishes it, so readers see the whole
verified series with its sidecar or nothing. On object stores each instance is one atomic
PUT carrying its MD5, stale objects of the previous version are deleted, and the sidecar
is put last. A previous local version is always moved to ``_attic/<run_id>/<path>``
(never deleted here: the engine decides whether the attic is kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any

from mirror import __version__
from mirror.archive.port import SeriesRecord
from mirror.errors import StoreError, UsageError
from mirror.layout import SIDECAR_NAME, InstanceEntry, SeriesSidecar
from mirror.storage.keys import check_key
from mirror.storage.local import ensure_parent, fsync_dir
from mirror.storage.oserrors import store_errors
from mirror.storage.port import Store
from mirror.sync.verify_zip import LICENSE_NAME, ExtractedSeries

log = logging.getLogger(__name__)

PUT_CONCURRENCY = 8
STAGING = ".staging"
ATTIC = "_attic"
_BASE_FIELDS = frozenset(
    {
        "series_uid",
        "study_uid",
        "patient_id",
        "collection",
        "modality",
        "license_name",
        "license_uri",
    }
)


def local_root(store: Store) -> str | None:
    """The root folder when the store is a local file system with atomic renames."""
    caps = store.capabilities
    if not (caps.local and caps.atomic_rename):
        return None
    root: str = store.filesystem()[1]
    return root


def check_run_id(run_id: str) -> str:
    if "/" in run_id or run_id.startswith("."):
        raise UsageError(f"run id {run_id!r} must be one plain path component")
    return check_key(run_id)


# --- staging -----------------------------------------------------------------------------


@contextlib.contextmanager
def local_staging(root: str, run_id: str, series_uid: str) -> Iterator[str]:
    """``<root>/.staging/<run_id>/<uid>/``: same file system as the final folder."""
    run_dir = os.path.join(root, STAGING, check_run_id(run_id))
    staged = os.path.join(run_dir, series_uid)
    with store_errors(f"staging {staged}", missing_ok=True):
        gc_staging(root, series_uid)
        _makedirs_racing(staged)
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        for empty in (run_dir, os.path.dirname(run_dir)):
            with contextlib.suppress(OSError):
                os.rmdir(empty)


def _makedirs_racing(path: str) -> None:
    """``makedirs`` that tolerates a sibling task removing an empty parent meanwhile."""
    for _ in range(9):
        try:
            os.makedirs(path)
            return
        except FileNotFoundError:
            continue
    os.makedirs(path)


def gc_staging(root: str, series_uid: str) -> None:
    """Drop leftovers of this series from earlier crashed runs (harmless but wasteful)."""
    top = os.path.join(root, STAGING)
    with contextlib.suppress(FileNotFoundError):
        for run_dir in os.scandir(top):
            leftover = os.path.join(run_dir.path, series_uid)
            if os.path.isdir(leftover):
                log.info("removing stale staging folder %s", leftover)
                shutil.rmtree(leftover, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(run_dir.path)


# --- sidecars ----------------------------------------------------------------------------


def listing_extra(record: SeriesRecord) -> dict[str, Any]:
    """The listing fields the sidecar has no column for (JSON-safe, empties dropped)."""
    extra: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name in _BASE_FIELDS or value in (None, ""):
            continue
        extra[f.name] = value.isoformat() if isinstance(value, date) else value
    return extra


def build_sidecar(
    record: SeriesRecord,
    path: str,
    instances: tuple[InstanceEntry, ...],
    *,
    series_version: int,
    run_id: str,
    md5_hierarchy: str = "",
) -> SeriesSidecar:
    return SeriesSidecar(
        series_uid=record.series_uid,
        study_uid=record.study_uid,
        patient_id=record.patient_id,
        collection=record.collection,
        modality=record.modality,
        path=path,
        instances=tuple(sorted(instances, key=lambda i: i.name)),
        fingerprint=record.fingerprint,
        series_version=series_version,
        run_id=run_id,
        synced_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        license_name=record.license_name,
        license_uri=record.license_uri,
        extra=listing_extra(record),
        md5_hierarchy=md5_hierarchy,
    )


def refreshed(
    sidecar: SeriesSidecar, record: SeriesRecord, md5_hierarchy: str = ""
) -> SeriesSidecar:
    """Same content, listing fields as they are now (fingerprint, license, extras) and
    the archive's series hash from this download (older sidecars lack it)."""
    return dataclasses.replace(
        sidecar,
        md5_hierarchy=md5_hierarchy or sidecar.md5_hierarchy,
        modality=record.modality,
        fingerprint=record.fingerprint,
        license_name=record.license_name,
        license_uri=record.license_uri,
        extra=listing_extra(record),
    )


def sidecar_key(path: str) -> str:
    return f"{path}/{SIDECAR_NAME}"


# --- commit ------------------------------------------------------------------------------


def commit_local(store: Store, root: str, staged: ExtractedSeries, sidecar: SeriesSidecar) -> None:
    """Sidecar into the staged folder, fsync, old version to the attic, one rename."""
    final = os.path.join(root, *check_key(sidecar.path).split("/"))
    with store_errors(f"commit {sidecar.path}", missing_ok=True):
        _fsync_files(staged.directory)
        _write_synced(os.path.join(staged.directory, SIDECAR_NAME), sidecar.to_json())
        fsync_dir(staged.directory)
        if os.path.lexists(final):
            attic = attic_key(
                sidecar.run_id,
                sidecar.path,
                lambda key: os.path.lexists(os.path.join(root, *key.split("/"))),
            )
            store.move_prefix(sidecar.path, attic)
        ensure_parent(os.path.dirname(final), lambda: os.rename(staged.directory, final))
        fsync_dir(os.path.dirname(final))


def _fsync_files(directory: str) -> None:
    """Make every extracted file durable before the rename publishes them.

    Extraction writes without syncing; one pass here, after all writes, lets the kernel
    write the files back together instead of one synchronous flush per instance.
    """
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                fd = os.open(entry.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def commit_objects(store: Store, staged: ExtractedSeries, sidecar: SeriesSidecar) -> None:
    """Put each verified file once (with its MD5), drop stale objects, sidecar last.

    If a put fails, the objects this commit added (names the folder did not hold before)
    are removed again, best effort, so a new series never shows up without its sidecar.
    """
    uploads: list[tuple[str, str | None]] = [(i.name, i.md5) for i in sidecar.instances]
    if staged.has_license:
        uploads.append((LICENSE_NAME, None))
    before = {key[len(sidecar.path) + 1 :] for key in store.list(sidecar.path)}
    try:
        _put_all(store, staged.directory, sidecar.path, uploads)
    except BaseException:
        _remove_quietly(store, sidecar.path, {n for n, _ in uploads} - before)
        raise
    keep = {SIDECAR_NAME} | {name for name, _ in uploads}
    for name in sorted(before - keep):
        store.delete(f"{sidecar.path}/{name}")
    store.put_bytes(sidecar_key(sidecar.path), sidecar.to_json())


def _put_all(
    store: Store, directory: str, path: str, uploads: list[tuple[str, str | None]]
) -> None:
    def put(item: tuple[str, str | None]) -> None:
        name, md5 = item
        store.put_file(os.path.join(directory, name), f"{path}/{name}", md5=md5)

    # Object stores answer each PUT in tens of ms: overlap them. Leaving the block waits
    # for every started PUT, so the cleanup after a failure sees them all.
    with ThreadPoolExecutor(max(1, min(PUT_CONCURRENCY, len(uploads)))) as pool:
        list(pool.map(put, uploads))


def _remove_quietly(store: Store, path: str, names: set[str]) -> None:
    for name in sorted(names):
        try:
            store.delete(f"{path}/{name}")
        except StoreError as exc:
            log.warning("could not remove %s/%s after a failed commit: %s", path, name, exc)


def attic_key(run_id: str, path: str, taken: Callable[[str], bool]) -> str:
    """``_attic/<run_id>/<path>``, suffixed ``~2``, ``~3`` … if this run already used it."""
    base = f"{ATTIC}/{check_run_id(run_id)}/{path}"
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}~{n}"
        if not taken(candidate):
            return candidate
    raise StoreError(f"no free attic slot for {path} in run {run_id}")


def _write_synced(target: str, data: bytes) -> None:
    with open(target, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
