"""Outside-in checks for sync tests (imported by name: tests/ folders are not packages)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from mirror.archive.sim import SimArchive
from mirror.layout import RESERVED_PREFIXES, SIDECAR_NAME, SeriesSidecar
from mirror.storage.port import Store
from mirror.sync.report import RunSummary

SyncFn = Callable[..., RunSummary]


def next_day(sim: SimArchive) -> None:
    sim.today = sim.today + timedelta(days=1)


def visible_series(dest: Path) -> dict[str, dict[str, bytes]]:
    """Series folders (with files) as a reader sees them, outside the reserved folders."""
    folders: dict[str, dict[str, bytes]] = {}
    for path in dest.rglob("*"):
        rel = path.relative_to(dest)
        if path.is_file() and rel.parts[0] not in RESERVED_PREFIXES:
            folders.setdefault(rel.parent.as_posix(), {})[rel.name] = path.read_bytes()
    return folders


def assert_nothing_partial(dest: Path, sim: SimArchive) -> dict[str, SeriesSidecar]:
    """Every visible series folder has a sidecar naming exactly its files with the right
    MD5s, and every visible .dcm is byte-identical to some version the archive served."""
    sidecars: dict[str, SeriesSidecar] = {}
    for folder, files in visible_series(dest).items():
        sidecar = checked_folder(folder, files)
        assert sidecar.path == folder
        sidecars[sidecar.series_uid] = sidecar
    return sidecars


def assert_mirror_equals_archive(dest: Path, sim: SimArchive) -> None:
    sidecars = assert_nothing_partial(dest, sim)
    present = {uid for uid, sc in sidecars.items()}
    visible = set(sim.series_uids())
    assert visible <= present, f"missing: {visible - present}"
    for uid in visible:
        got = sorted(i.md5 for i in sidecars[uid].instances)
        assert got == sorted(sim.true_md5s(uid)), uid


def store_sidecars(store: Store) -> dict[str, SeriesSidecar]:
    """The same outside-in check as :func:`assert_nothing_partial`, through a Store."""
    folders: dict[str, dict[str, bytes]] = {}
    for key in store.list():
        if key.split("/", 1)[0] in RESERVED_PREFIXES:
            continue
        folder, name = key.rsplit("/", 1)
        folders.setdefault(folder, {})[name] = store.get_bytes(key)
    sidecars: dict[str, SeriesSidecar] = {}
    for folder, files in folders.items():
        sidecar = checked_folder(folder, files)
        sidecars[sidecar.series_uid] = sidecar
    return sidecars


def checked_folder(folder: str, files: dict[str, bytes]) -> SeriesSidecar:
    """One visible series folder: a sidecar naming exactly its files, each with its MD5."""
    files = dict(files)
    assert SIDECAR_NAME in files, f"{folder}: files without a sidecar"
    sidecar = SeriesSidecar.from_json(files.pop(SIDECAR_NAME))
    files.pop("LICENSE", None)
    listed = {i.name: i.md5 for i in sidecar.instances}
    assert set(files) == set(listed), folder
    for name, data in files.items():
        assert hashlib.md5(data).hexdigest() == listed[name], f"{folder}/{name}"
    return sidecar
