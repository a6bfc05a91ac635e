"""Ask the archive what exists, as cheaply as the ledger allows (driver side, no Dask).

First run of a collection, or ``--full``: list it completely (withdrawals become visible).
Otherwise one ``getUpdatedSeries(watermark - overlap)`` call for all incremental
collections, plus a per-UID lookup for series a previous run left unfinished.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from mirror.archive.listing_table import TabularListing, conform, records_table
from mirror.archive.port import Archive, IndexedSource, SeriesRecord
from mirror.config import Selection
from mirror.errors import UsageError
from mirror.sync.plan import PENDING_STATES, LedgerEntry, PlanScope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listing:
    """What the archive listed: the fully listed collections as one table (``table``, in
    :func:`mirror.archive.listing_table.series_schema`; None when none was), the rest (a
    nightly's updates, pending and manifest look-ups) as ``records``. In planning order the
    table's rows come first."""

    records: tuple[SeriesRecord, ...]
    scope: PlanScope
    advance: frozenset[str]  # collections whose watermark moves if the run exits 0
    watermark_before: date | None
    not_found: tuple[str, ...] = ()  # manifest UIDs the archive does not list
    table: Any = None  # pyarrow.Table of the fully listed collections' series

    @property
    def collections(self) -> frozenset[str]:
        return self.scope.collections or frozenset()


def gather(
    archive: Archive,
    held: Mapping[str, LedgerEntry],
    watermarks: Mapping[str, date | None],
    selection: Selection,
    *,
    full: bool,
    overlap_days: int,
) -> Listing:
    if selection.manifest_uids is not None:
        return _from_manifest(archive, selection)
    targets, unverified = _targets(archive, held, watermarks, selection)
    # A source listed from a local index (IDC's release) is reconciled in full every run:
    # free, and its withdrawals are then always seen; the release is its watermark.
    indexed = isinstance(archive, IndexedSource)
    full = full or indexed
    full_set = frozenset(c for c in targets if full or watermarks.get(c) is None)
    incremental = targets - full_set
    table = _full_listing(archive, sorted(full_set), unverified) if full_set else None
    records: list[SeriesRecord] = []
    before = min((watermarks[c] for c in incremental), default=None)  # type: ignore[type-var]
    if incremental and before is not None:
        since = before - timedelta(days=overlap_days)
        records.extend(r for r in archive.updated_series(since) if r.collection in incremental)
    scope = _scope(selection, targets, full_set)
    records.extend(_pending_lookups(archive, held, records, scope, table))
    first_wm = None if full_set else before
    # The date watermark is NBIA's ``getUpdatedSeries`` cursor: a run that read an index
    # (IDC, or auto's full NBIA listing) must not move it past changes NBIA has not shown.
    advance = frozenset() if selection.filtered or indexed else targets
    return Listing(tuple(records), scope, advance, first_wm, table=table)


def _full_listing(archive: Archive, collections: list[str], unverified: frozenset[str]) -> Any:
    """Every series of ``collections``, one table: a tabular source's own, or each
    collection's records made columns before the next is listed (records never pile up).
    An ``unverified`` name that lists empty is checked against the archive's collections
    (only then is that list worth a request)."""
    import pyarrow as pa

    from mirror.sync.columnar import prefer_system_allocator

    prefer_system_allocator()  # the run's first Arrow allocation that matters
    tables = []
    for c in collections:
        if isinstance(archive, TabularListing):
            tables.append(conform(archive.series_table(c)))
        else:
            tables.append(records_table(archive.series(c)))
        if tables[-1].num_rows == 0 and c in unverified:
            _check_known(archive, [c])
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _scope(selection: Selection, targets: frozenset[str], listed: frozenset[str]) -> PlanScope:
    return PlanScope(
        collections=targets,
        listed=listed,
        modalities=frozenset(selection.modalities),
        patients=frozenset(selection.patients),
    )


def _targets(
    archive: Archive,
    held: Mapping[str, LedgerEntry],
    watermarks: Mapping[str, date | None],
    selection: Selection,
) -> tuple[frozenset[str], frozenset[str]]:
    """The collections this run is about, and those of them not yet proven to exist (named
    on the command line, never mirrored): checked if their listing comes back empty."""
    mirrored = set(watermarks) | {e.collection for e in held.values()}
    if not selection.collections:
        if mirrored:
            return frozenset(mirrored), frozenset()
        return frozenset(c.name for c in archive.collections()), frozenset()
    unknown = frozenset(c for c in selection.collections if c not in mirrored)
    return frozenset(selection.collections), unknown


def _check_known(archive: Archive, names: Iterable[str]) -> None:
    available = [c.name for c in archive.collections()]
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"unknown collection {name!r} at {archive.url}{hint}")


def _pending_lookups(
    archive: Archive,
    held: Mapping[str, LedgerEntry],
    records: list[SeriesRecord],
    scope: PlanScope,
    table: Any = None,
) -> list[SeriesRecord]:
    """Series left failed/in_progress that this listing did not mention: ask for each."""
    seen = {r.series_uid for r in records}
    wanted = [
        e.series_uid
        for e in held.values()
        if e.state in PENDING_STATES
        and e.series_uid not in seen
        and e.collection not in scope.listed
        and scope.admits(e.collection, e.patient_id, e.modality, e.series_uid)
    ]
    if table is not None and wanted:  # listed in full under another collection
        import pyarrow as pa
        import pyarrow.compute as pc

        listed = pc.is_in(pa.array(wanted, pa.string()), value_set=table.column("series_uid"))
        wanted = [uid for uid, hit in zip(wanted, listed.to_pylist(), strict=True) if not hit]
    found: list[SeriesRecord] = []
    for uid in sorted(wanted):
        found.extend(archive.series(series_uid=uid))
    return found


def _from_manifest(archive: Archive, selection: Selection) -> Listing:
    uids = selection.manifest_uids or ()
    records: list[SeriesRecord] = []
    missing: list[str] = []
    for uid in uids:
        rows = [r for r in archive.series(series_uid=uid) if r.series_uid == uid]
        records.extend(rows[:1])
        if not rows:
            missing.append(uid)
    if missing:
        log.warning("%d manifest series are not listed by the archive", len(missing))
    scope = PlanScope(
        collections=frozenset(selection.collections) or None,
        modalities=frozenset(selection.modalities),
        patients=frozenset(selection.patients),
        series_uids=frozenset(uids),
    )
    return Listing(tuple(records), scope, frozenset(), None, tuple(missing))
