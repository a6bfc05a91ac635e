"""Writing the simulated IDC bucket: objects PUT once each (so their ETag is their MD5)
to a real S3 server on loopback, readable anonymously like IDC's public buckets."""

from __future__ import annotations

import json
from typing import Any

WRITER_KEY = "idc-sim"
WRITER_SECRET = "idc-sim-secret"  # noqa: S105  (a loopback test server's dummy credential)


class BucketWriter:
    """A signed botocore client for the simulator's own writes (readers stay anonymous)."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        import botocore.session

        self.endpoint = endpoint
        self.bucket = bucket
        self._client: Any = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=WRITER_KEY,
            aws_secret_access_key=WRITER_SECRET,
        )

    def create_public_bucket(self) -> None:
        """Create the bucket and let anyone list and read it (IDC's buckets are public)."""
        self._client.create_bucket(Bucket=self.bucket)
        arn = f"arn:aws:s3:::{self.bucket}"
        statement = {
            "Effect": "Allow", "Principal": "*",
            "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": [arn, f"{arn}/*"],
        }  # fmt: skip
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        self._client.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(policy))

    def put(self, key: str, data: bytes) -> str:
        """One PUT; returns the server's ETag (quoted, as S3 sends it)."""
        reply = self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return str(reply["ETag"])

    def get(self, key: str) -> bytes:
        body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=key)

    def keys(self, prefix: str = "") -> list[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def close(self) -> None:
        self._client.close()


__all__ = ["BucketWriter"]
