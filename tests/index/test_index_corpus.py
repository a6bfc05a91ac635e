"""Header extraction equals pydicom's reading across pydicom's own corpus of real files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from index_expect import pydicom_value
from pydicom.dataelem import RawDataElement

from mirror.index.extract import header_values
from mirror.index.rawvalues import Unsupported
from mirror.index.schema import ELEMENTS

pytestmark = pytest.mark.slow


def _corpus() -> list[Path]:
    """pydicom's bundled test files and the pydicom-data package's, from disk only.

    ``pydicom.data.get_testdata_files`` may try to download missing files; tests stay offline.
    """
    import pydicom.data

    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # the pydicom-data distribution

        roots.append(Path(data_store.__file__).parent)
    except ImportError:
        pass
    return sorted(p for root in roots for p in root.rglob("*.dcm"))


def test_extraction_matches_pydicom_on_the_whole_test_corpus():
    checked = files = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _corpus():
            try:
                ours = pydicom.dcmread(path, stop_before_pixels=True)
                theirs = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # files pydicom itself cannot open are not the subject here
                continue
            row, problems = header_values(ours)
            flagged = {keyword for keyword, _ in problems}
            files += 1
            for element in ELEMENTS:
                if element.keyword in flagged:
                    assert row[element.keyword] is None
                    continue
                expected = pydicom_value(theirs, element)
                assert row[element.keyword] == expected, (path, element.keyword)
                checked += expected is not None
    assert files > 100 and checked > 3000


def _raw_count(ds: pydicom.Dataset) -> int:
    return sum(type(v) is RawDataElement for v in ds._dict.values())


def _all_through_pydicom(*_args: object) -> None:
    raise Unsupported("test: every element through pydicom")


def test_raw_decoding_gives_the_rows_and_problems_of_pydicoms_reading(monkeypatch):
    """The fast raw-bytes path changes nothing: same values, same problems, every file."""
    from mirror.index import extract

    decoded_fast = files = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in _corpus():
            try:
                fast_ds = pydicom.dcmread(path, stop_before_pixels=True)
                slow_ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            fast = header_values(fast_ds)
            with monkeypatch.context() as patch:
                patch.setattr(extract, "column_value", _all_through_pydicom)
                slow = header_values(slow_ds)
            assert fast == slow, path
            files += 1
            # pydicom converts what it reads in place; what the fast path decoded stays raw
            decoded_fast += _raw_count(fast_ds) - _raw_count(slow_ds)
    assert files > 100 and decoded_fast > 20 * files


def test_header_prefix_reading_equals_reading_the_whole_file(tmp_path):
    """Files longer than the 64 KiB prefix, with short and with long headers."""
    from pydicom.data import get_testdata_file

    from mirror.index.extract import HEADER_PREFIX, read_header

    short = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    short.PixelData = bytes(2 * HEADER_PREFIX)  # pixels cross the prefix, header does not
    long = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for name, ds in (("short", short), ("long", long)):
        path = tmp_path / f"{name}.dcm"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the long value is written as UN: still a header
            if name == "long":
                ds.ImageComments = "x" * (HEADER_PREFIX + 10)  # the header crosses the prefix
            ds.save_as(path, enforce_file_format=True)
        with path.open("rb") as fh:
            got = read_header(fh)
        want = pydicom.dcmread(path, stop_before_pixels=True)
        assert got == want and "PixelData" not in got, name
        assert got.ImageComments == want.get("ImageComments"), name
