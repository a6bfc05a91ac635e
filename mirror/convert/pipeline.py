"""Incremental conversion of committed series on a Dask cluster, and the ``volumes`` rows.

Layout: ``<out_prefix>/<Collection>/<SeriesInstanceUID>.ome.zarr`` in the destination Store.
A series is reconverted only when its sidecar's ``content_hash`` differs from the one in the
store's root marker (``dicom.source.content_hash``). Before rewriting, the old marker is
deleted first, so a crash mid-way leaves an invisible store, never a mix of two versions.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mirror.convert.series import convert_source
from mirror.convert.source import DirSource, InstanceSource, StoreSource
from mirror.convert.write import StackResult
from mirror.errors import MirrorError, UsageError
from mirror.index.volumes import (
    DEFAULT_OUT_PREFIX,
    MARKER,
    check_out_prefix,
    read_marker,
    series_zarr_prefix,
)
from mirror.layout import SeriesSidecar, check_uid
from mirror.storage.port import Store

log = logging.getLogger(__name__)

FETCH_THREADS = 8  # object-store GETs are latency-bound: overlap them
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """Outcome for one series: ``converted``, ``unchanged`` (hash matched) or ``failed``."""

    series_uid: str
    status: str
    zarr_prefix: str
    content_hash: str
    stacks: tuple[StackResult, ...] = ()
    skipped_instances: int = 0
    reason: str = ""

    @property
    def written_stacks(self) -> int:
        return sum(1 for s in self.stacks if s.status == "written")

    @property
    def quarantined_stacks(self) -> int:
        return sum(1 for s in self.stacks if s.status == "quarantined")


def zarr_prefix(sidecar: SeriesSidecar, out_prefix: str = DEFAULT_OUT_PREFIX) -> str:
    """Where a series' store lives: ``_zarr/<Collection>/<SeriesInstanceUID>.ome.zarr``."""
    return series_zarr_prefix(sidecar.collection, sidecar.series_uid, out_prefix)


def convert_series(
    store: Store,
    sidecar: SeriesSidecar,
    *,
    out_prefix: str = DEFAULT_OUT_PREFIX,
    force: bool = False,
    threads: int = 2,
) -> ConversionResult:
    """Convert one committed series unless its store already matches its content_hash.

    This is what ``mirror sync --convert`` calls after committing a series. Raises
    :class:`~mirror.errors.StoreError` for destination failures; undecodable stacks are
    quarantined inside the result, not raised.
    """
    prefix = zarr_prefix(sidecar, out_prefix)
    digest = sidecar.content_hash
    marker = read_marker(store, prefix)
    if not force and marker and marker["dicom"].get("source", {}).get("content_hash") == digest:
        return ConversionResult(sidecar.series_uid, "unchanged", prefix, digest)
    _invalidate(store, prefix)
    with _instances(store, sidecar) as source:
        outcome = convert_source(
            source,
            store.zarr_store(prefix),
            name=sidecar.series_uid,
            series_attrs=_provenance(sidecar),
            threads=threads,
        )
    log.info("converted %s: %d stacks", sidecar.series_uid, len(outcome.written))
    return ConversionResult(
        sidecar.series_uid, "converted", prefix, digest, outcome.stacks, len(outcome.skipped)
    )


@contextmanager
def _instances(store: Store, sidecar: SeriesSidecar) -> Iterator[InstanceSource]:
    """Read local stores in place; fetch remote instances once, in parallel, to a temp dir.

    Every instance is read twice (header scan, then pixels): on an object store that would
    be two GETs per file, each paying the round trip.
    """
    names = tuple(i.name for i in sidecar.instances)
    if store.capabilities.local:
        yield StoreSource(store, sidecar.path, names)
        return
    with tempfile.TemporaryDirectory(prefix="mirror-convert-") as tmp:

        def fetch(name: str) -> None:
            source = StoreSource(store, sidecar.path, names)
            with source.open(name) as src, open(os.path.join(tmp, name), "wb") as dst:
                shutil.copyfileobj(src, dst, _COPY_CHUNK)

        with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch") as pool:
            list(pool.map(fetch, names))
        yield DirSource(tmp, names)


