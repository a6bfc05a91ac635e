"""One error tree for the whole package.

Every error carries the process exit code the CLI maps it to and whether retrying the same
operation can help. Subclasses also inherit the matching builtin so callers that only know
the standard library (``except OSError``) still catch them.

Exit codes (documented in README.md, stable for cron jobs):

====  =====================================================================
0     ok: all planned work done and verified (or nothing to do)
1     partial: some series failed after retries; everything else committed
2     usage or configuration error (bad flag, malformed manifest, bad SQL)
3     upstream archive unavailable or refused before any work was done
4     destination error (unwritable, disk full, bad credentials)
5     verification failed (corrupt or missing data found)
6     safety abort (mass-deletion guard, empty or failed listing)
75    another run holds the lock (EX_TEMPFAIL)
130   interrupted (SIGINT/SIGTERM); the watermark was not advanced
====  =====================================================================
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_UPSTREAM = 3
EXIT_DESTINATION = 4
EXIT_VERIFY = 5
EXIT_SAFETY = 6
EXIT_LOCKED = 75
EXIT_INTERRUPTED = 130


class MirrorError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: ClassVar[int] = EXIT_PARTIAL
    retryable: ClassVar[bool] = False


# --- usage and configuration -------------------------------------------------------------


class UsageError(MirrorError, ValueError):
    """Bad arguments, configuration, manifest or query text."""

    exit_code = EXIT_USAGE


class ManifestError(UsageError):
    """A .tcia manifest (or UID list) that cannot be read."""


class LedgerTooNew(UsageError):
    """The ledger was written by a newer release (a higher schema version than we know)."""


class QueryError(UsageError):
    """SQL given to ``mirror query`` / ``--where`` that DuckDB rejects."""


# --- upstream archive ------------------------------------------------------------------


class ArchiveError(MirrorError):
    """The archive answered with something we cannot use."""

    exit_code = EXIT_UPSTREAM


class ArchiveUnavailable(ArchiveError, ConnectionError):
    """Connection errors, timeouts, 5xx: transient, worth a retry with backoff."""

    retryable = True


class RateLimited(ArchiveUnavailable):
    """429 (or 503 with Retry-After): back off for ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TruncatedDownload(ArchiveUnavailable):
    """The series stream ended early (no ZIP central directory): download again."""


class AccessDenied(ArchiveError, PermissionError):
    """400 'has not been granted the access': the series is not public or was withdrawn.

    Never retried: asking again gives the same answer.
    """


class AuthError(ArchiveError, PermissionError):
    """401 from the archive, or the token endpoint refused the credentials."""


class ArchiveProtocolError(ArchiveError):
    """A response that breaks the documented API contract (bad JSON, unknown shape)."""


# --- integrity ---------------------------------------------------------------------------


class IntegrityError(MirrorError):
    """Downloaded or stored bytes do not match what the archive promised."""

    exit_code = EXIT_VERIFY


class ChecksumMismatch(IntegrityError):
    """An instance's MD5 differs from the archive's ``md5hashes.csv`` value."""

    # A mismatch can be a transfer fault (retry helps) or a stale upstream digest (it does
    # not); the task retries a bounded number of times and then reports it.
    retryable = True


class IncompleteSeries(IntegrityError):
    """Image count or total size differs from the listing (short ZIP, LICENSE-only ZIP)."""

    retryable = True


class UnsafeArchiveEntry(IntegrityError):
    """A ZIP entry with an absolute path, ``..``, a link, or an oversize member."""


class WrongInstance(IntegrityError):
    """A fetched object is not the DICOM instance the listing promised (wrong series, a
    duplicate SOPInstanceUID, or not DICOM at all). Asking again gives the same bytes."""


class VerifyFailed(IntegrityError):
    """``mirror verify`` found missing or corrupt files."""


# --- destination -------------------------------------------------------------------------


class StoreError(MirrorError, OSError):
    """The destination cannot be read or written."""

    exit_code = EXIT_DESTINATION


class ObjectNotFound(StoreError, FileNotFoundError):
    """A key that should exist in the destination does not."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the object already exists, or changed since it was read."""


# --- run control -------------------------------------------------------------------------


class SafetyAbort(MirrorError):
    """A guard tripped: empty or failed listing, or too many withdrawals for --max-delete."""

    exit_code = EXIT_SAFETY


class LockHeld(MirrorError):
    """Another sync already holds the destination's run lock."""

    exit_code = EXIT_LOCKED


class LeaseLost(LockHeld):
    """This run's destination lease was taken over (it stalled past expiry) or vanished."""


class ConversionError(MirrorError):
    """A series (or one of its stacks) cannot be converted to a volume."""


# --- serving -----------------------------------------------------------------------------


class RequestRefused(MirrorError):
    """A DICOMweb request ``mirror serve`` answers with a 4xx; ``status`` is the HTTP code."""

    exit_code = EXIT_USAGE
    status: ClassVar[int] = 400


class BadRequest(RequestRefused, ValueError):
    """Malformed query: bad UID, date, ``limit``, frame list or rendering parameter."""


class NotFoundError(RequestRefused, LookupError):
    """The study, series, instance, frame or file is not among the committed series."""

    status = 404


class NotAcceptable(RequestRefused):
    """No media type or transfer syntax in ``Accept`` that the server can produce."""

    status = 406


class TooLarge(RequestRefused):
    """The request or its answer exceeds a configured bound."""

    status = 413


class Unauthorized(RequestRefused, PermissionError):
    """Missing or wrong credentials while the server requires them."""

    status = 401


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for any exception reaching the CLI."""
    if isinstance(exc, MirrorError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL
