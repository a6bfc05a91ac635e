"""The ``volumes`` table: OME-Zarr stacks written by the converter, current content only."""

from __future__ import annotations

import os

import pytest
from index_tree import commit_series, make_spec

from mirror.convert import convert_series
from mirror.index import query
from mirror.index.build import build_index
from mirror.storage.port import Store

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


class _RefusingFs:
    """An fsspec filesystem that lists ``_zarr/`` one level at a time, never inside a store."""

    def __init__(self, inner: object, calls: list[str], finds: list[str]) -> None:
        self.inner, self.calls, self.finds = inner, calls, finds

    def ls(self, path: str, **kw: object) -> object:
        assert ".ome.zarr" not in path, f"listed inside a Zarr store: {path}"
        self.calls.append(path)
        return self.inner.ls(path, **kw)  # type: ignore[attr-defined]

    def find(self, path: str, **kw: object) -> object:
        assert "/_zarr" not in path and not path.endswith("_zarr"), f"recursive listing: {path}"
        self.finds.append(path)
        return self.inner.find(path, **kw)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        if name in {"walk", "glob", "du", "expand_path"}:
            raise AssertionError(f"recursive listing through fs.{name}")
        return getattr(self.inner, name)


class NoChunkListing:
    """A Store that fails any listing that could reach a chunk key under ``_zarr/``."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.lists, self.ls_calls, self.finds = inner, [], [], []

    def list(self, prefix: str = ""):
        assert prefix and not prefix.startswith("_zarr"), f"recursive listing of {prefix!r}"
        self.lists.append(prefix)
        return self.inner.list(prefix)

    def filesystem(self):
        fs, root = self.inner.filesystem()
        return _RefusingFs(fs, self.ls_calls, self.finds), root

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_volumes_come_from_root_metadata_without_listing_chunks(store, tree, monkeypatch):
    ct = [s for s in tree.values() if s.modality == "CT"][:2]
    for sidecar in ct:
        convert_series(store, sidecar)
    chunks = [k for k in store.list("_zarr/") if not k.endswith("zarr.json")]
    assert len(chunks) >= 2  # there are chunk keys a recursive listing would walk
    walks: list[str] = []  # a local store's sidecars are found by walking its folders
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, **kw: walks.append(str(top)) or real_walk(top, **kw))
    guarded = NoChunkListing(store)
    report = build_index(guarded)  # type: ignore[arg-type]
    assert report.series == len(tree)
    rows = query(store, "SELECT SeriesInstanceUID, shape FROM volumes ORDER BY 1").to_pylist()
    assert [r["SeriesInstanceUID"] for r in rows] == sorted(s.series_uid for s in ct)
    # collection folders and the snapshots area are listed; _zarr only one level at a time
    assert not [top for top in walks if "_zarr" in top] and not guarded.finds
    assert {os.path.basename(top) for top in walks} >= {"LIDC-IDRI", "TCGA-LUAD"}
    assert {p.split("/")[0] for p in guarded.lists} <= {"_index"}
    zarr_ls = sorted(p.split("/_zarr", 1)[1] for p in guarded.ls_calls if "/_zarr" in p)
    assert zarr_ls == ["", *sorted({f"/{s.collection}" for s in ct})]


def test_volume_rows_names_stores_without_listing_inside_them(store, tree):
    """``mirror.convert.volume_rows`` (the public reader) finds stores as the index build
    does: ``_zarr/`` and its collection folders one level each, then each root zarr.json."""
    from mirror.convert import volume_rows

    ct = [s for s in tree.values() if s.modality == "CT"][:2]
    for sidecar in ct:
        convert_series(store, sidecar)
    guarded = NoChunkListing(store)
    rows = volume_rows(guarded)  # type: ignore[arg-type]
    assert sorted({r["series_uid"] for r in rows}) == sorted(s.series_uid for s in ct)
    assert not guarded.lists and not guarded.finds
    assert all(".ome.zarr" not in p for p in guarded.ls_calls)  # never inside a store
