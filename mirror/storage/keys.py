"""Key validation shared by every Store adapter.

Keys come from layout code, but some components originate in network data (PatientID,
ZIP entry names), so every adapter re-checks them before touching a path or an object.
"""

from __future__ import annotations

from mirror.errors import UsageError

# Local puts write ``.<name>.<token>.mirror-partial`` next to the target; keys ending in
# this suffix would be hidden by ``list`` and could be clobbered by cleanup.
PARTIAL_SUFFIX = ".mirror-partial"


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ``UsageError``."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise UsageError(f"invalid store key: {key[:200]!r}")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or key.endswith(PARTIAL_SUFFIX):
        raise UsageError(f"invalid store key: {key[:200]!r}")
    if len(parts[0]) == 2 and parts[0][1] == ":":
        raise UsageError(f"invalid store key (drive letter): {key[:200]!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix is a key without its trailing ``/``; ``""`` means the whole store."""
    stripped = prefix.rstrip("/")
    return check_key(stripped) if stripped else ""


def join(root: str, key: str) -> str:
    """``root/key`` without doubling separators (``key`` may be ``""``)."""
    if not key:
        return root.rstrip("/") or root
    return f"{root.rstrip('/')}/{key}"
