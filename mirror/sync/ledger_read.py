"""Reading the ledger in place: the rows one plan needs, never a dict of every row.

At a million series a ``LedgerEntry`` per row costs close to a gigabyte and ten seconds, so
the driver asks SQLite for the slice a plan reads (:func:`held_slice`): the series listed
outside fully listed collections (a join against a temporary table of their UIDs), the
rows of fully listed collections (``--full`` needs them all: withdrawals are the rows the
listing misses), and the pending rows (a partial index). A nightly run with nothing new
reads a handful of rows.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from typing import Any, cast

from mirror.archive.port import SeriesRecord
from mirror.sync.plan import HeldSlice, LedgerEntry, PlanScope, State

# The stored path is '' when it is the default layout of the row's own fields (a third of a
# row at scale); this expression gives it back (ledger.py: _compact_path writes it).
DEFAULT_PATH_SQL = "collection || '/' || patient_id || '/' || study_uid || '/' || series_uid"
PATH_SQL = f"CASE WHEN path = '' THEN {DEFAULT_PATH_SQL} ELSE path END"

ENTRY_COLUMNS = (
    f"series_uid, collection, patient_id, study_uid, {PATH_SQL}, state, fp_image_count,"
    " fp_file_size, fp_max_submission, fp_date_released, modality, content_hash,"
    " series_version, n_instances, bytes, attempts, last_error_class, md5_hierarchy"
)
# Must read exactly as the partial index series_pending's WHERE, so SQLite uses the index.
PENDING_SQL = "(state IN ('planned', 'in_progress', 'failed') OR attempts > 0)"
_BATCH = 50_000


def to_entry(row: Sequence[Any]) -> LedgerEntry:
    # Low-cardinality strings are interned: a million rows share a few dozen objects.
    intern = sys.intern
    return LedgerEntry(
        series_uid=row[0],
        collection=intern(row[1]),
        patient_id=row[2],
        study_uid=row[3],
        path=row[4],
        state=cast(State, intern(row[5])),
        fingerprint=(int(row[6]), int(row[7]), intern(str(row[8])), intern(str(row[9]))),
        modality=intern(row[10]),
        content_hash=row[11],
        series_version=int(row[12]),
        n_instances=int(row[13]),
        bytes=int(row[14]),
        attempts=int(row[15]),
        last_error_class=intern(row[16]),
        md5_hierarchy=row[17],
    )


def pending(conn: sqlite3.Connection) -> dict[str, LedgerEntry]:
    """Rows a run may still owe work: planned, in progress, failed, or submitted without a
    recorded outcome (``attempts > 0``)."""
    rows = conn.execute(f"SELECT {ENTRY_COLUMNS} FROM series WHERE {PENDING_SQL}")  # noqa: S608
    return {row[0]: to_entry(row) for row in rows}


def held_slice(
    conn: sqlite3.Connection, remote: Iterable[SeriesRecord], scope: PlanScope
) -> HeldSlice:
    """Everything :func:`mirror.sync.plan.plan_slice` reads for this listing and scope.

    A fully listed collection is read whole, in one scan (its rows are the listed series and
    the withdrawal candidates; ``--full`` reads them all, as it must); series listed outside
    those collections (a nightly's updates) are joined by UID; pending rows come from their
    partial index.
    """
    entries = _in_collections(conn, scope) if scope.listed else {}
    outside = (r for r in remote if r.collection not in scope.listed)
    entries |= _listed(conn, outside, scope)
    entries |= pending(conn)
    return HeldSlice.of(entries, scope)


def _in_collections(conn: sqlite3.Connection, scope: PlanScope) -> dict[str, LedgerEntry]:
    # Every row of the listed collections, not only those the scope admits: a listed series
    # the scope admits may be held under another modality or patient, and still is held.
    rows = conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM series"  # noqa: S608
        " WHERE collection IN (SELECT value FROM json_each(?))",
        (json.dumps(sorted(scope.listed)),),
    )
    return _collect(rows)


def _listed(
    conn: sqlite3.Connection, remote: Iterable[SeriesRecord], scope: PlanScope
) -> dict[str, LedgerEntry]:
    _fill_listed(conn, remote, scope)
    rows = conn.execute(
        f"SELECT {ENTRY_COLUMNS} FROM temp.listed_uids JOIN series"  # noqa: S608
        " ON series.series_uid = listed_uids.uid"
    )
    return _collect(rows)


def _fill_listed(
    conn: sqlite3.Connection, remote: Iterable[SeriesRecord], scope: PlanScope
) -> None:
    """``temp.listed_uids``: the UIDs of the listed series the scope admits."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS listed_uids (uid TEXT PRIMARY KEY) WITHOUT ROWID")
    uids = (
        (r.series_uid,)
        for r in remote
        if scope.admits(r.collection, r.patient_id, r.modality, r.series_uid)
    )
    # One transaction for the fill (autocommit would make one per row); it writes only the
    # connection's temp database, so no lock is taken on the ledger itself.
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM temp.listed_uids")
        conn.executemany("INSERT OR IGNORE INTO temp.listed_uids VALUES (?)", uids)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _collect(cursor: sqlite3.Cursor) -> dict[str, LedgerEntry]:
    out: dict[str, LedgerEntry] = {}
    while batch := cursor.fetchmany(_BATCH):
        out.update((row[0], to_entry(row)) for row in batch)
    return out


