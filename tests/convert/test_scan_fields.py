"""The scan's fast value access gives the same headers as plain pydicom Dataset access."""

from __future__ import annotations

from pathlib import Path

import convert_corpus as cc
import pydicom
import pytest
from pydicom import dcmread
from pydicom.data.data_manager import external_data_sources

from mirror.convert import scan


def _scan(path: Path):
    with open(path, "rb") as fp:
        return scan.scan_instance(path.name, fp)


def _files(tmp_path: Path) -> list[Path]:
    # local files only: pydicom's own and pydicom-data's (get_testdata_files would download)
    roots = [Path(pydicom.__file__).parent / "data" / "test_files"]
    roots += [Path(src.data_path) for src in external_data_sources().values()]
    files = sorted(f for root in roots for f in root.rglob("*.dcm"))
    corpus = [cc.regular(tmp_path / "r", n=3), cc.implicit(tmp_path / "i"), cc.pet_per_slice(tmp_path / "p"),
              cc.temporal(tmp_path / "t", phases=2, n=2), cc.multi_echo(tmp_path / "e")]  # fmt: skip
    return files + [f for folder in corpus for f in sorted(folder.iterdir())]


def test_fast_fields_equal_dataset_access(tmp_path, monkeypatch):
    files = _files(tmp_path)
    assert len(files) > 100
    fast = [_scan(f) for f in files]
    monkeypatch.setattr(scan, "Fields", lambda ds: ds)
    slow = [_scan(f) for f in files]
    assert fast == slow
    assert sum(isinstance(r, list) for r in fast) > 50


@pytest.mark.parametrize("keyword", ["RescaleSlope", "PixelSpacing", "ImageType", "Rows"])
def test_empty_plain_values_read_as_pydicom_reads_them(tmp_path, keyword):
    ds = cc.ct_slice(0, series="empty", ipp=(0, 0, 0))
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    plain = dcmread(path, stop_before_pixels=True)
    plain[keyword].value = None
    plain.save_as(path, enforce_file_format=True)
    fresh = dcmread(path, stop_before_pixels=True)
    assert scan.Fields(dcmread(path, stop_before_pixels=True)).get(keyword) == fresh.get(keyword)
