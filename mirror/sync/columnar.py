"""The full reconcile as one columnar join: the listing table against the ledger's columns.

``--full`` at TCIA's scale lists a million series of which a handful changed. The record
planner (:func:`mirror.sync.plan.plan_slice`) makes a record, a ledger entry and a plan
item per series; here the listing stays an Arrow table (:mod:`mirror.archive.listing_table`),
the ledger gives the few columns the outcome depends on (``Ledger.held_columns``), and one
hash join decides every row. Only the rows that need something (new, changed, retry,
withdrawn, rejected, deferred) become Python objects, through the record planner's own
:func:`~mirror.sync.plan.classify`, so each has exactly the item it would have had; the
unchanged ones are a count (:attr:`SyncPlan.carried`) and, for the audits that look at
held copies, a table of their UIDs and collections.

``tests/sync/test_sync_columnar.py`` holds this to :func:`mirror.sync.plan.plan` over the
whole ledger (kept as the oracle) on random histories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mirror.archive.listing_table import table_records
from mirror.guards import DEFAULT_MAX_DELETE, MaxDelete
from mirror.layout import DEFAULT_TEMPLATE
from mirror.sync.plan import (
    PENDING_STATES,
    LedgerEntry,
    PlanItem,
    PlanScope,
    Rejected,
    SyncPlan,
    check_withdrawals,
    classify,
    guard_empty,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# The ledger's columns the plan reads, as ``Ledger.held_columns`` returns them: ``fp`` is
# the fingerprint as one string (fingerprint_column builds the listing's the same way),
# ``code`` the state (CODES; a withdrawn row whose files are still in the mirror is a
# tombstone), ``flags`` bit 0: its collection is fully listed, bit 1: the scope admits it.
HELD_COLUMNS = ("series_uid", "fp", "code", "flags")
CODES = ("present", "planned", "in_progress", "failed", "withdrawn", "tombstone")
_PENDING = [CODES.index(s) for s in sorted(PENDING_STATES)]
_WITHDRAWN, _TOMBSTONE = CODES.index("withdrawn"), CODES.index("tombstone")
LISTED, ADMITTED = 1, 2
Entries = Callable[[Sequence[str]], Mapping[str, LedgerEntry]]  # whole rows, by UID


@dataclass(frozen=True, slots=True)
class HeldColumns:
    """The ledger's side of the join: ``table`` (HELD_COLUMNS) holds the rows
    ``held_slice`` reads; ``counts`` is ``HeldSlice.counts``, summed in SQL."""

    table: pa.Table
    counts: Mapping[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class ColumnarPlan:
    plan: SyncPlan
    listing: pa.Table
    rows: np.ndarray[Any, Any]  # listing rows of the carried (unchanged) series

    @property
    def unchanged(self) -> pa.Table:
        """``series_uid`` and ``collection`` of the carried series (made on demand)."""
        return self.listing.select(["series_uid", "collection"]).take(self.rows)


def prefer_system_allocator() -> None:
    """Make Arrow allocate with malloc in this process (the driver).

    The columnar plan builds and frees hash sets of a million UIDs; mimalloc, Arrow's
    default, keeps freed segments mapped, so a ``--full`` over 1.04M series peaked at
    1,040 MB RSS against 780 MB with malloc, which hands large blocks straight back
    (benchmarks/plan_scale.py, same run and machine). Call it before the first Arrow
    allocation that matters; later calls are harmless.
    """
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def fingerprint_column(listing: pa.Table) -> pa.ChunkedArray:
    """:attr:`SeriesRecord.fingerprint` of every row, joined with ``|`` as SQL joins the
    ledger's four columns (a version token takes the submission slot, as ``uuid:<token>``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def iso(name: str) -> pa.ChunkedArray:
        return pc.fill_null(listing.column(name).cast(pa.string()), "")

    token = listing.column("version_token")
    stamp = pc.if_else(
        pc.not_equal(token, ""),
        pc.binary_join_element_wise("uuid:", token, ""),
        iso("max_submission"),
    )
    return pc.binary_join_element_wise(
        listing.column("image_count").cast(pa.string()),
        listing.column("file_size").cast(pa.string()),
        stamp,
        iso("date_released"),
        "|",
    )


def plan_columnar(
    listing: pa.Table,
    held: HeldColumns,
    entries: Entries,
    *,
    scope: PlanScope,
    max_delete: MaxDelete = DEFAULT_MAX_DELETE,
    template: str = DEFAULT_TEMPLATE,
    delete: bool = False,
    drifted: frozenset[str] = frozenset(),
    allow_empty: frozenset[str] = frozenset(),
) -> ColumnarPlan:
    """:func:`mirror.sync.plan.plan_slice` over a listing table and the ledger's columns,
    with the same outcomes, order, rejections, deferrals and refusals. ``entries`` reads
    whole rows for the few series that get an item.

    The join is a lookup: each held row's UID is found among the listing's (one hash set,
    ``index_in``), which says at once which listed series are held and which held series
    the listing misses (withdrawal and deferral candidates).
    """
    import numpy as np
    import pyarrow.compute as pc

    rows, uids, index = _first_admitted(listing, scope)
    guard_empty(_collections(listing, rows), held.counts, allow_empty)

    table = held.table
    found = pc.index_in(table.column("series_uid"), value_set=uids)
    matched = _np(pc.is_valid(found))
    at = np.zeros(len(matched), dtype=np.int64)  # the listing row of each held row
    at[matched] = index[_np(pc.fill_null(found, 0))[matched]]
    code = _np(table.column("code"))
    flags = _np(table.column("flags"))
    candidate = matched & (code == 0)
    same = _np(pc.equal(table.column("fp").filter(candidate),
                        fingerprint_column(_fp_columns(listing).take(at[candidate]))))  # fmt: skip
    if drifted:
        same &= ~_np(_is_in(table.column("series_uid").filter(candidate), drifted))
    kept = np.flatnonzero(candidate)[same]  # held rows whose series is unchanged
    carried = np.zeros(listing.num_rows, dtype=bool)
    carried[at[kept]] = True
    act = rows[~carried[rows]]
    stays = np.zeros(len(code), dtype=bool)
    stays[kept] = True
    whole = entries(table.column("series_uid").filter(matched & ~stays).to_pylist())
    items: list[PlanItem] = []
    rejected: list[Rejected] = []
    acting = listing if len(act) == listing.num_rows else listing.take(act)  # a first mirror
    for record in table_records(acting):
        item = classify(record, whole.get(record.series_uid), template, drifted)
        (rejected if isinstance(item, Rejected) else items).append(item)  # type: ignore[arg-type]

    listed, admitted = (flags & LISTED) > 0, (flags & ADMITTED) > 0
    unseen = ~matched & admitted
    gone = unseen & listed & ((code < _WITHDRAWN) | (delete & (code == _TOMBSTONE)))
    withdrawn_uids = sorted(table.column("series_uid").filter(gone).to_pylist())
    pending = unseen & ~listed & np.isin(code, _PENDING)
    deferred = tuple(sorted(table.column("series_uid").filter(pending).to_pylist()))
    gone_entries = entries(withdrawn_uids)
    withdrawn = [
        PlanItem(u, "withdrawn", gone_entries[u].path, None, gone_entries[u])
        for u in withdrawn_uids
    ]
    n_held = sum(
        n_live + (n_graves if delete else 0)
        for collection, (n_live, n_graves) in held.counts.items()
        if collection not in allow_empty
    )
    check_withdrawals(
        sum(1 for w in withdrawn if w.collection not in allow_empty), n_held, max_delete
    )
    carried_rows = at[kept]
    the_plan = SyncPlan(
        tuple(items + withdrawn), tuple(rejected), deferred, scope, carried=len(carried_rows)
    )
    return ColumnarPlan(the_plan, listing, np.sort(carried_rows))


def _first_admitted(
    listing: pa.Table, scope: PlanScope
) -> tuple[np.ndarray[Any, Any], pa.ChunkedArray, np.ndarray[Any, Any]]:
    """(listing rows planned, in order: each admitted UID's first; the admitted UIDs; the
    listing row of each admitted UID), as ``plan_slice``'s ``seen`` walks the listing."""
    import numpy as np
    import pyarrow.compute as pc

    uids = listing.column("series_uid")
    admitted = _admits(listing, scope)
    if pc.all(admitted).as_py() is not False:
        index = np.arange(listing.num_rows)
    else:
        index = np.flatnonzero(_np(admitted))
        uids = uids.take(index)
    first = _np(pc.index_in(uids, value_set=uids)) == np.arange(len(index))
    return index[first], uids, index


def _collections(listing: pa.Table, rows: np.ndarray[Any, Any]) -> set[str]:
    import pyarrow.compute as pc

    column = listing.column("collection")
    if len(rows) < listing.num_rows:
        column = column.take(rows)
    return set(pc.unique(column).to_pylist())


def _fp_columns(listing: pa.Table) -> pa.Table:
    names = ["image_count", "file_size", "version_token", "max_submission", "date_released"]
    return listing.select(names)


def _np(column: Any) -> np.ndarray[Any, Any]:
    import numpy as np

    if not len(column):
        return np.zeros(0, dtype=column.type.to_pandas_dtype())
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _admits(table: pa.Table, scope: PlanScope) -> pa.ChunkedArray:
    """:meth:`PlanScope.admits` of every listing row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = pc.is_valid(table.column("series_uid"))
    if scope.collections is not None:
        ok = pc.and_(ok, _is_in(table.column("collection"), scope.collections))
    if scope.modalities:
        ok = pc.and_(ok, _is_in(table.column("modality"), scope.modalities))
    if scope.patients:
        ok = pc.and_(ok, _is_in(table.column("patient_id"), scope.patients))
    if scope.series_uids is not None:
        ok = pc.and_(ok, _is_in(table.column("series_uid"), scope.series_uids))
    return pc.fill_null(ok, pa.scalar(False))


def _is_in(column: pa.ChunkedArray, values: frozenset[str]) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.fill_null(pc.is_in(column, value_set=pa.array(sorted(values), pa.string())), False)
