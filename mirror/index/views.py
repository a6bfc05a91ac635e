"""Read side: DuckDB views over the current (or a chosen) index snapshot.

Kept light for cold starts: no dask, no pandas; duckdb and pyarrow load on first use.
Views read exactly the files the pointer lists, so a build running at the same time (or
one that crashed before its pointer swap) is never visible.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from mirror.errors import QueryError, UsageError
from mirror.index.publish import Pointer, require_pointer
from mirror.index.schema import PARTITION_COLUMN, TABLES, table_columns
from mirror.storage.port import Store

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

log = logging.getLogger(__name__)


def open_dest(dest: str | Store) -> Store:
    """A Store for ``dest`` (a Store passes through; a path or URL is opened).

    For ``s3://`` URLs the endpoint comes from ``MIRROR_S3_ENDPOINT_URL`` like for sync.
    """
    if not isinstance(dest, str):
        return dest
    from mirror.storage import open_store

    if dest.startswith("s3://"):  # mirror.config is only needed here; keep cold start short
        from mirror.config import store_options_from_env

        return open_store(dest, **store_options_from_env(dest))
    return open_store(dest)


def _path_for(store: Store) -> tuple[Any, str]:
    """``(fsspec fs to register or None, prefix DuckDB reads keys under)``."""
    fs, root = store.filesystem()
    base = root.rstrip("/")
    if store.capabilities.local:
        return None, base
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return fs, f"{protocol}://{base.split('://', 1)[-1]}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(table: str, paths: list[str]) -> str:
    files = ", ".join(_quote(p) for p in paths)  # keys come from our own pointer, quoted
    return (f"CREATE OR REPLACE VIEW {table} AS SELECT {PARTITION_COLUMN}, * EXCLUDE "  # noqa: S608
            f"({PARTITION_COLUMN}) FROM read_parquet([{files}], hive_partitioning = true, "
            f"hive_types = {{'{PARTITION_COLUMN}': VARCHAR}})")


_SQL_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "date": "DATE",
              "timestamp": "TIMESTAMPTZ", "strs": "VARCHAR[]", "ints": "BIGINT[]",
              "floats": "DOUBLE[]", "bool": "BOOLEAN"}


def empty_view_sql(table: str) -> str:
    """A typed view with no rows, for a table the snapshot holds no file of.

    Built from the column spec rather than registering an empty Arrow table, because
    ``register`` makes DuckDB import pandas (a second of cold start).
    """
    columns = ", ".join(f"CAST(NULL AS {_SQL_TYPES[kind]}) AS {name}"
                        for name, kind in table_columns(table))
    return f"CREATE OR REPLACE VIEW {table} AS SELECT {columns} WHERE false"


def tables_named_in(sql: str) -> tuple[str, ...]:
    """Index tables whose name appears as a word in ``sql`` (all of them if none does).

    Binding a view reads Parquet footers, so a one-shot query only creates the views it
    can possibly use; a name that is only a column or a string literal costs one extra view.
    """
    words = set(re.findall(r"[a-z_]+", sql.lower()))
    named = tuple(t for t in TABLES if t in words)
    return named or TABLES


def attach(
    con: duckdb.DuckDBPyConnection, store: Store, pointer: Pointer,
    tables: tuple[str, ...] = TABLES,
) -> None:
    """Create one view per index table (or per table in ``tables``) on ``con``."""
    fs, prefix = _path_for(store)
    if fs is not None:
        con.register_filesystem(fs)
    for table in tables:
        keys = pointer.tables.get(table, ())
        if keys:
            con.execute(view_sql(table, [f"{prefix}/{k}" for k in keys]))
        else:
            con.execute(empty_view_sql(table))


def connect(
    dest: str | Store, *, snapshot: str | None = None, tables: tuple[str, ...] = TABLES
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the index tables of ``dest`` as views."""
    import duckdb

    store = open_dest(dest)
    pointer = require_pointer(store, snapshot)
    con = duckdb.connect()
    try:
        attach(con, store, pointer, tables)
    except duckdb.Error as exc:
        con.close()
        raise QueryError(f"cannot open index snapshot {pointer.snapshot_id}: {exc}") from exc
    log.debug("index snapshot %s of %s", pointer.snapshot_id, store.url)
    return con


def run_sql(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    """Execute ``sql``; DuckDB's complaint becomes a :class:`QueryError` (exit code 2)."""
    import duckdb

    if not sql.strip():
        raise UsageError("empty SQL")
    try:
        relation = con.sql(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from exc
    if relation is None:
        raise QueryError("the statement returns no rows (only queries are supported)")
    return relation


def fetch(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    import duckdb

    try:
        return relation.to_arrow_table()
    except duckdb.Error as exc:  # errors found while running, e.g. a failed cast
        raise QueryError(str(exc)) from exc


def query(dest: str | Store, sql: str, *, snapshot: str | None = None) -> pa.Table:
    """Run one SQL query over the index of ``dest`` and return the result as Arrow."""
    con = connect(dest, snapshot=snapshot, tables=tables_named_in(sql))
    try:
        return fetch(run_sql(con, sql))
    finally:
        con.close()
