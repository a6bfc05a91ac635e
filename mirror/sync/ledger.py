"""The SQLite ledger: the driver's only state (tasks never touch it).

WAL + ``synchronous=FULL``: every completed series is one short transaction that survives a
power cut. The ledger must live on local disk (SQLite WAL does not work over network file
systems); for S3 destinations it lives under the user's state directory.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from mirror.archive.port import SeriesRecord
from mirror.errors import StoreError
from mirror.layout import SeriesSidecar
from mirror.sync import ledger_read
from mirror.sync.ledger_read import DEFAULT_PATH_SQL, ENTRY_COLUMNS, PENDING_SQL, to_entry
from mirror.sync.migrate import Step, migrate, split_statements
from mirror.sync.plan import HeldSlice, LedgerEntry, PlanScope

log = logging.getLogger(__name__)

# Version 1 of the schema, frozen: what the first release created. Never edit it; change the
# schema by appending a step to MIGRATIONS (an existing ledger then gets it on open).
SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN
        ('planned', 'in_progress', 'present', 'failed', 'withdrawn')),
    fp_image_count INTEGER NOT NULL DEFAULT 0,
    fp_file_size INTEGER NOT NULL DEFAULT 0,
    fp_max_submission TEXT NOT NULL DEFAULT '',
    fp_date_released TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL DEFAULT '',
    series_version INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error_class TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT '',
    first_seen_run TEXT NOT NULL DEFAULT '',
    last_changed_run TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_state ON series (state);
CREATE INDEX IF NOT EXISTS series_collection ON series (collection);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    mode TEXT NOT NULL,
    exit_code INTEGER,
    watermark_before TEXT,
    watermark_after TEXT,
    counts_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    watermark TEXT,
    last_full_run TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
"""

_SERIES_COLUMNS = (
    "series_uid, collection, patient_id, study_uid, modality, path, state, fp_image_count,"
    " fp_file_size, fp_max_submission, fp_date_released, content_hash, series_version,"
    " n_instances, bytes, attempts, last_error_class, last_error, first_seen_run,"
    " last_changed_run, updated_at, md5_hierarchy"
)
# Version 3 rebuilds ``series`` WITHOUT ROWID (the UID is the key: no second copy of it in an
# autoindex), stores '' for a path that is the default layout of the row's own fields
# (ledger_read.PATH_SQL reads it back), and drops the state and collection indexes, which a
# million rows pay for on every write: status scans instead, the pending rows have a partial
# index, and ``collections`` names every collection held (filled here, kept by each insert).
SERIES_COMPACT: Step = (
    """CREATE TABLE series_v3 (
    series_uid TEXT NOT NULL PRIMARY KEY,
    collection TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN
        ('planned', 'in_progress', 'present', 'failed', 'withdrawn')),
    fp_image_count INTEGER NOT NULL DEFAULT 0,
    fp_file_size INTEGER NOT NULL DEFAULT 0,
    fp_max_submission TEXT NOT NULL DEFAULT '',
    fp_date_released TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL DEFAULT '',
    series_version INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error_class TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT '',
    first_seen_run TEXT NOT NULL DEFAULT '',
    last_changed_run TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    md5_hierarchy TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID""",
    f"INSERT INTO series_v3 ({_SERIES_COLUMNS}) SELECT"  # noqa: S608
    " series_uid, collection, patient_id, study_uid, modality,"
    f" CASE WHEN path = {DEFAULT_PATH_SQL} THEN '' ELSE path END, state, fp_image_count,"
    " fp_file_size, fp_max_submission, fp_date_released, content_hash, series_version,"
    " n_instances, bytes, attempts, last_error_class, last_error, first_seen_run,"
    " last_changed_run, updated_at, md5_hierarchy"
    " FROM series ORDER BY series_uid",
    "DROP TABLE series",
    "ALTER TABLE series_v3 RENAME TO series",
    f"CREATE INDEX series_pending ON series (state) WHERE {PENDING_SQL}",
    "INSERT OR IGNORE INTO collections (name) SELECT DISTINCT collection FROM series",
)

