"""Outside-in invariant: nothing partial is ever visible in a destination."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from mirror.layout import RESERVED_PREFIXES, SIDECAR_NAME, SeriesSidecar
from mirror.storage.port import Store


def assert_consistent(store: Store) -> dict[str, SeriesSidecar]:
    """Every visible file belongs to a series whose sidecar lists it with the right MD5,
    and every sidecar's files are all there. Returns the sidecars by folder."""
    folders: dict[str, dict[str, bytes]] = defaultdict(dict)
    for key in store.list():
        if key.split("/", 1)[0] in RESERVED_PREFIXES:
            continue
        folder, name = key.rsplit("/", 1)
        folders[folder][name] = store.get_bytes(key)
    sidecars = {}
    for folder, objects in folders.items():
        assert SIDECAR_NAME in objects, f"{folder}: files without a sidecar: {sorted(objects)}"
        sidecar = SeriesSidecar.from_json(objects.pop(SIDECAR_NAME))
        assert sidecar.path == folder
        objects.pop("LICENSE", None)
        listed = {i.name: i for i in sidecar.instances}
        assert set(objects) == set(listed), f"{folder}: {sorted(objects)} vs {sorted(listed)}"
        for name, data in objects.items():
            assert hashlib.md5(data).hexdigest() == listed[name].md5, f"{folder}/{name}"
            assert len(data) == listed[name].size
        sidecars[folder] = sidecar
    return sidecars


def snapshot(store: Store) -> dict[str, bytes]:
    return {key: store.get_bytes(key) for key in store.list()}
