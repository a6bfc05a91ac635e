"""Anonymous S3 reads of IDC's public buckets: ListObjectsV2 on one prefix, and GETs.

Public objects need no signature, so a request is a plain HTTP GET: aiohttp on one event
loop keeps hundreds in flight for little CPU each (no botocore request/response machinery;
``benchmarks/idc_fetch.py`` measures the choice). Status and transport failures map onto
:mod:`mirror.errors` here: 429/5xx (S3's 503 SlowDown) and cut connections are retryable,
403 is :class:`~mirror.errors.AccessDenied`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import quote

import aiohttp
import stamina

from mirror.errors import (
    AccessDenied,
    ArchiveProtocolError,
    ArchiveUnavailable,
    IncompleteSeries,
    RateLimited,
    TruncatedDownload,
    UsageError,
)

Provider = Literal["aws", "gcs", "endpoint"]
# AWS bucket -> the GCS bucket holding the same objects (idc-source.md §1).
GCS_BUCKETS = {
    "idc-open-data": "idc-open-data",
    "idc-open-data-two": "idc-open-idc1",
    "idc-open-data-cr": "idc-open-cr",
}
ENDPOINT_ENV = "MIRROR_IDC_ENDPOINT"
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CHUNK = 1 << 18
# Objects up to this size are read whole (IDC's are ~0.5 MB): one hop to a worker thread per
# object instead of a loop iteration per chunk; memory stays at most in-flight x this.
IN_MEMORY_MAX = 8 << 20
_MAX_LIST_PAGES = 1000  # 1M keys under one series prefix is no IDC series: stop, do not loop
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Inspect = Callable[[BinaryIO], str]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a bucket's objects are read: AWS (default), GCS, or any S3-compatible URL."""

    provider: Provider = "aws"
    url: str = ""

    def bucket_url(self, aws_bucket: str) -> str:
        if not _BUCKET_RE.fullmatch(aws_bucket):
            raise ArchiveProtocolError(f"not a bucket name: {aws_bucket!r}")
        if self.provider == "aws":
            return f"https://{aws_bucket}.s3.amazonaws.com/"
        if self.provider == "gcs":
            if aws_bucket not in GCS_BUCKETS:
                raise UsageError(f"no known GCS copy of bucket {aws_bucket!r}")
            return f"https://storage.googleapis.com/{GCS_BUCKETS[aws_bucket]}/"
        return f"{self.url.rstrip('/')}/{aws_bucket}/"


def endpoint_from(
    url: str | None = None, *, gcs: bool = False, env: dict[str, str] | None = None
) -> Endpoint:
    """``--idc-endpoint URL`` (or ``$MIRROR_IDC_ENDPOINT``) wins over ``--idc-gcs``."""
    chosen = url or (env or {}).get(ENDPOINT_ENV, "")
    if chosen:
        if not chosen.startswith(("http://", "https://")):
            raise UsageError(f"--idc-endpoint must be an http(s) URL, got {chosen!r}")
        return Endpoint("endpoint", chosen)
    return Endpoint("gcs") if gcs else Endpoint("aws")


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class Downloaded:
    size: int
    md5: str
    etag: str  # the GET response's ETag header ("" when absent)
    inspected: str  # what ``inspect`` returned ("" without one)
    retries: int


async def _default_sleep(seconds: float) -> None:
    if not stamina.is_testing():
        await asyncio.sleep(seconds)


