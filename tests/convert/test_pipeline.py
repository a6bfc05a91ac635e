"""Store-backed, incremental conversion; the volumes rows; Dask; the CLI."""

from __future__ import annotations

import json

import convert_corpus as cc
import numpy as np
import pytest
import zarr
from convert_mirror import commit_folder
from typer.testing import CliRunner

from mirror.cli import app
from mirror.convert import convert_series, open_series, volume_rows
from mirror.convert.pipeline import convert_dest, convert_many, read_marker
from mirror.storage import open_store


@pytest.fixture
def local(tmp_path):
    return open_store(str(tmp_path / "dest"))


def test_convert_is_incremental_on_content_hash(tmp_path, local):
    sidecar = commit_folder(local, cc.regular(tmp_path / "a", n=10))
    first = convert_series(local, sidecar)
    assert first.status == "converted" and first.written_stacks == 1
    assert first.zarr_prefix == f"_zarr/SIM-COLL/{sidecar.series_uid}.ome.zarr"
    assert convert_series(local, sidecar).status == "unchanged"
    assert convert_series(local, sidecar, force=True).status == "converted"
    # new content (one slice fewer) -> new content_hash -> reconverted
    folder = tmp_path / "a"
    sorted(folder.iterdir())[0].unlink()
    local.delete_prefix(sidecar.path)
    changed = commit_folder(local, folder, version=2)
    again = convert_series(local, changed)
    assert again.status == "converted"
    assert read_marker(local, again.zarr_prefix)["dicom"]["source"]["content_hash"] == changed.content_hash
    volume = open_series(str(tmp_path / "dest" / again.zarr_prefix))
    assert volume.sizes["z"] == 10  # the removed slice is a missing slot or an end slice
    assert volume.attrs["dicom"]["schema"] == "tcia-mirror/dicom-volume/1"


def test_volume_rows_list_written_stacks_of_committed_stores_only(tmp_path, local):
    a = commit_folder(local, cc.two_orientations(tmp_path / "orient"))
    b = commit_folder(local, cc.gantry_tilt(tmp_path / "tilt"))
    convert_series(local, a)
    result_b = convert_series(local, b)
    rows = volume_rows(local)
    assert sorted((r["series_uid"], r["stack_id"]) for r in rows) == sorted(
        [(a.series_uid, 0), (a.series_uid, 1), (b.series_uid, 0)]
    )
    tilt = next(r for r in rows if r["series_uid"] == b.series_uid)
    assert tilt["tilt_deg"] == pytest.approx(20.0, abs=1e-3)
    assert tilt["content_hash"] == b.content_hash and tilt["dtype"] == "int16"
    assert tilt["levels"] == 1 and tilt["axes"] == ["z", "y", "x"]
    # a crash after the arrays but before the marker: invisible
    local.delete(f"{result_b.zarr_prefix}/zarr.json")
    assert {r["series_uid"] for r in volume_rows(local)} == {a.series_uid}
    assert convert_series(local, b).status == "converted"


def test_memory_store_through_fsspec(tmp_path):
    store = open_store(f"memory://{tmp_path.name}")
    sidecar = commit_folder(store, cc.temporal(tmp_path / "dce"))
    result = convert_series(store, sidecar)
    assert result.status == "converted"
    root = zarr.open_group(store.zarr_store(result.zarr_prefix, read_only=True), mode="r")
    assert root["s0"].shape == (3, 8, 32, 32)
    assert volume_rows(store)[0]["fourth_dim"] == "temporal"
    store.delete_prefix("SIM-COLL")
    store.delete_prefix("_zarr")
    assert list(store.list()) == []


def test_in_process_convert_dest_isolates_a_broken_series(tmp_path, local):
    good = commit_folder(local, cc.regular(tmp_path / "good", n=6))
    bad = commit_folder(local, cc.regular(tmp_path / "bad", n=6, z0=50.0), collection="OTHER")
    local.delete(f"{bad.path}/{bad.instances[0].name}")  # sidecar lists a file that is gone
    results = convert_dest(str(tmp_path / "dest"), workers=0)
    by_uid = {r.series_uid: r for r in results}
    assert by_uid[good.series_uid].status == "converted"
    assert by_uid[bad.series_uid].status == "failed"
    assert "ObjectNotFound" in by_uid[bad.series_uid].reason


@pytest.mark.slow
def test_dask_local_cluster_converts_in_worker_processes(tmp_path, local):
    sidecars = [commit_folder(local, cc.regular(tmp_path / f"s{i}", n=5 + i, z0=10.0 * i)) for i in range(3)]
    broken = commit_folder(local, cc.regular(tmp_path / "broken", n=3, z0=-90.0), collection="X")
    local.delete(f"{broken.path}/{broken.instances[1].name}")
    results = convert_many(local, [*sidecars, broken], workers=2)
    by_uid = {r.series_uid: r.status for r in results}
    assert by_uid.pop(broken.series_uid) == "failed"
    assert list(by_uid.values()) == ["converted"] * 3
    for sidecar in sidecars:
        row = next(r for r in volume_rows(local) if r["series_uid"] == sidecar.series_uid)
        stored = zarr.open_array(str(tmp_path / "dest" / row["store_path"] / "s0"), mode="r")[...]
        assert stored.shape[0] == sidecar.image_count
        assert np.all(stored[:, 0, 0] > -1024)


@pytest.mark.slow
def test_cli_convert_selected_series_then_unchanged(tmp_path, local):
    a = commit_folder(local, cc.regular(tmp_path / "a", n=4))
    commit_folder(local, cc.regular(tmp_path / "b", n=4, z0=80.0))
    runner = CliRunner()
    args = ["convert", "--dest", str(tmp_path / "dest"), "--series", a.series_uid, "--workers", "0", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [(line["series_uid"], line["status"]) for line in lines] == [(a.series_uid, "converted")]
    second = runner.invoke(app, args)
    assert json.loads(second.stdout.splitlines()[0])["status"] == "unchanged"
    unknown = runner.invoke(app, ["convert", "--dest", str(tmp_path / "dest"), "--series", "1.2.3", "--workers", "0"])
    assert unknown.exit_code == 2


@pytest.mark.parametrize("bad", ["zarr", "_a/b", "../_x", "_", "_a b"])
def test_out_prefix_must_be_one_reserved_style_folder(tmp_path, bad):
    from mirror.errors import UsageError

    with pytest.raises(UsageError, match="--out"):
        convert_dest(str(tmp_path / "dest"), out_prefix=bad, workers=0)
