"""Fixtures for the per-series task: stores of every kind and a real moto S3 server."""

from __future__ import annotations

import itertools

import pytest

from mirror.storage.local import LocalStore
from mirror.storage.memory import MemoryStore
from mirror.storage.port import Store
from mirror.storage.s3 import S3Store
from mirror.sync.task import FetchSettings

_counter = itertools.count()
S3_OPTIONS = {"key": "testing", "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}


def make_s3_store(endpoint: str) -> S3Store:
    import boto3

    bucket = f"task-{next(_counter)}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    return S3Store(f"s3://{bucket}/mirror", endpoint_url=endpoint, storage_options=S3_OPTIONS)


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Store:
    if request.param == "local":
        return LocalStore(str(tmp_path_factory.mktemp("dest")))
    if request.param == "memory":
        return MemoryStore(f"task-{next(_counter)}")
    return make_s3_store(request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def s3_store_for_task(moto_endpoint: str) -> S3Store:
    return make_s3_store(moto_endpoint)


@pytest.fixture
def memory_store_for_task() -> MemoryStore:
    return MemoryStore(f"task-{next(_counter)}")


@pytest.fixture
def local_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    return LocalStore(str(tmp_path_factory.mktemp("dest")))


@pytest.fixture
def settings(tmp_path_factory: pytest.TempPathFactory) -> FetchSettings:
    return FetchSettings(scratch_dir=str(tmp_path_factory.mktemp("scratch")), backoff_initial=0.5)


@pytest.fixture
def sleeps() -> list[float]:
    return []
