"""IDC names, ETags, listings, endpoints and release diffs: pure functions, hostile input."""

from __future__ import annotations

import pytest

from mirror.archive.idc.changes import Revision, diff_releases
from mirror.archive.idc.checks import check_bytes
from mirror.archive.idc.listing import IdcSeries
from mirror.archive.idc.names import (
    check_series_uuid,
    collection_id,
    etag_kind,
    instance_name,
)
from mirror.archive.idc.wire import Endpoint, endpoint_from, parse_listing
from mirror.errors import ArchiveProtocolError, IncompleteSeries, UnsafeArchiveEntry, UsageError

UUID = "3ceb2ea4-cabd-4823-8289-cfa25ce66f97"
NAME = "55cf95d4-ff83-4b55-934b-b708dd6705df.dcm"


@pytest.mark.parametrize("name", ["TCGA-LUAD", "tcga_luad", "TCGA LUAD", " tcga-luad "])
def test_collection_names_either_spelling(name: str) -> None:
    assert collection_id(name) == "tcga_luad"


def test_empty_collection_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        collection_id(" - ")


@pytest.mark.parametrize(
    "bad", ["", "3CEB2EA4-CABD-4823-8289-CFA25CE66F97", "../x", UUID + "/", "x" * 36]
)
def test_series_uuid_refusals(bad: str) -> None:
    with pytest.raises(UnsafeArchiveEntry):
        check_series_uuid(bad)


def test_instance_name() -> None:
    assert instance_name(UUID, f"{UUID}/{NAME}") == NAME


@pytest.mark.parametrize(
    "key",
    [f"{UUID}/../{NAME}", f"/{UUID}/{NAME}", f"{UUID}/a/{NAME}", f"{UUID}/{NAME}.exe", f"{UUID}/",
     f"{UUID}{NAME}", NAME, f"{UUID}/{NAME[:-4]}", f"{UUID}/{NAME.upper()}"],
)  # fmt: skip
def test_instance_name_refusals(key: str) -> None:
    with pytest.raises(UnsafeArchiveEntry):
        instance_name(UUID, key)


@pytest.mark.parametrize(
    ("etag", "kind"),
    [('"' + "a" * 32 + '"', "md5"), ("A" * 32, "md5"), ('W/"' + "b" * 32 + '"', "md5"),
     ('"' + "c" * 32 + '-12"', "multipart"), ('"' + "c" * 32 + '-0"', "other"), ("", "other"),
     ('"xyz"', "other")],
)  # fmt: skip
def test_etag_kinds(etag: str, kind: str) -> None:
    assert etag_kind(etag) == kind


PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<IsTruncated>{truncated}</IsTruncated>{token}
<Contents><Key>{uuid}/{name}</Key><Size>5</Size><ETag>&#34;{md5}&#34;</ETag></Contents>
</ListBucketResult>"""


def _page(truncated: str = "false", token: str = "") -> str:
    tag = f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
    return PAGE.format(truncated=truncated, token=tag, uuid=UUID, name=NAME, md5="d" * 32)


def test_listing_page_and_token() -> None:
    objects, token = parse_listing(_page("true", "next-1"))
    assert token == "next-1"
    assert objects[0].key == f"{UUID}/{NAME}" and objects[0].size == 5
    assert etag_kind(objects[0].etag) == "md5"
    assert parse_listing(_page())[1] == ""


@pytest.mark.parametrize(
    "body",
    [_page("true"), "not xml", _page().replace("<Size>5</Size>", "<Size>-x</Size>"),
     _page().replace("<Size>5</Size>", "")],
)  # fmt: skip
def test_listing_refusals(body: str) -> None:
    with pytest.raises(ArchiveProtocolError):
        parse_listing(body)


def test_listing_entity_expansion_is_refused() -> None:
    # "Billion laughs": each entity is ten of the previous one; expat refuses the blow-up.
    entities = ['<!ENTITY e0 "' + "lol" * 10 + '">']
    entities += [f'<!ENTITY e{i} "' + f"&e{i - 1};" * 10 + '">' for i in range(1, 9)]
    bomb = f"<?xml version='1.0'?><!DOCTYPE r [{''.join(entities)}]><r>&e8;</r>"
    with pytest.raises(ArchiveProtocolError):
        parse_listing(bomb)


def test_endpoints() -> None:
    assert Endpoint().bucket_url("idc-open-data") == "https://idc-open-data.s3.amazonaws.com/"
    assert (
        Endpoint("gcs").bucket_url("idc-open-data-two")
        == "https://storage.googleapis.com/idc-open-idc1/"
    )
    assert (
        Endpoint("endpoint", "http://127.0.0.1:9/").bucket_url("b-1") == "http://127.0.0.1:9/b-1/"
    )
    with pytest.raises(ArchiveProtocolError):
        Endpoint().bucket_url("../evil")
    with pytest.raises(UsageError):
        Endpoint("gcs").bucket_url("some-other-bucket")
    assert endpoint_from(env={"MIRROR_IDC_ENDPOINT": "http://h:1"}) == Endpoint(
        "endpoint", "http://h:1"
    )
    assert endpoint_from(gcs=True, env={}) == Endpoint("gcs")
    with pytest.raises(UsageError):
        endpoint_from("ftp://h")


def test_release_diff() -> None:
    held = {"1.1": "u1", "1.2": "u2", "1.3": "u3"}
    current = {"1.1": "u1", "1.2": "u2b", "1.4": "u4"}
    diff = diff_releases(held, current)
    assert diff.new == ("1.4",)
    assert diff.revised == (Revision("1.2", "u2", "u2b"),)
    assert diff.removed == ("1.3",)
    assert diff.unchanged == 1 and not diff.empty
    assert diff_releases(current, current).empty


def _series(size_mb: float) -> IdcSeries:
    return IdcSeries("1.2", "1.3", "P", "c", "C", "CT", UUID, "idc-open-data", 1, size_mb, 20, 20)


def test_series_bytes_within_the_index_rounding() -> None:
    check_bytes(_series(0.056042), 56042)
    check_bytes(_series(26.405988), 26405988)
    with pytest.raises(IncompleteSeries):
        check_bytes(_series(0.056042), 56044)


def test_index_folder_without_the_index_is_a_usage_error(tmp_path) -> None:
    from mirror.archive.idc.listing import locate

    with pytest.raises(UsageError, match=r"holds no idc_index\.parquet"):
        locate(str(tmp_path))


def test_default_index_is_the_installed_package() -> None:
    pytest.importorskip("idc_index_data")
    from mirror.archive.idc.listing import locate

    files = locate(None)
    assert files.index.name == "idc_index.parquet" and files.prior is not None