class S3Reader:
    """One aiohttp session; use as ``async with S3Reader(...) as reader``."""

    def __init__(
        self,
        *,
        max_in_flight: int = 128,
        attempts: int = 6,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        sleep: Sleep | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.attempts = attempts
        self._timeout = aiohttp.ClientTimeout(sock_connect=connect_timeout, sock_read=read_timeout)
        self._sleep = sleep or _default_sleep
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> S3Reader:
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            read_bufsize=_CHUNK,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("S3Reader used outside 'async with'")
        return self._session

    async def list_prefix(self, bucket_url: str, prefix: str) -> list[ListedObject]:
        """Every object under ``prefix`` (one ListObjectsV2 call per 1,000 keys)."""
        out: list[ListedObject] = []
        token = ""
        for _ in range(_MAX_LIST_PAGES):
            params = {"list-type": "2", "prefix": prefix}
            if token:
                params["continuation-token"] = token
            body = await self._retrying(functools.partial(self._get_text, bucket_url, params))
            page, token = parse_listing(body)
            out.extend(page)
            if not token:
                return out
        raise ArchiveProtocolError(f"listing of {prefix!r} never ends (> {_MAX_LIST_PAGES} pages)")

    async def _get_text(self, url: str, params: dict[str, str]) -> str:
        try:
            async with self.session.get(url, params=params) as response:
                _raise_for_status(response.status, response.headers, url)
                return await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ArchiveUnavailable(f"listing {url}: {exc!r}") from exc

    async def download(
        self, url: str, dest: Path, expected_size: int, inspect: Inspect | None = None
    ) -> Downloaded:
        """GET ``url`` into ``dest`` and hash it, retrying transient faults.

        ``inspect`` reads the object (a binary stream) in the worker thread that hashes and
        writes it, off the event loop; what it raises is not retried.
        """
        attempts = 0

        async def once() -> Downloaded:
            nonlocal attempts
            attempts += 1
            return await self._download_once(url, dest, expected_size, attempts - 1, inspect)

        return await self._retrying(once)

    async def _download_once(
        self, url: str, dest: Path, expected: int, retries: int, inspect: Inspect | None
    ) -> Downloaded:
        try:
            async with self.session.get(url) as response:
                _raise_for_status(response.status, response.headers, url)
                etag = response.headers.get("ETag", "")
                if expected <= IN_MEMORY_MAX:
                    body = await _read_exactly(response.content, expected, url)
                    # One hop per object: write and MD5 release the GIL, so GETs keep
                    # flowing on the loop while another core does the bytes.
                    md5, seen = await asyncio.to_thread(_finish_body, dest, body, inspect)
                else:
                    md5 = await _stream_hashed(response.content, dest, expected, url)
                    seen = await asyncio.to_thread(_inspect_file, dest, inspect)
        except aiohttp.ClientPayloadError as exc:
            raise TruncatedDownload(f"{url}: body cut short ({exc})") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ArchiveUnavailable(f"GET {url}: {exc!r}") from exc
        return Downloaded(expected, md5, etag, seen, retries)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return await call()
            except ArchiveUnavailable as exc:
                if attempt == self.attempts:
                    raise
                await self._sleep(_backoff(attempt, exc))
        raise AssertionError("unreachable")


async def _read_exactly(content: aiohttp.StreamReader, expected: int, url: str) -> bytes:
    try:
        body = await content.readexactly(expected)
    except asyncio.IncompleteReadError as exc:
        got = len(exc.partial)
        raise TruncatedDownload(f"{url}: {got} bytes, the listing said {expected}") from exc
    if await content.read(1):  # a hostile body never outgrows the listing
        raise IncompleteSeries(f"{url}: more than the {expected} bytes listed")
    return body


def _finish_body(dest: Path, body: bytes, inspect: Inspect | None) -> tuple[str, str]:
    with dest.open("wb") as out:
        out.write(body)
    md5 = hashlib.md5(body).hexdigest()
    return md5, inspect(io.BytesIO(body)) if inspect is not None else ""


def _inspect_file(dest: Path, inspect: Inspect | None) -> str:
    if inspect is None:
        return ""
    with dest.open("rb") as stream:
        seen: str = inspect(stream)
    return seen


async def _stream_hashed(content: aiohttp.StreamReader, dest: Path, expected: int, url: str) -> str:
    digest = hashlib.md5()
    size = 0
    with dest.open("wb") as out:
        async for chunk in content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > expected:
                raise IncompleteSeries(f"{url}: more than the {expected} bytes listed")
            digest.update(chunk)
            out.write(chunk)
    if size != expected:
        raise TruncatedDownload(f"{url}: {size} bytes, the listing said {expected}")
    return digest.hexdigest()


def _backoff(attempt: int, exc: ArchiveUnavailable) -> float:
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return min(exc.retry_after, 60.0)
    return float(min(30.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def _raise_for_status(status: int, headers: Any, url: str) -> None:
    if status == 200:
        return
    if status in (429, 503):
        raise RateLimited(f"{status} SlowDown from {url}", _retry_after(headers))
    if status >= 500 or status == 404:
        # 404 for a listed key: an eventually consistent listing; a few retries settle it.
        raise ArchiveUnavailable(f"{status} from {url}")
    if status in (401, 403):
        raise AccessDenied(f"{status}: anonymous read refused at {url}")
    raise ArchiveProtocolError(f"unexpected {status} from {url}")


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_listing(body: str) -> tuple[list[ListedObject], str]:
    """One ListObjectsV2 page -> objects and the continuation token ("" on the last page)."""
    try:
        root = ET.fromstring(body)  # noqa: S314  (expat refuses entity expansion bombs)
    except ET.ParseError as exc:
        raise ArchiveProtocolError(f"listing is not XML: {exc}") from exc
    objects: list[ListedObject] = []
    token = ""
    truncated = False
    for child in root:
        name = _local(child.tag)
        if name == "Contents":
            objects.append(_listed(child))
        elif name == "NextContinuationToken":
            token = child.text or ""
        elif name == "IsTruncated":
            truncated = (child.text or "").strip() == "true"
    if truncated and not token:
        raise ArchiveProtocolError("truncated listing without a continuation token")
    return objects, token if truncated else ""


def _listed(node: ET.Element) -> ListedObject:
    fields = {_local(c.tag): (c.text or "") for c in node}
    try:
        return ListedObject(fields["Key"], int(fields["Size"]), fields.get("ETag", ""))
    except (KeyError, ValueError) as exc:
        raise ArchiveProtocolError(f"bad listing entry {fields!r}") from exc


def object_url(bucket_url: str, key: str) -> str:
    return bucket_url + quote(key, safe="/")


__all__ = [
    "ENDPOINT_ENV",
    "Downloaded",
    "Endpoint",
    "ListedObject",
    "S3Reader",
    "endpoint_from",
    "object_url",
    "parse_listing",
]
