"""Ledger schema versions: a ledger made by release 0.1.0 (no user_version) opens, keeps every
row, and takes later migration steps; a newer ledger is refused; a failing step changes nothing.

``data/ledger_0.1.0.sql`` is the iterdump of a real 0.1.0 ledger (tiny preset mirrored, then
one series withdrawn with ``--full``).
"""

from __future__ import annotations

import sqlite3
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
        return {name: sql or "" for name, sql in conn.execute("SELECT name, sql FROM sqlite_schema")}
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
    # source in version 4)
    assert _rows(old_ledger) == [{"md5_hierarchy": "", "source": ""} | row for row in rows_before]


def _rows(path: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM series ORDER BY series_uid").fetchall()
        return [{k: row[k] for k in row.keys() if k != "path"} for row in rows]
    finally:
        conn.close()
