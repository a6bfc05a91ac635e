"""Header extraction equals pydicom's reading across pydicom's own corpus of real files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from index_expect import pydicom_value

from mirror.index.extract import header_values
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
