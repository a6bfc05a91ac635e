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


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Store:
    if request.param == "local":
        return LocalStore(str(tmp_path_factory.mktemp("dest")))
    if request.param == "memory":
        return MemoryStore(f"task-{next(_counter)}")
    return request.getfixturevalue("make_s3_store")(tag="task")


@pytest.fixture
def s3_store_for_task(make_s3_store) -> S3Store:  # type: ignore[no-untyped-def]
    return make_s3_store(tag="task")


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