# --- the columnar reconcile (mirror.sync.columnar) ------------------------------------------

# The fingerprint as one string, the way columnar.fingerprint_column joins a listing's.
_FP_SQL = (
    "CAST(fp_image_count AS INTEGER) || '|' || CAST(fp_file_size AS INTEGER) || '|' ||"
    " fp_max_submission || '|' || fp_date_released"
)
# columnar.CODES, from the state and whether a withdrawn series' files are still held.
_CODE_SQL = (
    "CASE state WHEN 'present' THEN 0 WHEN 'planned' THEN 1 WHEN 'in_progress' THEN 2"
    " WHEN 'failed' THEN 3 ELSE CASE WHEN n_instances > 0 THEN 5 ELSE 4 END END"
)
_LISTED_SQL = "collection IN (SELECT value FROM json_each(:listed))"


def _admits_sql(scope: PlanScope) -> tuple[str, dict[str, str]]:
    """:meth:`PlanScope.admits` as an SQL condition on a series row, with its parameters."""
    terms, params = ["1"], {}
    for column, values in (
        ("collection", scope.collections),
        ("modality", scope.modalities or None),
        ("patient_id", scope.patients or None),
        ("series_uid", scope.series_uids),
    ):
        if values is not None:
            terms.append(f"{column} IN (SELECT value FROM json_each(:{column}))")  # noqa: S608
            params[column] = json.dumps(sorted(values))
    return " AND ".join(terms), params


def held_columns(
    conn: sqlite3.Connection, outside: Iterable[SeriesRecord], scope: PlanScope
) -> Any:
    """The rows :func:`held_slice` reads, as :class:`mirror.sync.columnar.HeldColumns`,
    and the guards' counts summed in SQL. ``outside``: the listed series outside fully
    listed collections (joined by UID, as ``held_slice`` does).

    SQLite has no columnar interface, and a tuple of Python objects per row was half of a
    million-series ``--full``; so each batch of rows (in key order, from where the last
    one stopped) comes back as one string that Arrow splits into the columns: 3.9 s ->
    2.3 s for 1.04M rows.
    """
    import pyarrow as pa

    from mirror.sync.columnar import ADMITTED, HELD_COLUMNS, LISTED, HeldColumns

    _fill_listed(conn, (r for r in outside if r.collection not in scope.listed), scope)
    admits, params = _admits_sql(scope)
    params["listed"] = json.dumps(sorted(scope.listed))
    flags = (
        f"(CASE WHEN {_LISTED_SQL} THEN {LISTED} ELSE 0 END)"
        f" + (CASE WHEN {admits} THEN {ADMITTED} ELSE 0 END)"
    )
    # uid US fingerprint US code flags (one digit each); rows joined by RS. Neither
    # separator can occur in a UID, a date or a version token.
    line = f"series_uid || char(31) || {_FP_SQL} || char(31) || ({_CODE_SQL}) || ({flags})"
    batch = (
        f"SELECT max(uid), group_concat(line, char(30)) FROM (SELECT series_uid AS uid,"  # noqa: S608
        f" {line} AS line FROM series WHERE series_uid > :after AND ({_LISTED_SQL}"
        f" OR series_uid IN (SELECT uid FROM temp.listed_uids) OR {PENDING_SQL})"
        f" ORDER BY series_uid LIMIT {_BATCH:d})"
    )
    params["after"] = ""
    batches = []
    while (row := conn.execute(batch, params).fetchone())[0] is not None:
        params["after"] = row[0]
        batches.append(_split_rows(row[1], HELD_COLUMNS))
    counts = conn.execute(
        "SELECT collection, sum(state <> 'withdrawn'),"  # noqa: S608
        " sum(state = 'withdrawn' AND n_instances > 0) FROM series"
        f" WHERE {_LISTED_SQL} AND {admits} GROUP BY collection",
        params,
    )
    schema = pa.schema(list(zip(HELD_COLUMNS, (pa.string(), pa.string(), pa.int8(), pa.int8()),
                                strict=True)))  # fmt: skip
    return HeldColumns(
        pa.Table.from_batches(batches, schema=schema),
        {c: (int(n), int(g)) for c, n, g in counts if n or g},
    )


def _split_rows(text: str, names: Sequence[str]) -> Any:
    """``uid US fp US <code digit><flags digit>`` rows joined by RS -> a record batch."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = pc.split_pattern(pc.split_pattern(pa.array([text]), "\x1e").flatten(), "\x1f")
    tail = pc.list_element(parts, 2)
    digit = [pc.utf8_slice_codeunits(tail, i, i + 1).cast(pa.int8()) for i in (0, 1)]
    return pa.record_batch([pc.list_element(parts, 0), pc.list_element(parts, 1), *digit],
                           names=list(names))  # fmt: skip


def entries_for(conn: sqlite3.Connection, uids: Sequence[str]) -> dict[str, LedgerEntry]:
    """Whole rows of the given series (primary-key lookups, a batch at a time)."""
    out: dict[str, LedgerEntry] = {}
    for start in range(0, len(uids), _BATCH):
        rows = conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM series"  # noqa: S608
            " WHERE series_uid IN (SELECT value FROM json_each(?))",
            (json.dumps(list(uids[start : start + _BATCH])),),
        )
        out.update((row[0], to_entry(row)) for row in rows)
    return out
