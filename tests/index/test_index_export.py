"""Cohort export: .tcia manifests and verified copies of the selected series."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from mirror.cli import app
from mirror.errors import EXIT_USAGE, ChecksumMismatch, QueryError, UsageError
from mirror.index.build import build_index
from mirror.index.export import export_cohort, select
from mirror.layout import SIDECAR_NAME, SeriesSidecar
from mirror.storage import open_store
from mirror.sync.manifest import read_manifest

runner = CliRunner()
CT_SIEMENS = "Modality = 'CT' AND Manufacturer = 'SIEMENS'"


@pytest.fixture
def built(store, tree):
    build_index(store)
    return store


def _expected(tree, pred) -> list[str]:
    return sorted(uid for uid, s in tree.items() if pred(s))


def test_manifest_round_trips_through_the_sync_manifest_reader(built, tree, tmp_path):
    target = tmp_path / "cohort.tcia"
    report = export_cohort(built, CT_SIEMENS, str(target))
    uids = read_manifest(target)
    assert report.series == len(uids) == 2
    lidc = [u for u, s in tree.items() if s.collection == "LIDC-IDRI" and s.modality == "CT"]
    assert set(lidc) < set(uids)
    text = target.read_text()
    assert text.startswith("downloadServerUrl=") and "manifestVersion=3.0\n" in text
    assert "noOfrRetry=4\n" in text and text.endswith(uids[-1] + "\n")
    assert f"databasketId={target.name}\n" in text


def test_cli_export_manifest_and_bad_predicate(built, tmp_path):
    target = tmp_path / "all.tcia"
    ok = runner.invoke(app, ["export", "--dest", built.url, "--where", "instanceCount > 2",
                             "--to", str(target)])
    assert ok.exit_code == 0, ok.output
    assert len(read_manifest(target)) == 3
    bad = runner.invoke(app, ["export", "--dest", built.url, "--where", "nope = 1",
                              "--to", str(target)])
    assert bad.exit_code == EXIT_USAGE and "nope" in bad.output


def test_predicate_errors_and_empty_selection(built, tmp_path):
    with pytest.raises(QueryError):
        select(built, "Modality = ")
    with pytest.raises(UsageError, match="no series match"):
        export_cohort(built, "Modality = 'US'", str(tmp_path / "x.tcia"))
    with pytest.raises(UsageError, match="unknown export format"):
        export_cohort(built, "true", str(tmp_path / "x"), fmt="zarr-nope")
    # a trailing comment cannot swallow the closing parenthesis
    assert len(select(built, "Modality = 'MR' -- only MR")) == 1


def _tree_digest(store, prefix: str) -> dict[str, str]:
    return {k: hashlib.md5(store.get_bytes(k)).hexdigest() for k in store.list(prefix)}


def test_dicom_export_copies_verified_series_with_sidecar_last(built, tree, tmp_path):
    target = open_store(str(tmp_path / "cohort"))
    report = export_cohort(built, "collection_id = 'tcga_luad'", target.url, fmt="dicom")
    chosen = [s for s in tree.values() if s.collection == "TCGA-LUAD"]
    assert (report.series, report.copied, report.skipped) == (3, 3, 0)
    assert report.files == sum(s.image_count for s in chosen)
    for sidecar in chosen:
        copied = SeriesSidecar.from_json(target.get_bytes(f"{sidecar.path}/{SIDECAR_NAME}"))
        assert copied == sidecar
        assert _tree_digest(target, sidecar.path + "/") == _tree_digest(built, sidecar.path + "/")
    assert not [k for k in target.list("") if k.startswith("LIDC-IDRI/")]
    # the copy is itself a mirror that can be indexed and queried
    build_index(target)
    again = export_cohort(built, "collection_id = 'tcga_luad'", target.url, fmt="dicom")
    assert (again.copied, again.skipped) == (0, 3)


def test_dicom_export_refuses_corrupt_source_and_leaves_no_committed_series(built, tree, tmp_path):
    sidecar = next(s for s in tree.values() if s.modality == "MR")
    victim = f"{sidecar.path}/{sidecar.instances[0].name}"
    data = bytearray(built.get_bytes(victim))
    data[-1] ^= 0xFF
    built.put_bytes(victim, bytes(data))
    target = open_store(str(tmp_path / "cohort"))
    with pytest.raises(ChecksumMismatch):
        export_cohort(built, "Modality = 'MR'", target.url, fmt="dicom")
    assert not target.exists(f"{sidecar.path}/{SIDECAR_NAME}")


def test_dicom_export_replaces_an_older_copy(built, tree, tmp_path):
    target = open_store(str(tmp_path / "cohort"))
    sidecar = next(s for s in tree.values() if s.modality == "MR")
    target.put_bytes(f"{sidecar.path}/stale.dcm", b"old")
    old = SeriesSidecar.from_json(sidecar.to_json())
    target.put_bytes(f"{sidecar.path}/{SIDECAR_NAME}",
                     old.to_json().replace(sidecar.instances[0].md5.encode(), b"0" * 32))
    report = export_cohort(built, "Modality = 'MR'", target.url, fmt="dicom")
    assert report.copied == 1
    assert not target.exists(f"{sidecar.path}/stale.dcm")
    assert SeriesSidecar.from_json(target.get_bytes(f"{sidecar.path}/{SIDECAR_NAME}")) == sidecar


def test_dicom_export_to_the_source_is_refused(built):
    with pytest.raises(UsageError):
        export_cohort(built, "true", built.url, fmt="dicom")