# What an events row records (``events.kind`` is the index). "added" and "unchanged" are no
# longer written (version 5): ``first_seen_run`` says the first, the run's counts the second.
EVENT_KINDS = ("added", "updated", "unchanged", "failed", "withdrawn", "reconciled",
               "verify_failed")  # fmt: skip
_EVENT_CODE = " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(EVENT_KINDS))
_EPOCH_SQL = "coalesce(CAST(strftime('%s', {}) AS INTEGER), 0)"
_RUN_SQL = "coalesce((SELECT id FROM run_names WHERE run_names.run_id = {}), 0)"
# Version 5 makes the history compact (issue 13: the events table was half of a million-series
# ledger): runs are numbered once in ``run_names`` and rows carry the number; times are epoch
# seconds; the per-series "added" and "unchanged" events go (see EVENT_KINDS), and so does an
# "updated" in the run that first saw the series (its first fetch).
HISTORY_COMPACT: Step = (
    "CREATE TABLE run_names (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE)",
    "INSERT OR IGNORE INTO run_names (run_id) SELECT run_id FROM runs"
    " UNION SELECT first_seen_run FROM series UNION SELECT last_changed_run FROM series"
    " UNION SELECT run_id FROM events",
    """CREATE TABLE events_v5 (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL,
    series_uid TEXT NOT NULL,
    kind INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    at INTEGER NOT NULL
)""",
    "INSERT INTO events_v5 (run, series_uid, kind, detail, at) SELECT"  # noqa: S608
    f" {_RUN_SQL.format('e.run_id')}, e.series_uid, CASE e.event {_EVENT_CODE} ELSE 0 END,"
    f" e.detail, {_EPOCH_SQL.format('e.at')} FROM events AS e"
    " WHERE e.event NOT IN ('added', 'unchanged') AND NOT (e.event = 'updated' AND e.run_id ="
    " coalesce((SELECT first_seen_run FROM series WHERE series_uid = e.series_uid), ''))"
    " ORDER BY e.id",
    "DROP TABLE events",
    "ALTER TABLE events_v5 RENAME TO events",
    """CREATE TABLE series_v5 (
    series_uid TEXT NOT NULL PRIMARY KEY,
    collection TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN
        ('planned', 'in_progress', 'present', 'failed', 'withdrawn')),
    fp_image_count INTEGER NOT NULL DEFAULT 0,
    fp_file_size INTEGER NOT NULL DEFAULT 0,
    fp_max_submission TEXT NOT NULL DEFAULT '',
    fp_date_released TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL DEFAULT '',
    series_version INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error_class TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT '',
    first_seen_run INTEGER NOT NULL DEFAULT 0,
    last_changed_run INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    md5_hierarchy TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID""",
    f"INSERT INTO series_v5 ({_SERIES_COLUMNS}, source) SELECT"  # noqa: S608
    " series_uid, collection, patient_id, study_uid, modality, path, state, fp_image_count,"
    " fp_file_size, fp_max_submission, fp_date_released, content_hash, series_version,"
    " n_instances, bytes, attempts, last_error_class, last_error,"
    f" {_RUN_SQL.format('first_seen_run')}, {_RUN_SQL.format('last_changed_run')},"
    f" {_EPOCH_SQL.format('updated_at')}, md5_hierarchy, source FROM series ORDER BY series_uid",
    "DROP TABLE series",
    "ALTER TABLE series_v5 RENAME TO series",
    f"CREATE INDEX series_pending ON series (state) WHERE {PENDING_SQL}",
)