def _invalidate(store: Store, prefix: str) -> None:
    # marker first: from here on readers and volume_rows ignore the store
    if store.exists(f"{prefix}/{MARKER}"):
        store.delete(f"{prefix}/{MARKER}")
    store.delete_prefix(prefix)


def _provenance(sidecar: SeriesSidecar) -> dict[str, Any]:
    return {
        "StudyInstanceUID": sidecar.study_uid,
        "collection": sidecar.collection,
        "source": {
            "path": sidecar.path,
            "content_hash": sidecar.content_hash,
            "n_instances": sidecar.image_count,
            "series_version": sidecar.series_version,
            "synced_at": sidecar.synced_at,
        },
    }


def convert_task(
    store: Store, sidecar: SeriesSidecar, out_prefix: str, force: bool, threads: int
) -> ConversionResult:
    """One Dask task: a failure becomes a ``failed`` result so other series go on."""
    try:
        return convert_series(store, sidecar, out_prefix=out_prefix, force=force, threads=threads)
    except MirrorError as exc:
        reason = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # hostile DICOM can break any library; isolate the series
        log.exception("conversion of %s crashed", sidecar.series_uid)
        reason = f"{type(exc).__name__}: {exc}"
    prefix = zarr_prefix(sidecar, out_prefix)
    return ConversionResult(
        sidecar.series_uid, "failed", prefix, sidecar.content_hash, reason=reason
    )


def convert_many(
    store: Store,
    sidecars: Sequence[SeriesSidecar],
    *,
    out_prefix: str = DEFAULT_OUT_PREFIX,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    threads: int = 2,
) -> list[ConversionResult]:
    """Convert many series on a Dask cluster (embedded LocalCluster unless ``scheduler``)."""
    if not sidecars:
        return []
    from mirror.index.cluster import dask_client

    with dask_client(scheduler, workers) as client:
        futures = client.map(
            convert_task,
            [store] * len(sidecars),
            list(sidecars),
            out_prefix=out_prefix,
            force=force,
            threads=threads,
            pure=False,
        )
        results: list[ConversionResult] = client.gather(futures)
    return sorted(results, key=lambda r: r.series_uid)


def convert_dest(
    dest: str,
    *,
    series: Iterable[str] = (),
    where: str | None = None,
    out_prefix: str = DEFAULT_OUT_PREFIX,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    threads: int = 2,
    store_options: dict[str, Any] | None = None,
) -> list[ConversionResult]:
    """``mirror convert``: select committed series of ``dest`` and convert them.

    ``workers=0`` converts in this process, one series after another (no cluster).
    """
    from mirror.storage import open_store

    check_out_prefix(out_prefix)
    store = open_store(dest, **(store_options or {}))
    sidecars = select_sidecars(store, series=series, where=where)
    missing = set(series) - {s.series_uid for s in sidecars}
    if missing:
        raise UsageError(f"not committed in {dest}: {sorted(missing)[:5]}")
    if workers == 0 and not scheduler:
        return [convert_task(store, s, out_prefix, force, threads) for s in sidecars]
    return convert_many(
        store, sidecars, out_prefix=out_prefix, scheduler=scheduler, workers=workers,
        force=force, threads=threads,
    )  # fmt: skip


def select_sidecars(
    store: Store, *, series: Iterable[str] = (), where: str | None = None
) -> list[SeriesSidecar]:
    """Committed series to convert: all, the given UIDs, or those an index query selects."""
    from mirror.sync.audit import iter_sidecars

    wanted = {check_uid(uid) for uid in series}
    if where:
        wanted |= _query_uids(store, where)
    chosen = [s for s in iter_sidecars(store) if not (wanted or where) or s.series_uid in wanted]
    return sorted(chosen, key=lambda s: s.series_uid)


def _query_uids(store: Store, where: str) -> set[str]:
    from mirror.index import query

    table = query(store, f"SELECT SeriesInstanceUID FROM series WHERE {where}")  # noqa: S608
    return {str(uid) for uid in table.column("SeriesInstanceUID").to_pylist()}
