from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zarr

from mirror.convert.series import SeriesOutcome, convert_source
from mirror.convert.source import DirSource

Convert = Callable[[Path], tuple[Path, SeriesOutcome]]


@pytest.fixture
def convert(tmp_path: Path) -> Convert:
    """Convert a folder of DICOM files into ``<tmp>/<folder name>.ome.zarr``."""

    def run(folder: Path) -> tuple[Path, SeriesOutcome]:
        out = tmp_path / f"{folder.name}.ome.zarr"
        outcome = convert_source(
            DirSource(str(folder)), zarr.storage.LocalStore(str(out)), name=folder.name
        )
        return out, outcome

    return run
