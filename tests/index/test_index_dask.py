"""The build on a real multi-process Dask cluster gives the same index as the inline path."""

from __future__ import annotations

import pytest
from index_tree import commit_series, make_spec
from typer.testing import CliRunner

from mirror.cli import app
from mirror.config import EMBEDDED_DASK_CONFIG
from mirror.index import query
from mirror.index.build import build_index
from mirror.index.cluster import dask_client
from mirror.storage import open_store

pytestmark = pytest.mark.slow
TABLE_SQL = {
    "instances": "SELECT * EXCLUDE (file_path) FROM instances ORDER BY SOPInstanceUID",
    "series": "SELECT * EXCLUDE (sidecar_stamp) FROM series ORDER BY SeriesInstanceUID",  # per copy
    "studies": "SELECT * FROM studies ORDER BY StudyInstanceUID",
    "collections": "SELECT * FROM collections ORDER BY collection_id",
}


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as dask:
        yield dask


def test_two_worker_processes_match_the_inline_build(client, store, tree, tmp_path):
    inline = open_store(str(tmp_path / "inline"))
    for sidecar in tree.values():
        for key in store.list(sidecar.path + "/"):
            inline.put_bytes(key, store.get_bytes(key))
    build_index(inline)
    assert len(client.scheduler_info()["workers"]) == 2
    report = build_index(store, client=client, batch_files=3)  # many small tasks
    assert report.extracted == len(tree)
    for table, sql in TABLE_SQL.items():
        assert query(store, sql).to_pylist() == query(inline, sql).to_pylist(), table


def test_cli_index_build_on_an_existing_scheduler(client, store, tree):
    address = client.scheduler.address
    result = CliRunner().invoke(app, ["index", "build", "--dest", store.url, "--scheduler", address])
    assert result.exit_code == 0, result.output
    assert f"{len(tree)} series ({len(tree)} read" in result.output
    commit_series(store, make_spec("NEW", "N1", 1, slices=2))
    result = CliRunner().invoke(app, ["index", "build", "--dest", store.url, "--scheduler", address])
    assert result.exit_code == 0 and f"1 read, {len(tree)} carried" in result.output
    assert query(store, "SELECT count(*) FROM series WHERE collection_id = 'new'").column(0)[
        0].as_py() == 1


def _worker_settings() -> tuple[object, ...]:
    import dask

    return tuple(dask.config.get(key) for key in EMBEDDED_DASK_CONFIG)


def test_embedded_worker_processes_run_with_the_quiet_settings(client):
    # The nannies must hand the settings to the worker processes they start: a profiler
    # or a 20 ms tick left on there costs the parse its CPU (EMBEDDED_DASK_CONFIG).
    settings = client.run(_worker_settings)
    assert len(settings) == 2
    assert set(settings.values()) == {tuple(EMBEDDED_DASK_CONFIG.values())}
