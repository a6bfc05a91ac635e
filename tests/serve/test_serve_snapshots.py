"""A running server picks up new index snapshots without a restart; S3 served the same way."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from serve_tree import STUDY_A, SeriesDef, commit, instance_bytes, series_defs

from mirror.index.build import build_index
from mirror.serve import ServeConfig
from mirror.serve.server import serve_in_thread
from mirror.storage import open_store


def test_new_snapshot_is_served_without_restart(tmp_path: Path):
    store = open_store(str(tmp_path / "dest"))
    first = series_defs()["ct"]
    commit(store, first)
    build_index(store)
    with serve_in_thread(store, ServeConfig(dest=store.url, port=0, refresh_seconds=0)) as run:
        client = DICOMwebClient(run.base_url + "/dicomweb")
        assert len(client.search_for_series()) == 1
        added = SeriesDef(STUDY_A, "MR_small.dcm", 5, count=2)
        sidecar = commit(store, added)
        assert len(client.search_for_series()) == 1  # committed, not yet indexed
        build_index(store)
        uids = {s["0020000E"]["Value"][0] for s in client.search_for_series()}
        assert uids == {first.uid, added.uid}
        assert len(client.retrieve_series(STUDY_A.uid, added.uid)) == 2
        # withdrawn with --delete: moved to the attic, then the next index drops it
        store.move_prefix(sidecar.path + "/", f"_attic/run-9/{sidecar.path}/")
        r = httpx.get(f"{run.base_url}/dicomweb/studies/{STUDY_A.uid}/series/{added.uid}")
        assert r.status_code == 404  # the commit marker is gone before the index knows
        build_index(store)
        assert len(client.search_for_series()) == 1


@pytest.mark.slow
def test_s3_destination_served_the_same_way(make_s3_store):
    store = make_s3_store(tag="serve")
    defs = series_defs()
    for name in ("ct", "j2k"):
        commit(store, defs[name])
    build_index(store)
    with serve_in_thread(store, ServeConfig(dest=store.url, port=0)) as run:
        client = DICOMwebClient(run.base_url + "/dicomweb")
        studies = client.search_for_studies(search_filters={"PatientName": "doe*"})
        assert [s["0020000D"]["Value"][0] for s in studies] == [STUDY_A.uid]
        ct, j2k = defs["ct"], defs["j2k"]
        meta = client.retrieve_series_metadata(ct.study.uid, ct.uid)
        assert len(meta) == 5
        assert client.retrieve_bulkdata(meta[0]["7FE00010"]["BulkDataURI"])
        want = instance_bytes(ct, 3)
        sop = pydicom.dcmread(io.BytesIO(want)).SOPInstanceUID
        got = client.retrieve_instance(ct.study.uid, ct.uid, sop)
        assert got.PixelData == pydicom.dcmread(io.BytesIO(want)).PixelData
        mf = pydicom.dcmread(io.BytesIO(instance_bytes(j2k, 0)))
        frames = client.retrieve_instance_frames(j2k.study.uid, j2k.uid, mf.SOPInstanceUID, [4])
        assert frames == [pydicom.encaps.get_frame(mf.PixelData, 3, number_of_frames=10)]
        jpeg = client.retrieve_instance_rendered(ct.study.uid, ct.uid, sop,
                                                 media_types=("image/jpeg",))
        assert jpeg[:2] == b"\xff\xd8"


def test_converted_volume_is_linked_and_served(tmp_path: Path):
    from mirror.convert import convert_series

    store = open_store(str(tmp_path / "dest"))
    ct = series_defs()["ct"]
    sidecar = commit(store, ct)
    result = convert_series(store, sidecar, threads=1)
    assert result.written_stacks == 1
    build_index(store)
    with serve_in_thread(store, ServeConfig(dest=store.url, port=0)) as run:
        page = httpx.get(run.base_url + "/collections/tcga_luad").text
        link = re.search(r"href='(/zarr/[^']+)'", page).group(1)
        meta = httpx.get(run.base_url + link)
        assert meta.status_code == 200 and meta.json()["zarr_format"] == 3
        assert httpx.get(run.base_url + "/zarr/_index/LATEST").status_code == 404
        key = next(k for k in store.list("_zarr/") if not k.endswith(".json"))
        chunk = httpx.get(f"{run.base_url}/zarr/{key}")
        assert chunk.status_code == 200 and chunk.content == store.get_bytes(key)
        # the series thumbnail comes from the pyramid and looks like the middle file's
        series = f"{run.base_url}/dicomweb/studies/{STUDY_A.uid}/series/{ct.uid}"
        thumb = httpx.get(series + "/thumbnail?viewport=64,64")
        assert thumb.headers["x-rendered-from"] == "ome-zarr"
        sop = pydicom.dcmread(io.BytesIO(instance_bytes(ct, 2))).SOPInstanceUID
        plain = httpx.get(f"{series}/instances/{sop}/thumbnail?viewport=64,64")
        assert "x-rendered-from" not in plain.headers
        a, b = (np.asarray(Image.open(io.BytesIO(r.content)), float) for r in (thumb, plain))
        assert a.shape == b.shape == (64, 64) and np.abs(a - b).mean() < 8


def test_series_retrieve_streams_without_holding_the_series(tmp_path: Path):
    """An 80 MB series answer never has more than a few MB allocated at once (tracemalloc
    sees every Python allocation of the server thread and of this client)."""
    import tracemalloc

    store = open_store(str(tmp_path / "dest"))
    big = SeriesDef(STUDY_A, "CT_small.dcm", 3, count=40)
    pixels = np.zeros((1024, 1024), np.int16)
    big.extra = {"Rows": 1024, "Columns": 1024, "PixelData": pixels.tobytes()}
    commit(store, big)
    build_index(store)
    with serve_in_thread(store, ServeConfig(dest=store.url, port=0)) as run:
        url = f"{run.base_url}/dicomweb/studies/{STUDY_A.uid}/series/{big.uid}"
        tracemalloc.start()
        try:
            total = 0
            with httpx.stream("GET", url) as r:
                for chunk in r.iter_raw(1 << 16):
                    total += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total > 40 * 2 * 1024 * 1024
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB for a {total / 2**20:.0f} MB answer"
