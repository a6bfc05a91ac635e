"""Ledger schema versions: ``PRAGMA user_version`` and the ordered steps between them.

Version 1 is the schema the first release created (without setting ``user_version``, so an
existing ledger reading 0 with a ``series`` table is version 1). Each later version is one
:data:`Step`, a few SQL statements, applied in one ``BEGIN IMMEDIATE`` transaction together
with the new ``user_version``: a crash or a concurrent opener sees the old schema or the new
one, never half of a step. A ledger newer than this release is refused, never "repaired".
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from mirror.errors import LedgerTooNew

log = logging.getLogger(__name__)

Step = tuple[str, ...]  # SQL statements, run in order inside one transaction


def split_statements(script: str) -> Step:
    """A plain DDL script (no triggers, no ``;`` inside literals) as single statements."""
    return tuple(part.strip() for part in script.split(";") if part.strip())


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, baseline: Step, steps: Sequence[Step]) -> int:
    """Bring the ledger on ``conn`` to version ``1 + len(steps)``; returns the version found.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    target = 1 + len(steps)
    found = schema_version(conn)
    if found == target:  # the common case takes no write lock (status on a read-only copy)
        return found
    conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock: one opener migrates
    try:
        found = schema_version(conn)
        if found > target:
            raise LedgerTooNew(
                f"ledger schema version {found} is newer than this release knows ({target}); "
                "upgrade tcia-mirror (or rebuild the ledger with `mirror ledger rebuild`)"
            )
        if found == 0:  # a new file, or a ledger from before versioning: both become 1
            _run(conn, baseline)
        for version in range(max(found, 1), target):
            _run(conn, steps[version - 1])
            log.info("ledger schema migrated to version %d", version + 1)
        if found != target:
            conn.execute(f"PRAGMA user_version = {target:d}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found


def _run(conn: sqlite3.Connection, step: Step) -> None:
    for statement in step:
        conn.execute(statement)
