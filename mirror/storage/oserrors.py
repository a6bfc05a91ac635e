"""Map file-system and client exceptions onto the error tree (one place, every adapter)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from mirror.errors import MirrorError, ObjectNotFound, StoreError

_HINTS = {
    errno.ENOSPC: "destination is full",
    errno.EDQUOT: "quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


@contextmanager
def store_errors(what: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Re-raise OSError (and client errors) from ``what`` as ObjectNotFound / StoreError.

    ``missing_ok`` keeps a FileNotFoundError from turning into ObjectNotFound for
    operations where the target not existing is simply a broken destination (e.g. the
    root of a put vanished), so it surfaces as a StoreError instead.
    """
    try:
        yield
    except MirrorError:
        raise
    except FileNotFoundError as exc:
        if missing_ok:
            raise StoreError(f"{what}: {exc}") from exc
        raise ObjectNotFound(f"{what}: not found") from exc
    except OSError as exc:
        hint = _HINTS.get(exc.errno or 0, "")
        raise StoreError(f"{what}: {hint + ': ' if hint else ''}{exc}") from exc
    except Exception as exc:
        # botocore credential / endpoint errors are not OSError subclasses.
        if type(exc).__module__.split(".")[0] in {"botocore", "aiobotocore", "s3fs"}:
            raise StoreError(f"{what}: {type(exc).__name__}: {exc}") from exc
        raise
