"""Lenient parsing of NBIA rows (pure units with literals)."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from mirror.archive.http import InvalidParameter, error_for, retry_after_seconds
from mirror.archive.parse import parse_rows, series_record, to_date, to_int
from mirror.errors import (
    AccessDenied,
    ArchiveProtocolError,
    ArchiveUnavailable,
    AuthError,
    RateLimited,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        (5.0, 5),
        ("500.000000", 500),
        ("12", 12),
        ("", None),
        (None, None),
        ("x", None),
        (True, None),
    ],
)
def test_to_int(value: object, expected: int | None) -> None:
    assert to_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("03-08-2019", date(2019, 3, 8)),
        ("2015-05-27 15:55:42.0", date(2015, 5, 27)),
        ("2003-12-12", date(2003, 12, 12)),
        ("20031212", date(2003, 12, 12)),
        ("13-45-2019", None),
        ("", None),
        (None, None),
        (20190308, None),
    ],
)
def test_to_date(value: object, expected: date | None) -> None:
    assert to_date(value) == expected


def test_empty_body_is_no_rows() -> None:
    assert parse_rows("") == [] and parse_rows("  \n") == []


@pytest.mark.parametrize("body", ["{not json", '{"a": 1}', "[1, 2]", "<html>"])
def test_malformed_bodies_are_protocol_errors(body: str) -> None:
    with pytest.raises(ArchiveProtocolError):
        parse_rows(body)


def test_v1_row_with_missing_and_legacy_keys() -> None:
    row = {
        "SeriesInstanceUID": "1.2.3",
        "StudyInstanceUID": "1.2",
        "Collection": "Soft-tissue-Sarcoma",
        "PatientID": "STS_010",
        "SeriesDate": "2003-12-12 00:00:00.0",
        "SeriesNumber": "2.000000",
        "ImageCount": 48,
        "TimeStamp": "2015-05-27 17:12:21.0",
        "CollectionURI": "https://doi.org/x",
        "FileSize": "25273786",
        "DateReleased": "2015-05-27 17:12:21.0",
    }
    record = series_record(row)
    assert record.series_number == 2 and record.file_size == 25273786
    assert record.max_submission == record.date_released == date(2015, 5, 27)
    assert record.data_description_uri == "https://doi.org/x"
    assert record.modality == "" and record.license_name == ""


def test_row_without_series_uid_is_a_protocol_error() -> None:
    with pytest.raises(ArchiveProtocolError):
        series_record({"Collection": "X"})


def _resp(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://h/v4/x"))


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (400, "The user has not been granted the access to image", {}, AccessDenied),
        (400, "Invalid query parameter: 'IncludeMD5'.", {}, InvalidParameter),
        (400, "A parameter, X is required", {}, ArchiveProtocolError),
        (401, "", {}, AuthError),
        (429, "", {"Retry-After": "5"}, RateLimited),
        (503, "", {"Retry-After": "5"}, RateLimited),
        (503, "", {}, ArchiveUnavailable),
        (500, "Server was not able to process your request", {}, ArchiveUnavailable),
        (404, "", {}, ArchiveProtocolError),
    ],
)
def test_status_mapping(
    status: int, body: str, headers: dict[str, str], error: type[Exception]
) -> None:
    exc = error_for(_resp(status, headers), body)
    assert type(exc) is error


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    when = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_seconds(when, now=1445412480.0) == 10.0
    assert retry_after_seconds(when, now=1445412500.0) == 0.0
