"""`mirror query`, the Python entry points, and their errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mirror.cli import app
from mirror.errors import EXIT_USAGE, QueryError, UsageError
from mirror.index import connect, query
from mirror.index.build import build_index
from mirror.index.publish import NoIndex

runner = CliRunner()
CT_SQL = ("SELECT SeriesInstanceUID, Manufacturer, instanceCount FROM series "
          "WHERE Modality = 'CT' ORDER BY SeriesInstanceUID")


@pytest.fixture
def built(store, tree):
    build_index(store)
    return store


def _dest(store) -> str:
    return store.url


def test_python_api_returns_arrow_and_connection_has_every_view(built, tree):
    table = query(built, CT_SQL)
    assert isinstance(table, pa.Table) and table.num_rows == 3
    con = connect(built.url)
    try:
        views = {r[0] for r in con.sql("SELECT view_name FROM duckdb_views() "
                                       "WHERE NOT internal").fetchall()}
        assert {"collections", "patients", "studies", "series", "instances"} <= views
        # no errors were recorded: the empty table is still queryable, typed
        assert con.sql("SELECT count(*), max(reason) FROM errors").fetchall() == [(0, None)]
    finally:
        con.close()


def test_cli_csv_json_and_parquet_agree(built, tmp_path):
    dest = _dest(built)
    csv_out = runner.invoke(app, ["query", CT_SQL, "--dest", dest, "--format", "csv"])
    assert csv_out.exit_code == 0, csv_out.output
    from_csv = pcsv.read_csv(io.BytesIO(csv_out.stdout_bytes)).to_pylist()
    js = runner.invoke(app, ["query", CT_SQL, "--dest", dest, "--format", "json"])
    assert js.exit_code == 0
    from_json = json.loads(js.stdout)
    target = tmp_path / "out.parquet"
    pq_run = runner.invoke(app, ["query", CT_SQL, "--dest", dest, "--format", "parquet",
                                 "--out", str(target)])
    assert pq_run.exit_code == 0
    from_pq = pq.read_table(target).to_pylist()
    assert from_csv == from_json == from_pq
    assert len(from_json) == 3 and {r["Manufacturer"] for r in from_json} == {
        "SIEMENS", "GE MEDICAL SYSTEMS"}


def test_cli_table_format_prints_rows(built):
    result = runner.invoke(app, ["query", "SELECT collection_id, series_count FROM collections "
                                 "ORDER BY 1", "--dest", _dest(built)])
    assert result.exit_code == 0
    assert "lidc_idri" in result.stdout and "tcga_luad" in result.stdout
    assert "2 rows" in result.stdout


def test_list_columns_render_as_json_text_in_csv(built):
    result = runner.invoke(app, ["query", "SELECT modalities FROM collections ORDER BY "
                                 "collection_id", "--dest", _dest(built), "--format", "csv"])
    assert result.exit_code == 0
    rows = pcsv.read_csv(io.BytesIO(result.stdout_bytes)).column(0).to_pylist()
    assert [json.loads(r) for r in rows] == [["CT", "PT"], ["CT", "MR"]]


@pytest.mark.parametrize("sql", ["SELECT nope FROM series", "SELEC 1", "SELECT * FROM missing",
                                 "SELECT CAST('x' AS INTEGER)"])
def test_sql_errors_are_query_errors_with_duckdbs_message(built, sql):
    with pytest.raises(QueryError) as info:
        query(built, sql)
    assert str(info.value)
    result = runner.invoke(app, ["query", sql, "--dest", _dest(built)])
    assert result.exit_code == EXIT_USAGE
    assert "error:" in result.output


def test_cli_sql_error_exit_code_in_a_real_process(built):
    proc = subprocess.run([sys.executable, "-c", "from mirror.cli import main; main()", "query",
                           "SELECT nope FROM series", "--dest", _dest(built)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == EXIT_USAGE
    assert 'Referenced column "nope" not found' in proc.stderr


def test_no_index_yet_is_a_clear_usage_error(store):
    with pytest.raises(NoIndex, match="mirror index build"):
        query(store, "SELECT 1")
    result = runner.invoke(app, ["query", "SELECT 1", "--dest", store.url])
    assert result.exit_code == EXIT_USAGE and "no index" in result.output


def test_unknown_snapshot_and_empty_sql(built):
    with pytest.raises(NoIndex):
        query(built, "SELECT 1", snapshot="19990101T000000000000Z-abcdef")
    with pytest.raises(UsageError):
        query(built, "   ")


def test_parquet_format_needs_out(built):
    result = runner.invoke(app, ["query", "SELECT 1", "--dest", _dest(built),
                                 "--format", "parquet"])
    assert result.exit_code == EXIT_USAGE


def test_query_path_does_not_import_dask_or_pandas(built):
    code = ("import sys; from mirror.index import query; "
            f"t = query({built.url!r}, 'SELECT count(*) FROM instances'); "
            "print(t.column(0)[0].as_py(), 'dask' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == ["16", "False", "False"]
