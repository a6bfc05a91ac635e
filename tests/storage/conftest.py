"""Every Store adapter on the same fixtures: a tmp folder, process memory, real S3 (moto)."""

from __future__ import annotations

import itertools

import pytest

from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore
from mirror.storage.port import Store
from mirror.storage.s3 import S3Store

_counter = itertools.count()
S3_OPTIONS = {"key": "testing", "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}


@pytest.fixture
def s3_options() -> dict:
    return dict(S3_OPTIONS)


@pytest.fixture
def s3_client(moto_endpoint: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )


@pytest.fixture
def s3_store(make_s3_store) -> S3Store:
    return make_s3_store(prefix="root", tag="conf")


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Store:
    if request.param == "local":
        return LocalStore(str(tmp_path_factory.mktemp("store")))
    if request.param == "memory":
        return MemoryStore(f"conf-{next(_counter)}")
    return request.getfixturevalue("s3_store")
