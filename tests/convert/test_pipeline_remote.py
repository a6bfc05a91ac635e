"""Conversion on a real S3 API (moto on 127.0.0.1) and selection through the index (--where)."""

from __future__ import annotations

import convert_corpus as cc
import numpy as np
import pytest
import zarr
from convert_mirror import commit_folder

from mirror.convert import convert_series, volume_rows
from mirror.convert.pipeline import convert_dest
from mirror.index.build import build_index
from mirror.storage import open_store
from mirror.storage.s3 import S3Store

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(make_s3_store) -> S3Store:  # type: ignore[no-untyped-def]
    return make_s3_store(tag="convert")


def test_convert_on_s3_reads_instances_and_writes_shards_through_the_store(tmp_path, s3):
    folder = cc.regular(tmp_path / "long", n=66, rows=16, cols=16)
    sidecar = commit_folder(s3, folder)
    result = convert_series(s3, sidecar)
    assert result.status == "converted"
    keys = sorted(k for k in s3.list(result.zarr_prefix))
    assert f"{result.zarr_prefix}/zarr.json" in keys
    assert [k for k in keys if "/s0/c/" in k] == [
        f"{result.zarr_prefix}/s0/c/0/0/0", f"{result.zarr_prefix}/s0/c/1/0/0",
    ]  # two whole-slab shards (64 + 2 slices)
    root = zarr.open_group(s3.zarr_store(result.zarr_prefix, read_only=True), mode="r")
    assert root["s0"].shape == (66, 16, 16)
    assert np.all(root["s0"][65] == cc.phantom(65, 16, 16).astype(np.int16) - 1024)
    assert volume_rows(s3)[0]["series_uid"] == sidecar.series_uid
    assert convert_series(s3, sidecar).status == "unchanged"


def test_where_selects_series_through_the_index(tmp_path):
    dest = tmp_path / "dest"
    store = open_store(str(dest))
    ct = commit_folder(store, cc.regular(tmp_path / "ct", n=4))
    mr = commit_folder(store, cc.oblique(tmp_path / "mr"))
    build_index(store)
    results = convert_dest(str(dest), where="Modality = 'MR'", workers=0)
    assert [(r.series_uid, r.status) for r in results] == [(mr.series_uid, "converted")]
    assert {r["series_uid"] for r in volume_rows(store)} == {mr.series_uid}
    assert ct.series_uid not in {r.series_uid for r in results}
