"""Fetch series from IDC's buckets into staging folders, verifying every object.

Per series: list its uuid prefix (never the bucket), refuse hostile keys and a listing that
disagrees with the index *before* writing anything, then GET every object concurrently into
``<name>.partial``, check size, MD5-vs-ETag (when the ETag is an MD5) and the DICOM identity,
and only then rename it to ``<name>``. Any failure cancels the series' other GETs and removes
its staging folder, so a caller never sees a partial series.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mirror.archive.idc.checks import (
    InstanceCheck,
    Outcome,
    SeriesFetch,
    check_listing,
    check_md5,
    check_unique,
    dicom_identity,
)
from mirror.archive.idc.listing import IdcSeries
from mirror.archive.idc.names import etag_hex, etag_kind, instance_name
from mirror.archive.idc.shared import shared_loop
from mirror.archive.idc.wire import Endpoint, ListedObject, S3Reader, object_url
from mirror.errors import MirrorError, UnsafeArchiveEntry, UsageError, WrongInstance

OnResult = Callable[[IdcSeries, SeriesFetch | MirrorError], None]
_SERIES_PASSED: Mapping[str, Outcome] = {
    "count": "passed",
    "bytes": "passed",
    "sop_unique": "passed",
}


async def fetch_series_async(
    reader: S3Reader, endpoint: Endpoint, series: IdcSeries, staging: Path
) -> SeriesFetch:
    """Stage ``series`` whole and verified in the new folder ``staging``, or raise."""
    bucket_url = endpoint.bucket_url(series.aws_bucket)
    listed = await reader.list_prefix(bucket_url, f"{series.crdc_series_uuid}/")
    names = _checked_names(series, listed)
    check_listing(series, len(listed), sum(o.size for o in listed))
    try:
        staging.mkdir(parents=True)
    except FileExistsError:
        raise UsageError(f"staging folder {staging} already exists") from None
    try:
        target = _Target(reader, bucket_url, series, staging)
        checks = await _fetch_objects(target, listed, names)
        check_unique(checks)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SeriesFetch(series, tuple(sorted(checks, key=lambda c: c.name)), _SERIES_PASSED)


def _checked_names(series: IdcSeries, listed: Sequence[ListedObject]) -> list[str]:
    names = [instance_name(series.crdc_series_uuid, o.key) for o in listed]
    if len(set(names)) != len(names):
        raise UnsafeArchiveEntry(f"{series.crdc_series_uuid}/ lists one name twice")
    return names


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one series' objects come from and go to."""

    reader: S3Reader
    bucket_url: str
    series: IdcSeries
    staging: Path


async def _fetch_objects(
    target: _Target, listed: Sequence[ListedObject], names: Sequence[str]
) -> list[InstanceCheck]:
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_fetch_one(target, obj, name))
                for obj, name in zip(listed, names, strict=True)
            ]
    except BaseExceptionGroup as group_error:
        # The first failure cancelled the rest; callers classify one error, not a group.
        raise _first(group_error) from None
    return [t.result() for t in tasks]


def _first(group_error: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group_error.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group_error


async def _fetch_one(target: _Target, obj: ListedObject, name: str) -> InstanceCheck:
    partial = target.staging / f"{name}.partial"
    url = object_url(target.bucket_url, obj.key)
    identity = functools.partial(dicom_identity, expected_series=target.series.series_uid)
    try:
        got = await target.reader.download(url, partial, obj.size, inspect=identity)
    except WrongInstance as exc:
        raise WrongInstance(f"{name}: {exc}") from exc
    kind = etag_kind(obj.etag)
    md5 = check_md5(name, got.md5, obj.etag, kind)
    sop = got.inspected
    partial.rename(target.staging / name)
    checks: dict[str, Outcome] = {"size": "passed", "md5_etag": md5, "dicom_series": "passed"}
    return InstanceCheck(name, got.size, got.md5, obj.etag.strip('"'), kind, sop, checks)


async def fetch_many_async(
    reader: S3Reader,
    endpoint: Endpoint,
    work: Sequence[tuple[IdcSeries, Path]],
    on_result: OnResult,
    *,
    series_in_flight: int = 16,
) -> None:
    """Fetch many series on one loop; each outcome (a fetch or an error) goes to ``on_result``.

    Series run ``series_in_flight`` at a time and objects share the reader's connection
    limit, so memory stays flat however long ``work`` is.
    """
    gate = asyncio.Semaphore(series_in_flight)

    async def one(series: IdcSeries, staging: Path) -> None:
        async with gate:
            try:
                on_result(series, await fetch_series_async(reader, endpoint, series, staging))
            except MirrorError as exc:
                on_result(series, exc)

    async with asyncio.TaskGroup() as group:
        for series, staging in work:
            group.create_task(one(series, staging))


def fetch_series(
    series: IdcSeries, staging: Path, *, endpoint: Endpoint, max_in_flight: int = 128
) -> SeriesFetch:
    """Blocking form for a sync task, from any thread: the series runs on this process's
    shared loop and connection pool (:mod:`mirror.archive.idc.shared`)."""
    return shared_loop(max_in_flight).run(
        lambda reader: fetch_series_async(reader, endpoint, series, staging)
    )


async def listed_digests_async(
    reader: S3Reader, endpoint: Endpoint, series: IdcSeries
) -> dict[str, str | None]:
    """Object name -> MD5 from the prefix listing alone (None where the ETag is no MD5).

    One LIST per series and no GET: enough for a cross-source check of digests, never a
    substitute for verifying bytes that are fetched.
    """
    listed = await reader.list_prefix(
        endpoint.bucket_url(series.aws_bucket), f"{series.crdc_series_uuid}/"
    )
    names = _checked_names(series, listed)
    return {
        name: etag_hex(obj.etag) if etag_kind(obj.etag) == "md5" else None
        for name, obj in zip(names, listed, strict=True)
    }


def listed_digests(
    series: IdcSeries, *, endpoint: Endpoint, max_in_flight: int = 128
) -> dict[str, str | None]:
    """Blocking form of :func:`listed_digests_async` (on the shared loop, as a fetch)."""
    return shared_loop(max_in_flight).run(
        lambda reader: listed_digests_async(reader, endpoint, series)
    )


def fetch_many(
    work: Sequence[tuple[IdcSeries, Path]],
    *,
    endpoint: Endpoint,
    max_in_flight: int = 128,
    series_in_flight: int = 16,
) -> list[SeriesFetch | MirrorError]:
    """Blocking form of :func:`fetch_many_async`; results in the order of ``work``."""
    found: dict[str, SeriesFetch | MirrorError] = {}

    async def run() -> None:
        async with S3Reader(max_in_flight=max_in_flight) as reader:
            await fetch_many_async(
                reader, endpoint, work, lambda s, r: found.__setitem__(s.series_uid, r),
                series_in_flight=series_in_flight,
            )  # fmt: skip

    asyncio.run(run())
    return [found[s.series_uid] for s, _ in work]


__all__ = [
    "fetch_many",
    "fetch_many_async",
    "fetch_series",
    "fetch_series_async",
    "listed_digests",
    "listed_digests_async",
]
