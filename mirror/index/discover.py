"""What a build reads from the destination's folders, without walking what it does not need.

A recursive listing of the whole destination would walk every OME-Zarr chunk under
``_zarr/`` (thousands of keys per converted series) and every old index snapshot. A build
needs none of them: series are found from their sidecars in the collection folders, and
converted stores from one-level listings of ``_zarr/`` and ``_zarr/<Collection>/`` (folder
names, one delimiter listing each); the ``volumes`` rows then come from each store's root
metadata (:func:`mirror.index.volumes.store_volume_rows`), never from its keys.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from mirror.errors import MirrorError, StoreError
from mirror.index.volumes import child_folders
from mirror.layout import RESERVED_PREFIXES, SIDECAR_NAME
from mirror.storage.port import Store

log = logging.getLogger(__name__)

ZARR_FOLDER = "_zarr"  # mirror.convert.pipeline.DEFAULT_OUT_PREFIX (not imported: heavy)


# Listing fields that change whenever an object is rewritten (local: a new inode and mtime
# from the atomic rename; S3: ETag and LastModified; memory: creation time).
_CHANGE_FIELDS = ("ino", "mtime", "ETag", "LastModified", "created")


def stamp(info: dict[str, Any]) -> str:
    """What the listing says about one sidecar version; ``""`` when it cannot tell versions
    apart (then the sidecar is always read)."""
    changes = [str(info[k]) for k in _CHANGE_FIELDS if info.get(k) not in (None, "")]
    return "|".join([str(info.get("size", "")), *changes]) if changes else ""


def find_sidecars(store: Store, top: Iterable[str] | None = None) -> dict[str, str]:
    """``{series folder: sidecar stamp}`` of every committed series.

    Lists the collection folders only (``top``: the destination's top-level folders, when
    the caller has them), with each sidecar's listing details, so that a build reads again
    only the sidecars whose stamp changed since the previous snapshot.
    """
    folders = [f for f in (child_folders(store) if top is None else top)
               if f not in RESERVED_PREFIXES]
    fs, root = store.filesystem()
    base = root.rstrip("/")
    found: dict[str, str] = {}
    for folder in folders:
        listing = _local_sidecars(base, folder) if store.capabilities.local else (
            _listed_sidecars(fs, base, folder))
        found.update(listing)
    return dict(sorted(found.items()))


def _listed_sidecars(fs: Any, base: str, folder: str) -> dict[str, str]:
    try:
        listing: dict[str, dict[str, Any]] = fs.find(f"{base}/{folder}", detail=True)
    except OSError as exc:
        raise StoreError(f"list {base}/{folder}: {exc}") from exc
    found: dict[str, str] = {}
    for path, info in listing.items():
        key = path[len(base) + 1 :] if path.startswith(base + "/") else ""
        series, _, name = key.rpartition("/")
        if name == SIDECAR_NAME and series:
            found[series] = stamp(info)
    return found


def _local_sidecars(base: str, folder: str) -> dict[str, str]:
    """The same from a local walk that stats only the sidecars (a DICOM file is one
    directory entry, not a stat: a mirror holds a hundred of them per sidecar)."""
    found: dict[str, str] = {}
    try:
        for dirpath, _, filenames in os.walk(os.path.join(base, folder), onerror=_raise):
            if SIDECAR_NAME in filenames:
                st = os.stat(os.path.join(dirpath, SIDECAR_NAME))
                series = os.path.relpath(dirpath, base).replace(os.sep, "/")
                found[series] = stamp({"size": st.st_size, "ino": st.st_ino,
                                       "mtime": st.st_mtime})
    except OSError as exc:
        raise StoreError(f"list {base}/{folder}: {exc}") from exc
    return found


def _raise(exc: OSError) -> None:
    raise exc


def zarr_stores(store: Store, series: Iterable[tuple[str, str]]) -> list[str]:
    """Prefixes of the converted stores of ``series`` (``(Collection, SeriesInstanceUID)``).

    Lists ``_zarr/`` and the ``_zarr/<Collection>/`` folders of the indexed collections,
    one level each: the names of stores, never what is inside them.
    """
    from mirror.index.volumes import series_zarr_prefix

    wanted: set[str] = set()
    for collection, uid in series:
        try:
            wanted.add(series_zarr_prefix(collection, uid))
        except MirrorError:  # a UID that cannot name a folder was never converted
            continue
    collections = {p.split("/")[1] for p in wanted} & set(child_folders(store, ZARR_FOLDER))
    present = {f"{ZARR_FOLDER}/{c}/{name}" for c in collections
               for name in child_folders(store, f"{ZARR_FOLDER}/{c}")}
    return sorted(wanted & present)


def read_volume_rows(store: Store, prefixes: list[str]) -> list[dict[str, Any]]:
    """The ``volumes`` rows of some converted stores (a Dask task: small reads only).

    A store whose metadata cannot be read is logged and left out: the volumes are a
    derived product, and the rest of the index stands without them.
    """
    from mirror.index.volumes import store_volume_rows

    rows: list[dict[str, Any]] = []
    for prefix in prefixes:
        try:
            rows.extend(store_volume_rows(store, prefix))
        except (MirrorError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("volumes of %s left out of the index: %s", prefix, exc)
    return rows
