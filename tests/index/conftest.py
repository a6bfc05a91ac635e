"""Fixtures for the index tests: a destination laid out as sync commits it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from index_tree import SeriesSpec, commit_series, make_spec

from mirror.layout import SeriesSidecar
from mirror.storage import open_store
from mirror.storage.port import Store

PET_EXTRA: dict[str, object] = {
    "Modality": "PT",
    "Units": "BQML",
    "DecayCorrection": "START",
    "CorrectedImage": ["ATTN", "DECY"],
}


def pet_spec(collection: str, patient: str) -> SeriesSpec:
    return make_spec(collection, patient, 7, slices=2, extra=dict(PET_EXTRA))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(str(tmp_path / "dest"))


@pytest.fixture
def tree(store: Store) -> dict[str, SeriesSidecar]:
    """Two collections, CT (two vendors), MR and PET series: {series_uid: sidecar}."""
    specs = [
        make_spec("TCGA-LUAD", "TCGA-05-4244", 1, slices=4),
        make_spec("TCGA-LUAD", "TCGA-05-4244", 2, slices=3, manufacturer="GE MEDICAL SYSTEMS"),
        make_spec("TCGA-LUAD", "TCGA-05-4250", 1, template="MR_small.dcm", slices=2),
        make_spec("LIDC-IDRI", "LIDC-IDRI-0001", 1, slices=5),
        pet_spec("LIDC-IDRI", "LIDC-IDRI-0002"),
    ]
    return {s.series_uid: commit_series(store, s) for s in specs}


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI points the root handler at CliRunner's stream; put the old ones back."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
