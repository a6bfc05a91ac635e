"""The ``volumes`` table's source: the OME-Zarr stores ``mirror convert`` committed.

The index owns the on-store contract it reads (where stores live, the root marker and its
schema tag); :mod:`mirror.convert` writes to it. Keeping the reader here means the index
never imports the converter (issue #10: index <-> convert was a cycle).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mirror.errors import ObjectNotFound, StoreError, UsageError
from mirror.layout import check_uid, safe_component
from mirror.storage.port import Store

DEFAULT_OUT_PREFIX = "_zarr"
MARKER = "zarr.json"
VOLUME_SCHEMA = "tcia-mirror/dicom-volume/1"


def check_out_prefix(out_prefix: str) -> str:
    """One top-level folder starting with ``_``: never a collection folder of the mirror."""
    name = out_prefix.strip("/")
    if not name.startswith("_") or "/" in name or safe_component(name[1:]) != name[1:]:
        raise UsageError(f"--out must be one folder name starting with '_', got {out_prefix!r}")
    return name


def series_zarr_prefix(
    collection: str, series_uid: str, out_prefix: str = DEFAULT_OUT_PREFIX
) -> str:
    """Where a series' store lives: ``_zarr/<Collection>/<SeriesInstanceUID>.ome.zarr``."""
    base = check_out_prefix(out_prefix)
    return f"{base}/{safe_component(collection or 'unknown')}/{check_uid(series_uid)}.ome.zarr"


def read_marker(store: Store, prefix: str) -> dict[str, Any] | None:
    """The committed root attributes of a series store, or None when absent/unfinished."""
    try:
        meta = json.loads(store.get_bytes(f"{prefix}/{MARKER}"))
    except ObjectNotFound:
        return None
    except ValueError:
        return None  # a torn or foreign zarr.json counts as not committed
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    dicom = attrs.get("dicom") if isinstance(attrs, dict) else None
    if not isinstance(dicom, dict) or dicom.get("schema") != VOLUME_SCHEMA:
        return None
    return attrs


def volume_rows(store: Store, *, out_prefix: str = DEFAULT_OUT_PREFIX) -> list[dict[str, Any]]:
    """One row per written stack of every committed series store (the ``volumes`` table).

    Columns: series_uid, collection, stack_id, role, store_path (the ``.ome.zarr`` prefix),
    image_path (group inside it, "" = root), axes, shape, dtype, spacing (NGFF scale of
    level 0), levels, flags, tilt_deg, regular, missing_slices, fourth_dim, n_instances,
    modality, content_hash. Stores without a root marker (unfinished) are ignored.
    """
    return [row for prefix in _store_prefixes(store, out_prefix)
            for row in store_volume_rows(store, prefix)]


def store_volume_rows(store: Store, prefix: str) -> list[dict[str, Any]]:
    """The :func:`volume_rows` of one series store, from its metadata documents only.

    Reads the root ``zarr.json`` (and an image group's own for stacks below the root);
    never lists the store, so no chunk key is ever touched. Empty when unfinished.
    """
    attrs = read_marker(store, prefix)
    if attrs is None:
        return []
    return [_row(store, prefix, attrs, stack) for stack in attrs["dicom"].get("stacks", [])
            if stack.get("status") == "written"]


def _store_prefixes(store: Store, out_prefix: str) -> Iterator[str]:
    """``<out>/<Collection>/<UID>.ome.zarr`` of every store, one folder level at a time:
    a store's name is all it takes (what is inside, its chunks, is never listed)."""
    base = check_out_prefix(out_prefix)
    for collection in child_folders(store, base):
        for name in child_folders(store, f"{base}/{collection}"):
            if name.endswith(".ome.zarr"):
                yield f"{base}/{collection}/{name}"


def child_folders(store: Store, prefix: str = "") -> list[str]:
    """Names of the folders directly under ``prefix`` (one non-recursive listing).

    The Store port lists recursively only, so this asks its fsspec filesystem, as the index
    already does for copies and DuckDB; ``refresh`` skips s3fs's listing cache, which may
    predate the sync that just ran.
    """
    fs, root = store.filesystem()
    path = f"{root.rstrip('/')}/{prefix.strip('/')}" if prefix.strip("/") else root
    try:
        entries: list[dict[str, Any]] = fs.ls(path, detail=True, refresh=True)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"list {store.url}/{prefix}: {exc}") from exc
    return sorted(str(e["name"]).rstrip("/").rsplit("/", 1)[-1]
                  for e in entries if e.get("type") == "directory")


def _row(store: Store, prefix: str, root: dict[str, Any], stack: dict[str, Any]) -> dict[str, Any]:
    image = root
    if stack["path"]:
        raw = json.loads(store.get_bytes(f"{prefix}/{stack['path']}/{MARKER}"))
        image = raw.get("attributes", {})
    dicom = image.get("dicom", {})
    checks = dicom.get("geometry_checks", {})
    datasets = image.get("ome", {}).get("multiscales", [{}])[0].get("datasets", [])
    source = root["dicom"].get("source", {})
    return {
        "series_uid": root["dicom"].get("SeriesInstanceUID"),
        "collection": root["dicom"].get("collection", ""),
        "stack_id": stack["id"],
        "role": stack["role"],
        "store_path": prefix,
        "image_path": stack["path"],
        "axes": stack["axes"],
        "shape": stack["shape"],
        "dtype": stack["dtype"],
        "spacing": stack["spacing"],
        "levels": len(datasets),
        "flags": stack["flags"],
        "tilt_deg": checks.get("tilt_deg"),
        "regular": checks.get("regular"),
        "missing_slices": checks.get("missing_slice_indices", []),
        "fourth_dim": (dicom.get("fourth_dimension") or {}).get("key", ""),
        "n_instances": stack["n_instances"],
        "modality": dicom.get("Modality", ""),
        "content_hash": source.get("content_hash", ""),
    }
