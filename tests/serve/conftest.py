"""Fixtures for the serving tests: a committed, indexed mirror and a server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serve_tree import Tree, build_tree

from mirror.serve import ServeConfig
from mirror.serve.server import Running, serve_in_thread
from mirror.storage import open_store
from mirror.storage.port import Store


@pytest.fixture(scope="session")
def mirror_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Tree]:
    store = open_store(str(tmp_path_factory.mktemp("serve") / "dest"))
    return store, build_tree(store)


@pytest.fixture(scope="session")
def tree(mirror_dir: tuple[Store, Tree]) -> Tree:
    return mirror_dir[1]


@pytest.fixture(scope="session")
def server(mirror_dir: tuple[Store, Tree]) -> Iterator[Running]:
    store, _ = mirror_dir
    config = ServeConfig(dest=store.url, port=0, refresh_seconds=3600)
    with serve_in_thread(store, config) as running:
        yield running


@pytest.fixture(scope="session")
def base(server: Running) -> str:
    return server.base_url + "/dicomweb"
