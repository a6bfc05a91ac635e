"""Incremental index build: scan committed series, extract what changed, publish a snapshot.

Only series whose ``_series.json`` exists count (the sidecar is the commit marker, and
nothing under ``.staging/`` or the other reserved folders is read). A sidecar is read only
when its listing stamp changed since the previous snapshot, and a series is re-extracted when
its ``content_hash``, ``series_version`` or folder differs from the previous snapshot;
everything else is carried forward from the previous snapshot's files, so the work follows
the change, not the mirror's size (apart from the listing itself).
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from mirror.errors import UsageError
from mirror.index.discover import ZARR_FOLDER, find_sidecars, read_volume_rows, zarr_stores
from mirror.index.publish import (
    Pointer,
    collect_garbage,
    new_snapshot_id,
    publish,
    read_pointer,
)
from mirror.index.schema import SCHEMA_VERSION, TABLES, collection_id
from mirror.index.tables import (
    derive,
    empty,
    part_collection,
    part_key,
    read_part,
    rebase_key,
    volumes_table,
    write_part,
)
from mirror.index.tasks import BatchResult, carry_part, extract_batch, read_sidecars
from mirror.index.volumes import child_folders
from mirror.layout import SIDECAR_NAME, SeriesSidecar
from mirror.storage.port import Store

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
R = TypeVar("R")
SeriesKey = tuple[str, int, str]  # content_hash, series_version, series_path
ROW_TABLES = ("instances", "errors")  # carried part by part; the rest are rebuilt per collection


@dataclass(frozen=True, slots=True)
class BuildReport:
    snapshot_id: str
    series: int  # series in the new snapshot
    extracted: int  # series whose headers were read in this build
    carried: int  # series reused from the previous snapshot
    removed: int  # series of the previous snapshot that are gone
    instances: int
    errors: int
    deleted_snapshots: tuple[str, ...]


def build_index(
    store: Store,
    *,
    client: Any | None = None,
    full: bool = False,
    keep: int = 3,
    batch_files: int = 500,
    exclude: Collection[str] = frozenset(),
    now: datetime | None = None,
) -> BuildReport:
    """Build and publish a new index snapshot of ``store``; return what was done.

    ``client`` is a ``dask.distributed.Client`` (``None`` runs every task in this process).
    ``full`` ignores the previous snapshot and re-reads every header. ``exclude`` names
    series to leave out although their sidecar exists (the ledger's withdrawn tombstones, see
    :func:`withdrawn_series`). The pointer moves only after every file of the new snapshot
    is written; then all but ``keep`` snapshots go.
    """
    if keep < 1:
        raise UsageError("keep must be at least 1")
    run = _Runner(client, store)
    previous = None if full else read_pointer(store)
    if previous is not None and previous.schema_version != SCHEMA_VERSION:
        log.info("schema version changed (%s -> %s): full rebuild",
                 previous.schema_version, SCHEMA_VERSION)
        previous = None
    snapshot_id = new_snapshot_id(now)
    top = child_folders(store)
    listing = find_sidecars(store, top)
    plan = _plan(run, store, listing, previous, exclude)
    files = _carry(run, previous, snapshot_id, _stale_paths(plan.old, plan.stale))
    log.info("index build %s: %d series, %d sidecars read, %d to extract, %d stale",
             snapshot_id, len(plan.present), plan.read, len(plan.todo), len(plan.stale))
    size = batch_size(sum(s.image_count for s in plan.todo), run.slots(), batch_files)
    results = run.map(extract_batch, [(snapshot_id, cid, batch)
                                      for cid, batch in _batches(plan.todo, size)])
    for table, key, rows in (f for r in results for f in r.files):
        files[table].append((key, rows))
    series = _with_stamps(_merge_series(plan.old, plan.stale, results), listing)
    volumes = _volume_rows(run, store, series) if ZARR_FOLDER in top else []
    _write_collections(store, snapshot_id, series, volumes, files)
    pointer = _pointer(snapshot_id, files, now)
    publish(store, pointer)
    deleted = collect_garbage(store, keep, snapshot_id)
    return BuildReport(snapshot_id, series.num_rows, len(plan.todo),
                       series.num_rows - len(plan.todo),
                       len([u for u in plan.stale if u not in plan.present]),
                       pointer.rows.get("instances", 0), pointer.rows.get("errors", 0),
                       tuple(deleted))


@dataclass(frozen=True, slots=True)
class _Plan:
    present: set[str]  # UIDs of the committed series to index
    read: int  # sidecars read (the rest were unchanged in the listing)
    old: pa.Table  # the previous snapshot's series table
    todo: list[SeriesSidecar]  # new or changed: headers to read
    stale: set[str]  # previous rows that must not be carried (changed or gone)


def _plan(
    run: _Runner, store: Store, listing: dict[str, str], previous: Pointer | None,
    exclude: Collection[str],
) -> _Plan:
    """Which series to extract, carry and drop.

    A sidecar whose listing stamp equals the one its previous row was built from is not
    read: that series is carried as it is. The others are read, and re-extracted when
    their ``content_hash``, ``series_version`` or folder changed.
    """
    old = _previous_series(store, previous)
    old_keys = _keys(old)
    unchanged = _unchanged(old, listing)
    to_read = [f"{path}/{SIDECAR_NAME}" for path in listing if path not in unchanged]
    sidecars = {s.series_uid: s
                for chunk in run.map(read_sidecars, _chunks(to_read, 200))
                for s in chunk if s.series_uid not in exclude}
    present = {uid for uid in unchanged.values() if uid not in exclude} | set(sidecars)
    todo = [s for s in sidecars.values() if _key_of(s) != old_keys.get(s.series_uid)]
    changed = {s.series_uid for s in todo}
    stale = {uid for uid in old_keys if uid not in present or uid in changed}
    return _Plan(present, len(to_read), old, todo, stale)


def _unchanged(old: pa.Table, listing: dict[str, str]) -> dict[str, str]:
    """``{series folder: UID}`` of previous rows whose sidecar stamp is listed unchanged."""
    cols = [old.column(c).to_pylist()
            for c in ("series_path", "sidecar_stamp", "SeriesInstanceUID")]
    return {path: uid for path, stamp, uid in zip(*cols, strict=True)
            if stamp and listing.get(path) == stamp}


def _with_stamps(series: pa.Table, listing: dict[str, str]) -> pa.Table:
    """``series`` with each row's ``sidecar_stamp`` taken from this build's listing."""
    import pyarrow as pa

    stamps = [listing.get(path) for path in series.column("series_path").to_pylist()]
    index = series.schema.get_field_index("sidecar_stamp")
    return series.set_column(index, "sidecar_stamp", pa.array(stamps, pa.string()))


def withdrawn_series(dest: str, state_dir: str | None = None) -> frozenset[str]:
    """Series the sync ledger of ``dest`` marks withdrawn (empty when there is no ledger)."""
    from mirror.config import LEDGER_NAME, resolve_state_dir

    path = resolve_state_dir(dest, state_dir) / LEDGER_NAME
    if not path.exists():
        return frozenset()
    from mirror.sync.ledger import Ledger

    with Ledger.open(path) as ledger:
        return ledger.withdrawn_uids()


class _Runner:
    """Runs task functions on a Dask client, or inline when there is none."""

    def __init__(self, client: Any | None, store: Store) -> None:
        # The store travels pickled inside every task (a few hundred bytes). Scattering it
        # once would save little and, with scatter's content hashing, two builds on one
        # client share the key and the first one's release cancels the second's tasks.
        self.client = client
        self.store = store

    def slots(self) -> int:
        """How many tasks run at once (worker threads; 1 inline)."""
        if self.client is None:
            return 1
        return max(1, int(sum(self.client.nthreads().values())))

    def map(self, fn: Callable[..., R], args: Iterable[Any]) -> list[R]:
        items = [a if isinstance(a, tuple) else (a,) for a in args]
        if self.client is None:
            return [fn(self.store, *a) for a in items]
        futures = [self.client.submit(fn, self.store, *a, pure=False) for a in items]
        return list(self.client.gather(futures))


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _key_of(s: SeriesSidecar) -> SeriesKey:
    return (s.content_hash, s.series_version, s.path)


def _previous_series(store: Store, previous: Pointer | None) -> pa.Table:
    import pyarrow as pa

    if previous is None or not previous.tables.get("series"):
        return empty("series")
    return pa.concat_tables([read_part(store, k, "series") for k in previous.tables["series"]])


def _keys(old: pa.Table) -> dict[str, SeriesKey]:
    cols = [old.column(c).to_pylist()
            for c in ("SeriesInstanceUID", "content_hash", "series_version", "series_path")]
    return {u: (h, v, p) for u, h, v, p in zip(*cols, strict=True)}


def _stale_paths(old: pa.Table, stale: set[str]) -> dict[str, frozenset[str]]:
    """Series folders whose rows must not be carried forward, by collection_id."""
    by_cid: dict[str, set[str]] = defaultdict(set)
    names = ("SeriesInstanceUID", "collection_id", "series_path")
    cols = [old.column(c).to_pylist() for c in names]
    for uid, cid, path in zip(*cols, strict=True):
        if uid in stale:
            by_cid[cid].add(path)
    return {cid: frozenset(paths) for cid, paths in by_cid.items()}


def _carry(
    run: _Runner, previous: Pointer | None, snapshot_id: str, stale: dict[str, frozenset[str]]
) -> dict[str, list[tuple[str, int]]]:
    files: dict[str, list[tuple[str, int]]] = {t: [] for t in TABLES}
    if previous is None:
        return files
    jobs = [(key, rebase_key(key, snapshot_id), table, stale.get(part_collection(key), frozenset()))
            for table in ROW_TABLES for key in previous.tables.get(table, ())]
    for (_, _, table, _), done in zip(jobs, run.map(carry_part, jobs), strict=True):
        if done is not None:
            files[table].append(done)
    return files


MIN_BATCH_FILES = 50  # below this, per-task and per-part-file costs outweigh the balance


def batch_size(files: int, slots: int, most: int) -> int:
    """Files per extraction task: at most ``most``, and few enough that every worker slot
    gets about four tasks, so the last long task does not leave the other workers idle."""
    return max(min(MIN_BATCH_FILES, most), min(most, -(-files // (4 * slots))))


def _batches(todo: list[SeriesSidecar], batch_files: int) -> list[tuple[str, list[SeriesSidecar]]]:
    """Series grouped per collection into batches of about ``batch_files`` instances.

    Largest first: the scheduler starts tasks in submission order, and a big batch
    started last would finish alone.
    """
    by_cid: dict[str, list[SeriesSidecar]] = defaultdict(list)
    for sidecar in sorted(todo, key=lambda s: s.path):
        by_cid[collection_id(sidecar.collection)].append(sidecar)
    out: list[tuple[str, list[SeriesSidecar]]] = []
    for cid, group in sorted(by_cid.items()):
        batch: list[SeriesSidecar] = []
        files = 0
        for sidecar in group:
            batch.append(sidecar)
            files += sidecar.image_count
            if files >= batch_files:
                out.append((cid, batch))
                batch, files = [], 0
        if batch:
            out.append((cid, batch))
    return sorted(out, key=lambda b: -sum(s.image_count for s in b[1]))


def _merge_series(old: pa.Table, stale: set[str], results: list[BatchResult]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    keep = pc.invert(pc.is_in(old.column("SeriesInstanceUID"), value_set=pa.array(sorted(stale),
                                                                                  pa.string())))
    return pa.concat_tables([old.filter(keep), *(r.series for r in results)])


def _volume_rows(run: _Runner, store: Store, series: pa.Table) -> list[dict[str, Any]]:
    """Stack rows of the converted stores of ``series``, from their root metadata."""
    pairs = zip(series.column("Collection").to_pylist(),
                series.column("SeriesInstanceUID").to_pylist(), strict=True)
    prefixes = zarr_stores(store, pairs)
    return [row for chunk in run.map(read_volume_rows, _chunks(prefixes, 200)) for row in chunk]


def _write_collections(
    store: Store, snapshot_id: str, series: pa.Table, volume_rows: list[dict[str, Any]],
    files: dict[str, list[tuple[str, int]]],
) -> None:
    """Write the series table and the tables derived from it, one file per collection."""
    series = series.sort_by([("collection_id", "ascending"), ("PatientID", "ascending"),
                             ("SeriesInstanceUID", "ascending")])
    volumes = volumes_table(volume_rows, series).sort_by("collection_id")
    for table, data in {"series": series, **derive(series), "volumes": volumes}.items():
        for cid, start, length in _runs(data.column("collection_id").to_pylist()):
            key = part_key(snapshot_id, table, cid, "part-0")
            write_part(store, key, data.slice(start, length), table)
            files[table].append((key, length))


def _runs(values: list[str]) -> list[tuple[str, int, int]]:
    """``(value, start, length)`` of each run of equal values in a sorted column."""
    out: list[tuple[str, int, int]] = []
    start = 0
    for value, group in itertools.groupby(values):
        length = sum(1 for _ in group)
        out.append((value, start, length))
        start += length
    return out


def _pointer(
    snapshot_id: str, files: dict[str, list[tuple[str, int]]], now: datetime | None
) -> Pointer:
    created = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    tables = {t: tuple(sorted(k for k, _ in files[t])) for t in TABLES}
    rows = {t: sum(n for _, n in files[t]) for t in TABLES}
    return Pointer(snapshot_id, created, SCHEMA_VERSION, tables, rows)
