"""Archive-area fixtures: clients that are closed after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mirror.archive.nbia import NbiaArchive

MakeClient = Callable[..., NbiaArchive]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    made: list[NbiaArchive] = []

    def make(url: str, **kwargs: Any) -> NbiaArchive:
        made.append(NbiaArchive(url, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()
