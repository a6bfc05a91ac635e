"""``--source auto`` merging, with literals: IDC wins per SeriesInstanceUID, NBIA fills the
rest, and the collection keeps one spelling whichever source listed the series."""

from __future__ import annotations

import pytest

from mirror.archive.combined import merge
from mirror.archive.port import SeriesRecord
from mirror.archive.sources import open_source
from mirror.errors import UsageError


def rec(uid: str, collection: str, source: str = "", token: str = "") -> SeriesRecord:
    return SeriesRecord(uid, "1.2", "P", collection, version_token=token, source=source)


def test_idc_wins_and_nbia_fills_the_rest() -> None:
    idc = [rec("1.1", "TCGA-LUAD", "idc", "u-1")]
    nbia = [rec("1.1", "TCGA-LUAD"), rec("1.3", "TCGA-LUAD")]
    merged = {r.series_uid: r for r in merge(idc, nbia, "TCGA-LUAD")}
    assert (merged["1.1"].source, merged["1.1"].version_token) == ("idc", "u-1")
    assert merged["1.3"].source == "nbia"


def test_idc_records_take_nbias_spelling_of_the_collection() -> None:
    merged = merge([rec("1.1", "TCGA LUAD", "idc", "u")], [rec("1.2", "TCGA-LUAD")], None)
    assert {r.collection for r in merged} == {"TCGA-LUAD"}
    asked = merge([rec("1.1", "tcga_gbm", "idc", "u")], [], "TCGA-GBM")
    assert asked[0].collection == "TCGA-GBM"


def test_version_token_is_the_fingerprint_stamp() -> None:
    nbia, idc = rec("1.1", "C"), rec("1.1", "C", "idc", "u-2")
    assert nbia.fingerprint != idc.fingerprint
    assert idc.fingerprint[2] == "uuid:u-2"
    assert rec("1.1", "C", "idc", "u-3").fingerprint != idc.fingerprint


def test_unknown_source_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--source"):
        open_source("s3", "http://127.0.0.1:1/")
