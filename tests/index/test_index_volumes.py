"""The ``volumes`` table: OME-Zarr stacks written by the converter, current content only."""

from __future__ import annotations

import pytest
from index_tree import commit_series, make_spec

from mirror.convert import convert_series
from mirror.index import query
from mirror.index.build import build_index

pytestmark = pytest.mark.slow


def test_volumes_join_series_and_drop_stale_conversions(store, tree):
    ct = [s for s in tree.values() if s.modality == "CT"][:2]
    for sidecar in ct:
        assert convert_series(store, sidecar).status == "converted"
    build_index(store)
    rows = query(store, "SELECT v.SeriesInstanceUID, v.shape, v.axes, v.regular, v.collection_id, "
                        "s.instanceCount FROM volumes v JOIN series s USING (SeriesInstanceUID) "
                        "ORDER BY 1").to_pylist()
    assert [r["SeriesInstanceUID"] for r in rows] == sorted(s.series_uid for s in ct)
    for row in rows:
        assert row["shape"][0] == row["instanceCount"] and row["shape"][1:] == [128, 128]
        assert row["axes"] == ["z", "y", "x"] and row["regular"] is True
    # new content for one converted series, not reconverted yet: its volume is stale
    old = ct[0]
    spec = make_spec(old.collection, old.patient_id, 5, slices=2, version=2)
    spec.series_uid, spec.study_uid = old.series_uid, old.study_uid
    store.delete_prefix(old.path + "/")
    commit_series(store, spec)
    build_index(store)
    left = query(store, "SELECT SeriesInstanceUID FROM volumes").column(0).to_pylist()
    assert left == [ct[1].series_uid]
