"""Fixtures shared by every test area: the simulated archive, served, and a client for it.

``sim`` is a fresh ``tiny`` preset (2 collections, 6 small series), ``archive_server``
serves it on 127.0.0.1 at a random port, ``archive`` is an ``NbiaArchive`` pointed at it
whose retry backoff never sleeps (the waits it asked for are recorded in
``archive_sleeps``). No test sleeps for real: stamina runs in testing mode.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import stamina

from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import SimArchive, SimServer, build_preset, serve_archive


@pytest.fixture(autouse=True)
def _no_real_backoff() -> Iterator[None]:
    # cap=True keeps each caller's own attempt count (up to 10) but skips the waits.
    stamina.set_testing(True, attempts=10, cap=True)
    yield
    stamina.set_testing(False)


@pytest.fixture
def sim() -> SimArchive:
    return build_preset("tiny", seed=0)


@pytest.fixture
def archive_server(sim: SimArchive) -> Iterator[SimServer]:
    with serve_archive(sim, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def archive_sleeps() -> list[float]:
    return []


@pytest.fixture
def archive(archive_server: SimServer, archive_sleeps: list[float]) -> Iterator[NbiaArchive]:
    client = NbiaArchive(archive_server.base_url, sleep=archive_sleeps.append, read_timeout=60.0)
    yield client
    client.close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One real S3 server (moto) on 127.0.0.1 for the whole session; tests make their own buckets."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_TEST_OPTIONS = {"key": "testing", "secret": "testing", "client_kwargs": {"region_name": "us-east-1"}}


@pytest.fixture(scope="session")
def make_s3_store(moto_endpoint: str) -> Callable[..., object]:
    """``make_s3_store(prefix="mirror", tag="s3")``: an S3Store over a fresh moto bucket."""
    import boto3

    from mirror.storage.s3 import S3Store

    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )
    counter = itertools.count()

    def make(prefix: str = "mirror", tag: str = "s3") -> S3Store:
        bucket = f"{tag}-{next(counter)}"
        client.create_bucket(Bucket=bucket)
        return S3Store(
            f"s3://{bucket}/{prefix}", endpoint_url=moto_endpoint, storage_options=S3_TEST_OPTIONS
        )

    return make