# MIGRATIONS[i] takes a ledger from version i + 1 to i + 2 (mirror.sync.migrate). Adding a
# column is one entry: ("ALTER TABLE series ADD COLUMN name TEXT NOT NULL DEFAULT ''",).
MIGRATIONS: tuple[Step, ...] = (
    # 2: the series' NBIA MD5-hierarchy hash, for --full's top-down comparison (0.2.0)
    ("ALTER TABLE series ADD COLUMN md5_hierarchy TEXT NOT NULL DEFAULT ''",),
    # 3: series WITHOUT ROWID, compact paths, a partial pending index (0.3.0; issue 13)
    SERIES_COMPACT,
    # 4: which source served the held copy ('nbia', 'idc'; '' = before sources existed)
    ("ALTER TABLE series ADD COLUMN source TEXT NOT NULL DEFAULT ''",),
    # 5: compact history: numbered runs, epoch times, no per-series routine events (issue 13)
    HISTORY_COMPACT,
)
SCHEMA_VERSION = 1 + len(MIGRATIONS)
# A ledger upgraded across a rebuild (versions 3 and 5) is vacuumed once to give the space back.
_COMPACT_VERSION = 5


def _vacuum(conn: sqlite3.Connection, target: Path) -> None:
    """Give back the pages a rebuild step freed (once). Another process holding the
    ledger open only postpones that: the space stays free inside the file, nothing is lost."""
    try:
        # From here on the file can give free pages back without a full VACUUM (compact()).
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        log.warning("ledger %s upgraded but not compacted yet (%s)", target, exc)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    started_at: str
    finished_at: str | None
    mode: str
    exit_code: int | None
    watermark_before: str | None
    watermark_after: str | None
    counts: dict[str, Any]


