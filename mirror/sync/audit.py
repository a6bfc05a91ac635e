"""Read committed series back from a destination: sidecars and their files.

Used by ``mirror verify`` (:func:`verify_series`) and ``mirror ledger rebuild``
(:func:`iter_sidecars`); both trust only what the sidecars say, never folder existence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from mirror.errors import IntegrityError, ObjectNotFound
from mirror.layout import LICENSE as LICENSE_NAME
from mirror.layout import RESERVED_PREFIXES, SIDECAR_NAME, SeriesSidecar, hierarchy_candidates
from mirror.storage.port import Store
from mirror.sync.plan import LedgerEntry

_CHUNK = 1 << 20


def read_sidecar(store: Store, path: str) -> SeriesSidecar:
    """The sidecar of the series folder ``path``; ObjectNotFound if none is committed."""
    sidecar = SeriesSidecar.from_json(store.get_bytes(f"{path}/{SIDECAR_NAME}"))
    if sidecar.path != path:
        raise IntegrityError(f"{path}/{SIDECAR_NAME} claims to live at {sidecar.path!r}")
    return sidecar


def iter_sidecars(
    store: Store, *, on_error: Callable[[str, IntegrityError], None] | None = None
) -> Iterator[SeriesSidecar]:
    """Every committed series in the store, skipping the reserved top-level folders.

    An unreadable sidecar raises IntegrityError unless ``on_error(path, exc)`` is given,
    in which case it is reported there and the walk goes on.
    """
    for key in store.list():
        top, _, rest = key.partition("/")
        if top in RESERVED_PREFIXES or not rest or not key.endswith("/" + SIDECAR_NAME):
            continue
        path = key[: -len(SIDECAR_NAME) - 1]
        try:
            yield read_sidecar(store, path)
        except ObjectNotFound:
            continue  # replaced between the listing and the read
        except IntegrityError as exc:
            if on_error is None:
                raise
            on_error(path, exc)


def verify_series(store: Store, sidecar: SeriesSidecar, *, deep: bool) -> list[str]:
    """Problems with one committed series (empty list = fine).

    Checks that every listed file exists with the recorded size and, where the store
    keeps it, the recorded MD5; ``deep`` re-reads and hashes every file. Objects in the
    folder that the sidecar does not list are reported too.
    """
    problems: list[str] = []
    for inst in sidecar.instances:
        problems.extend(
            _check_instance(store, f"{sidecar.path}/{inst.name}", inst.size, inst.md5, deep=deep)
        )
    known = {i.name for i in sidecar.instances} | {SIDECAR_NAME, LICENSE_NAME}
    for key in store.list(sidecar.path):
        if key[len(sidecar.path) + 1 :] not in known:
            problems.append(f"{key}: not listed in {SIDECAR_NAME}")
    return problems


def _check_instance(store: Store, key: str, size: int, md5: str, *, deep: bool) -> list[str]:
    try:
        info = store.info(key)
    except ObjectNotFound:
        return [f"{key}: missing"]
    if info.size != size:
        return [f"{key}: size {info.size}, expected {size}"]
    if info.md5 is not None and info.md5 != md5:
        return [f"{key}: stored MD5 {info.md5}, expected {md5}"]
    if deep:
        actual = hash_object(store, key)
        if actual != md5:
            return [f"{key}: MD5 {actual}, expected {md5}"]
    return []


def hash_object(store: Store, key: str) -> str:
    digest = hashlib.md5()
    with store.open_read(key) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def held_hashes(store: Store, entry: LedgerEntry) -> frozenset[str]:
    """The archive series hashes the held copy of ``entry`` may match: the recorded one,
    else what its sidecar's digests give (none when the sidecar is gone or unreadable)."""
    if entry.md5_hierarchy:
        return frozenset({entry.md5_hierarchy})
    try:
        sidecar = read_sidecar(store, entry.path)
    except (ObjectNotFound, IntegrityError):
        return frozenset()
    if sidecar.series_uid != entry.series_uid:
        return frozenset()
    return hierarchy_candidates(sidecar)


def committed_unrecorded(store: Store, entry: LedgerEntry) -> SeriesSidecar | None:
    """The intact committed copy of ``entry`` when the ledger does not record it (other
    content or listing than the ledger's), else None. A copy the ledger knows stays as the
    ledger says, even ``failed``: verify may have found it damaged."""
    try:
        sidecar = read_sidecar(store, entry.path)
    except (ObjectNotFound, IntegrityError):
        return None
    known = (
        sidecar.content_hash == entry.content_hash and sidecar.fingerprint == entry.fingerprint
    )
    if known or sidecar.series_uid != entry.series_uid:
        return None
    return sidecar if not verify_series(store, sidecar, deep=False) else None


def held_damage(store: Store, entry: LedgerEntry) -> list[str]:
    """Quick problems (no re-hash) with the committed copy of a present series."""
    try:
        sidecar = read_sidecar(store, entry.path)
    except ObjectNotFound:
        return [f"{entry.path}/{SIDECAR_NAME}: missing"]
    except IntegrityError as exc:
        return [str(exc)]
    if sidecar.series_uid != entry.series_uid:
        return [f"{entry.path}/{SIDECAR_NAME} names series {sidecar.series_uid}"]
    return verify_series(store, sidecar, deep=False)
