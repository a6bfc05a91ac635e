"""``s3://bucket/prefix`` over s3fs (AWS or any S3-compatible server).

Credentials and region come from the standard AWS environment / config chain
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` …);
``endpoint_url`` and ``storage_options`` override them. Each object carries the verified
MD5 as user metadata (``x-amz-meta-md5``) because a multipart ETag is not an MD5.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mirror.errors import ObjectNotFound, PreconditionFailed, UsageError
from mirror.storage.keys import check_key, check_prefix, join
from mirror.storage.objects import ObjectStore
from mirror.storage.oserrors import store_errors
from mirror.storage.port import ObjectInfo, StoreCapabilities

# An upload holds about PART_BYTES x PART_CONCURRENCY (twice that inside the client) in
# memory, whatever the file's size: s3fs's defaults (50 MiB parts, 10 at once, one whole-file
# PUT below 100 MiB) held a 300 MiB instance twice over. Up to 2 x PART_BYTES is one PUT.
PART_BYTES = 8 * 2**20
PART_CONCURRENCY = 4


class S3Store(ObjectStore):
    scheme = "s3"

    def __init__(
        self,
        root: str,
        *,
        endpoint_url: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        root = root.removeprefix("s3://")
        if not root or root.startswith(("/", ".")):
            raise UsageError(f"S3 destination needs a bucket: s3://{root}")
        root = root.rstrip("/")
        prefix = root.partition("/")[2]
        if prefix:
            check_key(prefix)
        super().__init__(root)
        self._endpoint_url = endpoint_url
        self._options = dict(storage_options or {})
        self._fs: Any = None

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint_url={self._endpoint_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # The s3fs client holds an event loop and sockets: reopen it after unpickling.
        return {"root": self._root, "endpoint": self._endpoint_url, "options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._root = state["root"]
        self._endpoint_url = state["endpoint"]
        self._options = state["options"]
        self._fs = None

    @property
    def capabilities(self) -> StoreCapabilities:
        # conditional_put: AWS, moto 5.x and SeaweedFS 4.x honour If-None-Match: * and
        # If-Match on PutObject and If-Match on DeleteObject (checked against each).
        return StoreCapabilities(
            atomic_rename=False, object_metadata=True, conditional_put=True, local=False
        )

    def _fs_options(self, *, asynchronous: bool = False) -> dict[str, Any]:
        options: dict[str, Any] = {"use_listings_cache": False, **self._options}
        if self._endpoint_url:
            options["endpoint_url"] = self._endpoint_url
        if asynchronous:
            options["asynchronous"] = True
        return options

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import s3fs

            with store_errors(f"open {self.url}"):
                self._fs = s3fs.S3FileSystem(**self._fs_options())
        return self._fs

    def _write_kwargs(self, md5: str | None) -> dict[str, Any]:
        return {"Metadata": {"md5": md5}} if md5 else {}

    def put_file(self, local_path: str, key: str, *, md5: str | None = None) -> None:
        """One PUT, or a multipart upload in bounded parts; the verified MD5 rides in the
        object's metadata either way (a multipart ETag is not an MD5). A failed multipart
        upload is aborted, so nothing partial becomes visible."""
        target = self._path(key)
        with store_errors(f"put {self.url}/{key}", missing_ok=True):
            self.fs.put_file(
                local_path,
                target,
                chunksize=PART_BYTES,
                max_concurrency=PART_CONCURRENCY,
                **self._write_kwargs(md5),
            )

    def info(self, key: str) -> ObjectInfo:
        """One HEAD: size plus the MD5 recorded at put time (``None`` if none was)."""
        bucket, _, object_key = self._path(key).partition("/")
        with store_errors(f"stat {self.url}/{key}"):
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=object_key)
        md5 = (head.get("Metadata") or {}).get("md5")
        return ObjectInfo(key=key, size=int(head["ContentLength"]), md5=md5)

    # --- compare-and-swap (the destination lease) -----------------------------------------

    def put_if(self, key: str, data: bytes, *, token: str | None) -> str:
        bucket, _, object_key = self._path(key).partition("/")
        condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        try:
            with _conditional(f"put {self.url}/{key}"):
                reply = self.fs.call_s3(
                    "put_object", Bucket=bucket, Key=object_key, Body=data, **condition
                )
        except ObjectNotFound as exc:  # If-Match on a deleted object: 404, not 412
            raise PreconditionFailed(f"put {self.url}/{key}: the object vanished") from exc
        return str(reply["ETag"])

    def get_with_token(self, key: str) -> tuple[bytes, str]:
        bucket, _, object_key = self._path(key).partition("/")
        with store_errors(f"read {self.url}/{key}"):
            reply = self.fs.call_s3("get_object", Bucket=bucket, Key=object_key)
            data = _read_body(self.fs, reply["Body"])
        return data, str(reply["ETag"])

    def delete_if(self, key: str, token: str) -> None:
        bucket, _, object_key = self._path(key).partition("/")
        with _conditional(f"delete {self.url}/{key}"):
            try:
                self.fs.call_s3("delete_object", Bucket=bucket, Key=object_key, IfMatch=token)
            except FileNotFoundError:
                return

    def _copy(self, src_path: str, dst_path: str) -> None:
        # CopyObject keeps user metadata (MetadataDirective=COPY), so the MD5 travels.
        self.fs.copy(src_path, dst_path)

    def zarr_store(self, prefix: str, *, read_only: bool = False) -> Any:
        import zarr.storage

        url = "s3://" + join(self._root, check_prefix(prefix))
        return zarr.storage.FsspecStore.from_url(
            url, storage_options=self._fs_options(asynchronous=True), read_only=read_only
        )


def _read_body(fs: Any, body: Any) -> bytes:
    """Read an aiobotocore streaming body on s3fs's event loop."""
    from fsspec.asyn import sync

    async def read() -> bytes:
        async with body as stream:
            data: bytes = await stream.read()
        return data

    result: bytes = sync(fs.loop, read)
    return result


@contextmanager
def _conditional(what: str) -> Iterator[None]:
    """A lost condition (412, or 409 ConditionalRequestConflict while another conditional
    write to the key is in flight) becomes PreconditionFailed; the rest, StoreError."""
    try:
        with store_errors(what):
            yield
    except ObjectNotFound:
        raise
    except (OSError, ValueError) as exc:
        if _lost_condition(exc):
            raise PreconditionFailed(f"{what}: precondition failed") from exc
        raise


def _lost_condition(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        error = (getattr(seen, "response", None) or {}).get("Error", {})
        if error.get("Code") in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
            return True
        if isinstance(seen, FileExistsError):  # s3fs's translation of If-None-Match 412
            return True
        seen = seen.__cause__
    return False