class Ledger:
    """One SQLite database; open it with :meth:`open` (a context manager closes it)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Ledger:
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(target, timeout=30.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the ledger at {target}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            found = migrate(conn, split_statements(SCHEMA), MIGRATIONS)
            if found < _COMPACT_VERSION:
                _vacuum(conn, target)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, OSError | sqlite3.Error):
                raise StoreError(f"cannot open the ledger at {target}: {exc}") from exc
            raise  # LedgerTooNew: a usage error, already clear
        return cls(conn, str(target))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # A full or failing state dir (SQLITE_FULL, SQLITE_IOERR) is a destination-class
        # error: StoreError, exit 4, never a traceback.
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except (sqlite3.OperationalError, OSError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot write the ledger {self.path}: {exc}") from exc

    def conn_pragmas(self) -> tuple[str, int]:
        """(journal_mode, synchronous) as SQLite reports them (2 = FULL)."""
        mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = self._conn.execute("PRAGMA synchronous").fetchone()[0]
        return str(mode), int(sync)

    # --- reading -------------------------------------------------------------------------

    def entries(self) -> dict[str, LedgerEntry]:
        """Every row (``ops verify``, tests): a sync reads :meth:`held_slice` instead."""
        rows = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM series")  # noqa: S608
        return {row[0]: to_entry(row) for row in rows}

    def pending_entries(self) -> dict[str, LedgerEntry]:
        """Rows planned, in progress or failed, or submitted without an outcome."""
        return ledger_read.pending(self._conn)

    def held_slice(self, remote: Iterable[SeriesRecord], scope: PlanScope) -> HeldSlice:
        """The rows ``plan_slice`` reads for this listing, queried in place."""
        return ledger_read.held_slice(self._conn, remote, scope)

    def held_columns(self, outside: Iterable[SeriesRecord], scope: PlanScope) -> Any:
        """The rows ``held_slice`` reads, as the Arrow table the columnar plan joins
        (``outside``: listed series outside the fully listed collections)."""
        return ledger_read.held_columns(self._conn, outside, scope)

    def entries_for(self, uids: Sequence[str]) -> dict[str, LedgerEntry]:
        """Whole rows of the given series (those absent from the ledger are left out)."""
        return ledger_read.entries_for(self._conn, uids)

    def entry(self, series_uid: str) -> LedgerEntry | None:
        row = self._conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM series WHERE series_uid = ?",  # noqa: S608
            (series_uid,),
        ).fetchone()
        return to_entry(row) if row else None

    def withdrawn_uids(self) -> frozenset[str]:
        """Series withdrawn upstream (one column of the matching rows, not every entry)."""
        rows = self._conn.execute("SELECT series_uid FROM series WHERE state = 'withdrawn'")
        return frozenset(row[0] for row in rows)

    def counts_by_state(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT state, count(*) FROM series GROUP BY state")
        return {state: n for state, n in rows}

    def counts_by_collection(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        rows = self._conn.execute(
            "SELECT collection, state, count(*) FROM series GROUP BY collection, state"
        )
        for collection, state, n in rows:
            out.setdefault(collection, {})[state] = n
        return out

    def bytes_present(self) -> int:
        row = self._conn.execute("SELECT coalesce(sum(bytes), 0) FROM series WHERE state='present'")
        return int(row.fetchone()[0])

    def watermarks(self) -> dict[str, date | None]:
        rows = self._conn.execute("SELECT name, watermark FROM collections")
        return {name: date.fromisoformat(wm) if wm else None for name, wm in rows}

    def mirrored_collections(self) -> list[str]:
        # Every insert into series names its collection here too (since version 3), so this
        # never scans a million rows.
        rows = self._conn.execute("SELECT name FROM collections")
        return sorted(r[0] for r in rows)

    def last_run(self, *, successful: bool = False) -> RunRow | None:
        row = self._conn.execute(
            "SELECT run_id, started_at, finished_at, mode, exit_code, watermark_before,"
            " watermark_after, counts_json FROM runs WHERE (? = 0 OR exit_code = 0)"
            " ORDER BY started_at DESC, rowid DESC LIMIT 1",
            (int(successful),),
        ).fetchone()
        if row is None:
            return None
        run_id, started, finished, mode, code, before, after, counts = row
        return RunRow(run_id, started, finished, mode, code, before, after, json.loads(counts))

    def events(self, series_uid: str) -> list[tuple[str, str, str]]:
        """``(run_id, event, detail)`` of one series, oldest first: "added" in the run that
        first saw it, then what the ledger keeps per series (every change after that run,
        failures, withdrawals, reconciliations, verify findings; not the re-fetches that
        found the same content, which only the runs' counts keep)."""
        added = self._conn.execute(
            "SELECT run_id, 'added', '' FROM series JOIN run_names ON run_names.id = first_seen_run"
            " WHERE series_uid = ?",
            (series_uid,),
        ).fetchall()
        rows = self._conn.execute(
            "SELECT run_id, kind, detail FROM events JOIN run_names ON run_names.id = run"
            " WHERE series_uid = ? ORDER BY events.id",
            (series_uid,),
        )
        return [(r[0], r[1], r[2]) for r in added] + [(r[0], EVENT_KINDS[r[1]], r[2]) for r in rows]

    # --- runs ----------------------------------------------------------------------------

    def begin_run(self, run_id: str, mode: str, started_at: str) -> None:
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO runs (run_id, started_at, mode) VALUES (?, ?, ?)",
                (run_id, started_at, mode),
            )

    def finish_run(
        self,
        run_id: str,
        *,
        exit_code: int,
        counts: dict[str, Any],
        watermark_before: date | None,
        advance: Iterable[str] = (),
        run_date: date | None = None,
    ) -> date | None:
        """Close the run; only a run that exits 0 moves the given collections' watermarks."""
        advanced = run_date if exit_code == 0 and run_date is not None else None
        names = sorted(set(advance)) if advanced else []
        with self._tx() as tx:
            for name in names:
                tx.execute(
                    "INSERT INTO collections (name, watermark) VALUES (?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET watermark = excluded.watermark",
                    (name, advanced.isoformat()),  # type: ignore[union-attr]
                )
            tx.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, watermark_before = ?,"
                " watermark_after = ?, counts_json = ? WHERE run_id = ?",
                (
                    utcnow(),
                    exit_code,
                    watermark_before.isoformat() if watermark_before else None,
                    advanced.isoformat() if names and advanced else None,
                    json.dumps(counts, sort_keys=True),
                    run_id,
                ),
            )
        self.compact()
        return advanced if names else None

    def compact(self) -> None:
        """Give the file's free pages back (rows that grew moved; a run frees thousands of
        pages at scale). Cheap: it touches only free pages; a ledger made before it could
        (``auto_vacuum`` off) is left as it is. A busy ledger just waits for the next run."""
        try:
            # executescript steps it to the end (execute() frees one page per call)
            self._conn.executescript("PRAGMA incremental_vacuum;")
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.OperationalError as exc:
            log.info("ledger %s not compacted this time (%s)", self.path, exc)

    def remember_collections(self, names: Iterable[str]) -> None:
        """Make selected collections 'mirrored' even before their first series lands."""
        with self._tx() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO collections (name) VALUES (?)", [(n,) for n in names]
            )

    # --- series transitions (one short transaction each) ------------------------------------

    def mark_in_progress(self, items: Iterable[tuple[SeriesRecord, str]], run_id: str) -> None:
        """Before submit: attempts += 1, state = in_progress (a crash leaves it for retry)."""
        now = _epoch()
        with self._tx() as tx:
            ref = _run_ref(tx, run_id)
            for record, path in items:
                _insert_if_absent(tx, record, path, ref, now)
                tx.execute(
                    "UPDATE series SET state = CASE WHEN state = 'present' THEN 'present'"
                    " ELSE 'in_progress' END, attempts = attempts + 1, updated_at = ?"
                    " WHERE series_uid = ?",
                    (now, record.series_uid),
                )

    def record_committed(
        self, record: SeriesRecord, sidecar: SeriesSidecar, run_id: str, *, changed: bool
    ) -> None:
        now = _epoch()
        fp = record.fingerprint
        with self._tx() as tx:
            ref = _run_ref(tx, run_id)
            _insert_if_absent(tx, record, sidecar.path, ref, now)
            first_seen = tx.execute(
                "SELECT first_seen_run FROM series WHERE series_uid = ?", (record.series_uid,)
            ).fetchone()[0]
            tx.execute(
                # The path is stored compact in the same write (no grow-then-shrink churn):
                # '' when it is the default layout of the row's collection and new fields.
                "UPDATE series SET state = 'present', path = CASE WHEN ? = collection || '/'"
                " || ? || '/' || ? || '/' || series_uid THEN '' ELSE ? END, modality = ?,"
                " patient_id = ?, study_uid = ?, source = ?,"
                " fp_image_count = ?, fp_file_size = ?, fp_max_submission = ?,"
                " fp_date_released = ?, content_hash = ?, series_version = ?,"
                " n_instances = ?, bytes = ?, attempts = 0, last_error_class = '',"
                " last_error = '', updated_at = ?, md5_hierarchy = ?,"
                " last_changed_run = CASE WHEN ? THEN ? ELSE last_changed_run END"
                " WHERE series_uid = ?",
                (
                    sidecar.path,
                    record.patient_id,
                    record.study_uid,
                    sidecar.path,
                    record.modality,
                    record.patient_id,
                    record.study_uid,
                    record.source or "nbia",
                    *fp,
                    sidecar.content_hash,
                    sidecar.series_version,
                    sidecar.image_count,
                    sidecar.total_size,
                    now,
                    sidecar.md5_hierarchy,
                    changed,
                    ref,
                    record.series_uid,
                ),
            )
            if changed and first_seen != ref:  # a first fetch is the "added" of its run
                _event(tx, ref, record.series_uid, "updated", "", now=now)

    def record_failed(
        self, record: SeriesRecord, path: str, run_id: str, error_class: str, message: str
    ) -> None:
        now = _epoch()
        with self._tx() as tx:
            ref = _run_ref(tx, run_id)
            _insert_if_absent(tx, record, path, ref, now)
            tx.execute(
                "UPDATE series SET state = 'failed', last_error_class = ?, last_error = ?,"
                " updated_at = ? WHERE series_uid = ?",
                (error_class, message[:2000], now, record.series_uid),
            )
            _event(
                tx, ref, record.series_uid, "failed", f"{error_class}: {message}"[:2000], now=now
            )

    def record_withdrawn(
        self, series_uid: str, run_id: str, detail: str, *, gone: bool = False
    ) -> None:
        """``gone``: the folder left the mirror (attic), so nothing is held any more; a
        tombstone keeps its counts and a later ``--delete`` moves it."""
        now = _epoch()
        with self._tx() as tx:
            ref = _run_ref(tx, run_id)
            tx.execute(
                "UPDATE series SET state = 'withdrawn', last_changed_run = ?, updated_at = ?,"
                " n_instances = CASE WHEN ? THEN 0 ELSE n_instances END,"
                " bytes = CASE WHEN ? THEN 0 ELSE bytes END"
                " WHERE series_uid = ?",
                (ref, now, gone, gone, series_uid),
            )
            _event(tx, ref, series_uid, "withdrawn", detail, now=now)

    def record_reconciled(self, sidecar: SeriesSidecar, run_id: str, *, changed: bool) -> None:
        """A committed series an earlier run never recorded: take it from its sidecar."""
        now = _epoch()
        with self._tx() as tx:
            ref = _run_ref(tx, run_id)
            tx.execute(
                "UPDATE series SET state = 'present', path = ?, modality = ?,"
                " fp_image_count = ?, fp_file_size = ?, fp_max_submission = ?,"
                " fp_date_released = ?, content_hash = ?, series_version = ?, n_instances = ?,"
                " bytes = ?, attempts = 0, last_error_class = '', last_error = '',"
                " updated_at = ?, md5_hierarchy = ?,"
                " last_changed_run = CASE WHEN ? THEN ? ELSE last_changed_run END"
                " WHERE series_uid = ?",
                (
                    sidecar.path,
                    sidecar.modality,
                    *sidecar.fingerprint,
                    sidecar.content_hash,
                    sidecar.series_version,
                    sidecar.image_count,
                    sidecar.total_size,
                    now,
                    sidecar.md5_hierarchy,
                    changed,
                    ref,
                    sidecar.series_uid,
                ),
            )
            _compact_path(tx, sidecar.series_uid)
            _set_source(tx, sidecar.series_uid, str(sidecar.extra.get("source", "")))
            _event(tx, ref, sidecar.series_uid, "reconciled", f"committed by {sidecar.run_id}",
                   now=now)  # fmt: skip

    def set_md5_hierarchy(self, series_uid: str, value: str) -> None:
        """Adopt the archive's series hash for a held copy recorded before it was kept."""
        with self._tx() as tx:
            tx.execute(
                "UPDATE series SET md5_hierarchy = ? WHERE series_uid = ?", (value, series_uid)
            )

    def mark_broken(self, entry: LedgerEntry, run_id: str, detail: str) -> bool:
        """``verify`` found it damaged: the next sync fetches it again.

        Only if the row is still as ``entry`` read it (False otherwise): a sync that took
        the series up meanwhile re-fetches and checks it itself, and a commit verify saw
        half done is no damage. Marking it then would send a repaired copy to the attic.
        """
        now = _epoch()
        as_read = (entry.state, entry.content_hash, entry.series_version, entry.attempts)
        with self._tx() as tx:
            marked = tx.execute(
                "UPDATE series SET state = 'failed', last_error_class = 'VerifyFailed',"
                " last_error = ?, updated_at = ? WHERE series_uid = ? AND state = ?"
                " AND content_hash = ? AND series_version = ? AND attempts = ?",
                (detail, now, entry.series_uid, *as_read),
            ).rowcount
            if marked:
                _event(tx, _run_ref(tx, run_id), entry.series_uid, "verify_failed", detail, now=now)
        return bool(marked)

    def upsert_from_sidecar(self, sidecar: SeriesSidecar) -> None:
        """``ledger rebuild``: a sidecar in the destination proves a present series."""
        now = _epoch()
        fp = sidecar.fingerprint
        with self._tx() as tx:
            ref = _run_ref(tx, sidecar.run_id)
            tx.execute(
                "INSERT OR REPLACE INTO series (series_uid, collection, patient_id, study_uid,"
                " modality, path, state, fp_image_count, fp_file_size, fp_max_submission,"
                " fp_date_released, content_hash, series_version, n_instances, bytes,"
                " first_seen_run, last_changed_run, updated_at, md5_hierarchy)"
                " VALUES (?, ?, ?, ?, ?, ?, 'present', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sidecar.series_uid,
                    sidecar.collection,
                    sidecar.patient_id,
                    sidecar.study_uid,
                    sidecar.modality,
                    _stored_path(
                        sidecar.path,
                        sidecar.collection,
                        sidecar.patient_id,
                        sidecar.study_uid,
                        sidecar.series_uid,
                    ),
                    *fp,
                    sidecar.content_hash,
                    sidecar.series_version,
                    sidecar.image_count,
                    sidecar.total_size,
                    ref,
                    ref,
                    now,
                    sidecar.md5_hierarchy,
                ),
            )
            tx.execute("INSERT OR IGNORE INTO collections (name) VALUES (?)", (sidecar.collection,))
            _set_source(tx, sidecar.series_uid, str(sidecar.extra.get("source", "")))

    def sources(self) -> dict[str, str]:
        """SeriesInstanceUID -> the source that served its held copy ('' if unknown)."""
        rows = self._conn.execute("SELECT series_uid, source FROM series").fetchall()
        return {str(uid): str(src) for uid, src in rows}


def _set_source(tx: sqlite3.Connection, series_uid: str, source: str) -> None:
    """Which source served the held copy (no tag: NBIA, the default source)."""
    tx.execute("UPDATE series SET source = ? WHERE series_uid = ?", (source or "nbia", series_uid))


def _insert_if_absent(
    tx: sqlite3.Connection, record: SeriesRecord, path: str, ref: int, now: int
) -> None:
    # The fingerprint columns stay empty until the series is committed: a crash between
    # submit and commit must not make the next plan think the series is unchanged.
    cur = tx.execute(
        "INSERT OR IGNORE INTO series (series_uid, collection, patient_id, study_uid, modality,"
        " path, state, first_seen_run, last_changed_run, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?)",
        (
            record.series_uid,
            record.collection,
            record.patient_id,
            record.study_uid,
            record.modality,
            _stored_path(
                path, record.collection, record.patient_id, record.study_uid, record.series_uid
            ),
            ref,
            ref,
            now,
        ),
    )
    if cur.rowcount:
        tx.execute("INSERT OR IGNORE INTO collections (name) VALUES (?)", (record.collection,))
        # No "added" event: ``first_seen_run`` says it (``Ledger.events`` gives it back), and
        # a million of them were half the ledger.


def _stored_path(path: str, collection: str, patient_id: str, study_uid: str, uid: str) -> str:
    """What the ``path`` column holds: '' for the default layout of the row's own fields
    (``DEFAULT_PATH_SQL`` reads it back), else the path."""
    return "" if path == f"{collection}/{patient_id}/{study_uid}/{uid}" else path


def _compact_path(tx: sqlite3.Connection, uid: str) -> None:
    """Store '' for a path that is the default layout of the row's own (new) fields; call it
    after every write of ``path``, ``collection``, ``patient_id`` or ``study_uid``."""
    tx.execute(
        f"UPDATE series SET path = '' WHERE series_uid = ? AND path = {DEFAULT_PATH_SQL}",  # noqa: S608
        (uid,),
    )


def _event(
    tx: sqlite3.Connection, ref: int, uid: str, event: str, detail: str, *, now: int
) -> None:
    tx.execute(
        "INSERT INTO events (run, series_uid, kind, detail, at) VALUES (?, ?, ?, ?, ?)",
        (ref, uid, EVENT_KINDS.index(event), detail, now),
    )


def _run_ref(tx: sqlite3.Connection, run_id: str) -> int:
    """The number that stands for ``run_id`` in series and events rows (``run_names``)."""
    tx.execute("INSERT OR IGNORE INTO run_names (run_id) VALUES (?)", (run_id,))
    row = tx.execute("SELECT id FROM run_names WHERE run_id = ?", (run_id,)).fetchone()
    return int(row[0])


def _epoch() -> int:
    return int(time.time())
