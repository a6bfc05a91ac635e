"""Ledger schema versions: a ledger made by release 0.1.0 (no user_version) opens, keeps every
row, and takes later migration steps; a newer ledger is refused; a failing step changes nothing.

``data/ledger_0.1.0.sql`` is the iterdump of a real 0.1.0 ledger (tiny preset mirrored, then
one series withdrawn with ``--full``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mirror.errors import LedgerTooNew
from mirror.sync import ledger as ledger_mod
from mirror.sync.ledger import SCHEMA, SCHEMA_VERSION, Ledger
from mirror.sync.migrate import migrate, schema_version, split_statements

RELEASE_0_1_0 = Path(__file__).parent / "data" / "ledger_0.1.0.sql"
WITHDRAWN_UID = "2.25.89454113920696513889133240657412819817"
# A hypothetical later column, to exercise one more step on top of the real ones.
NOTE_COLUMN = ("ALTER TABLE series ADD COLUMN note TEXT NOT NULL DEFAULT ''",)


@pytest.fixture
def old_ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(RELEASE_0_1_0.read_text())
    conn.close()
    return path


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return schema_version(conn)
    finally:
        conn.close()


def columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute("PRAGMA table_info(series)")]
    finally:
        conn.close()


def test_release_0_1_0_ledger_opens_at_the_current_version_with_every_row(
    old_ledger: Path,
) -> None:
    assert version_of(old_ledger) == 0
    with Ledger.open(old_ledger) as ledger:
        entries = ledger.entries()
        assert len(entries) == 6
        assert ledger.counts_by_state() == {"present": 5, "withdrawn": 1}
        assert entries[WITHDRAWN_UID].state == "withdrawn"
        assert ledger.mirrored_collections() == ["Sim-Brain", "Sim-Lung"]
        last = ledger.last_run()
        assert last is not None and last.mode == "full" and last.exit_code == 0
        assert last.counts["withdrawn"] == 1
        assert {e.md5_hierarchy for e in entries.values()} == {""}  # adopted on the next --full
    assert version_of(old_ledger) == SCHEMA_VERSION
    assert "md5_hierarchy" in columns(old_ledger)


def test_a_new_ledger_is_created_at_the_current_version(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "fresh.sqlite") as ledger:
        assert ledger.entries() == {}
    assert version_of(tmp_path / "fresh.sqlite") == SCHEMA_VERSION


def test_adding_a_column_is_one_step_and_reaches_an_old_ledger(
    old_ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_mod, "MIGRATIONS", (*ledger_mod.MIGRATIONS, NOTE_COLUMN))
    with Ledger.open(old_ledger) as ledger:
        assert len(ledger.entries()) == 6
    assert "note" in columns(old_ledger)
    assert version_of(old_ledger) == SCHEMA_VERSION + 1
    conn = sqlite3.connect(old_ledger)
    assert {r[0] for r in conn.execute("SELECT note FROM series")} == {""}
    conn.close()
    with Ledger.open(old_ledger):  # opening again applies nothing twice
        pass
    assert version_of(old_ledger) == SCHEMA_VERSION + 1


def test_a_ledger_from_a_newer_release_is_refused_untouched(
    old_ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_mod, "MIGRATIONS", (*ledger_mod.MIGRATIONS, NOTE_COLUMN))
    Ledger.open(old_ledger).close()
    monkeypatch.undo()
    with pytest.raises(LedgerTooNew, match="newer than this release"):
        Ledger.open(old_ledger)
    assert version_of(old_ledger) == SCHEMA_VERSION + 1


def test_a_failing_step_rolls_back_the_whole_migration(old_ledger: Path) -> None:
    broken = (NOTE_COLUMN, ("ALTER TABLE series ADD COLUMN x TEXT", "UPDATE nowhere SET x = 1"))
    conn = sqlite3.connect(old_ledger, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, split_statements(SCHEMA), broken)
    conn.close()
    assert version_of(old_ledger) == 0
    assert "md5_hierarchy" not in columns(old_ledger) and "note" not in columns(old_ledger)
    assert "x" not in columns(old_ledger)
    with Ledger.open(old_ledger) as ledger:  # and it still opens normally afterwards
        assert len(ledger.entries()) == 6


def test_migrate_reports_the_version_it_found(old_ledger: Path) -> None:
    conn = sqlite3.connect(old_ledger, isolation_level=None)
    try:
        assert migrate(conn, split_statements(SCHEMA), (NOTE_COLUMN,)) == 0
        assert migrate(conn, split_statements(SCHEMA), (NOTE_COLUMN,)) == 2
        assert schema_version(conn) == 2
    finally:
        conn.close()


def test_cli_refuses_a_ledger_from_a_newer_release_with_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mirror.cli import app

    dest = tmp_path / "mirror"
    state = dest / "_state"
    state.mkdir(parents=True)
    conn = sqlite3.connect(state / "ledger.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    result = CliRunner().invoke(app, ["status", "--dest", str(dest)])
    assert result.exit_code == 2, result.output
    assert "newer than this release" in result.output
    assert version_of(state / "ledger.sqlite") == SCHEMA_VERSION + 5


def _schema(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return {
            name: sql or "" for name, sql in conn.execute("SELECT name, sql FROM sqlite_schema")
        }
    finally:
        conn.close()


def _stored_paths(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT series_uid, path FROM series"))
    finally:
        conn.close()


@pytest.mark.parametrize("start", [0, 2])
def test_upgrading_to_version_3_compacts_series_and_keeps_every_entry(
    old_ledger: Path, start: int
) -> None:
    """From 0.1.0 (no user_version) and from 0.2.0 (version 2, today's main): the entries
    read back the same, the table is keyed by UID alone, default paths are stored empty,
    the state and collection indexes give way to a partial pending index, and every held
    collection is in ``collections``."""
    if start:  # a version-2 ledger: the 0.1.0 dump taken through the first step only
        conn = sqlite3.connect(old_ledger, isolation_level=None)
        migrate(conn, split_statements(SCHEMA), ledger_mod.MIGRATIONS[:1])
        conn.close()
    assert version_of(old_ledger) == start
    before = _stored_paths(old_ledger)
    rows_before = _rows(old_ledger)
    with Ledger.open(old_ledger) as ledger:
        entries = ledger.entries()
        assert {uid: e.path for uid, e in entries.items()} == before
        assert ledger.counts_by_state() == {"present": 5, "withdrawn": 1}
        assert ledger.mirrored_collections() == ["Sim-Brain", "Sim-Lung"]
        assert ledger.pending_entries() == {}
    assert version_of(old_ledger) == SCHEMA_VERSION >= 3
    schema = _schema(old_ledger)
    assert "WITHOUT ROWID" in schema["series"]
    assert {"series_state", "series_collection", "sqlite_autoindex_series_1"}.isdisjoint(schema)
    assert "WHERE" in schema["series_pending"]
    assert set(_stored_paths(old_ledger).values()) == {""}  # all six use the default layout
    # every other column keeps its value (md5_hierarchy arrived empty in version 2, and
    # source in version 4; version 5 numbers the runs and counts the time in epoch seconds)
    assert _rows(old_ledger) == [{"md5_hierarchy": "", "source": ""} | row for row in rows_before]


HISTORY = ("first_seen_run", "last_changed_run", "updated_at")


def _rows(path: Path) -> list[dict[str, object]]:
    """Every series row, its history columns read back as text whatever the version."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    numbered = schema_version(conn) >= 5
    try:
        rows = conn.execute("SELECT * FROM series ORDER BY series_uid").fetchall()
        names = dict(conn.execute("SELECT id, run_id FROM run_names")) if numbered else {}
        out = []
        for row in rows:
            values = {k: row[k] for k in row.keys() if k != "path"}
            if numbered:
                for k in HISTORY[:2]:
                    values[k] = names[values[k]]
                stamp = datetime.fromtimestamp(int(values["updated_at"]), UTC)
                values["updated_at"] = stamp.isoformat(timespec="seconds")
            out.append(values)
        return out
    finally:
        conn.close()


def _events(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        if schema_version(conn) >= 5:
            return [(run, ledger_mod.EVENT_KINDS[kind], uid) for run, kind, uid in conn.execute(
                "SELECT run_id, kind, series_uid FROM events JOIN run_names ON run_names.id = run"
                " ORDER BY events.id")]  # fmt: skip
        return list(conn.execute("SELECT run_id, event, series_uid FROM events ORDER BY id"))
    finally:
        conn.close()


@pytest.mark.parametrize("start", [0, 4])
def test_upgrading_to_version_5_numbers_runs_and_keeps_only_the_telling_events(
    old_ledger: Path, start: int
) -> None:
    """From 0.1.0 and from version 4 (the previous format): every row reads back the same,
    history columns included; the events that ``first_seen_run`` or the runs' counts already
    say ("added", a first fetch's "updated") go, the rest stay with their run and time."""
    if start:
        conn = sqlite3.connect(old_ledger, isolation_level=None)
        migrate(conn, split_statements(SCHEMA), ledger_mod.MIGRATIONS[:3])
        conn.execute(  # a later change of one series: an event the new format keeps
            "INSERT INTO events (run_id, series_uid, event, detail, at) SELECT"
            " '20261207T000000Z-aaaaaa', series_uid, 'updated', '', '2026-12-07T00:00:00+00:00'"
            " FROM series WHERE series_uid = ?",
            (WITHDRAWN_UID,),
        )
        conn.close()
    assert version_of(old_ledger) == start
    rows_before, events_before = _rows(old_ledger), _events(old_ledger)
    first_seen = {r["series_uid"]: r["first_seen_run"] for r in rows_before}
    kept = [e for e in events_before if e[1] not in ("added", "unchanged")
            and not (e[1] == "updated" and e[0] == first_seen[e[2]])]  # fmt: skip
    assert [e[1] for e in kept] == ["withdrawn"] + ["updated"] * bool(start)
    with Ledger.open(old_ledger) as ledger:
        history = ledger.events(WITHDRAWN_UID)
        assert [h[1] for h in history][:2] == ["added", "withdrawn"]
        assert history[0][0] == first_seen[WITHDRAWN_UID]
        assert ledger.counts_by_state() == {"present": 5, "withdrawn": 1}
    assert version_of(old_ledger) == SCHEMA_VERSION >= 5
    assert _rows(old_ledger) == [{"md5_hierarchy": "", "source": ""} | r for r in rows_before]
    assert _events(old_ledger) == kept
    schema = _schema(old_ledger)
    assert "WITHOUT ROWID" in schema["series"] and "WHERE" in schema["series_pending"]


def test_history_after_version_5_names_each_run_once(tmp_path: Path) -> None:
    """New writes: runs are numbered once however many rows name them; a fresh series'
    first fetch and a re-fetch of the same content leave no event row."""
    from mirror.archive.port import SeriesRecord
    from mirror.layout import InstanceEntry, SeriesSidecar

    records = [SeriesRecord(f"1.2.{i}", "1.2", "P", "C", image_count=1) for i in range(3)]

    def sidecar(r: SeriesRecord) -> SeriesSidecar:
        return SeriesSidecar(
            series_uid=r.series_uid, study_uid=r.study_uid, patient_id=r.patient_id,
            collection=r.collection, modality="", path=f"C/P/1.2/{r.series_uid}",
            instances=(InstanceEntry("1.dcm", "0" * 32, 10),), fingerprint=r.fingerprint,
            series_version=1, run_id="r1", synced_at="2024-01-01T00:00:00+00:00",
            tool_version="t",
        )  # fmt: skip

    with Ledger.open(tmp_path / "l.sqlite") as led:
        led.mark_in_progress([(r, f"C/P/1.2/{r.series_uid}") for r in records], "r1")
        for r in records:
            led.record_committed(r, sidecar(r), "r1", changed=True)
            led.record_committed(r, sidecar(r), "r2", changed=False)
        assert led.events("1.2.0") == [("r1", "added", "")]
        led.record_committed(records[0], sidecar(records[0]), "r3", changed=True)
        assert [e[:2] for e in led.events("1.2.0")] == [("r1", "added"), ("r3", "updated")]
    conn = sqlite3.connect(tmp_path / "l.sqlite")
    assert conn.execute("SELECT run_id FROM run_names ORDER BY id").fetchall() == [
        ("r1",),
        ("r2",),
        ("r3",),
    ]
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    conn.close()


def test_a_ledger_gives_free_pages_back_at_the_end_of_a_run(
    tmp_path: Path, old_ledger: Path
) -> None:
    """New and upgraded ledgers can vacuum incrementally; finish_run hands free pages back."""
    for path in (tmp_path / "new.sqlite", old_ledger):
        with Ledger.open(path) as ledger:
            conn = ledger._conn
            assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
            conn.executemany(
                "INSERT INTO events (run, series_uid, kind, detail, at) VALUES (0, ?, 3, ?, 0)",
                [(f"1.2.{i}", "x" * 500) for i in range(2000)],
            )
            conn.execute("DELETE FROM events WHERE detail = ?", ("x" * 500,))
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] > 100
            ledger.begin_run("r9", "full", "2026-12-06T00:00:00+00:00")
            ledger.finish_run("r9", exit_code=0, counts={}, watermark_before=None)
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
