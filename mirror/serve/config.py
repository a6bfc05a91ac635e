"""Frozen configuration of ``mirror serve``, built once at the edge (CLI flags + environment).

Secrets never come from flags (they would show in ``ps``): ``MIRROR_SERVE_TOKEN`` (bearer) or
``MIRROR_SERVE_BASIC`` (``user:password``) switch authentication on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mirror.errors import UsageError

AuthKind = Literal["bearer", "basic"]
DEFAULT_MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class AuthConfig:
    kind: AuthKind
    secret: str  # the token, or ``user:password``

    def __repr__(self) -> str:  # never print the secret in logs or tracebacks
        return f"AuthConfig(kind={self.kind!r}, secret=***)"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep one hostile or careless request from exhausting the server."""

    max_limit: int = DEFAULT_MAX_LIMIT  # QIDO rows per page; also the default page size
    max_frames: int = 512  # frame numbers in one frames request
    max_url: int = 8192  # characters of path + query
    max_params: int = 64  # query parameters
    max_metadata_instances: int = 20_000  # instances in one metadata answer
    max_viewport: int = 4096  # pixels per side of a rendered image
    max_pixels: int = 64 * 1024 * 1024  # decoded frame size rendering accepts (bytes)

    def __post_init__(self) -> None:
        if min(self.max_limit, self.max_frames, self.max_url, self.max_params,
               self.max_metadata_instances, self.max_viewport, self.max_pixels) < 1:
            raise UsageError("serve limits must be positive")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    dest: str
    host: str = "127.0.0.1"
    port: int = 8080
    viewer: str | None = None  # a prebuilt OHIF ``dist/`` folder hosted on the same origin
    state_dir: str | None = None  # sync ledger: its withdrawn tombstones stay hidden
    cors_origins: tuple[str, ...] = ()
    public_url: str | None = None  # e.g. https://mirror.example.org behind a reverse proxy
    auth: AuthConfig | None = None
    refresh_seconds: float = 5.0  # how often LATEST is re-read to pick up a new snapshot
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError("--port must be between 0 and 65535")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise UsageError("--public-url must start with http:// or https://")
        if self.refresh_seconds < 0:
            raise UsageError("refresh interval must be >= 0")


def auth_from_env(env: Mapping[str, str] | None = None) -> AuthConfig | None:
    """Authentication from ``MIRROR_SERVE_TOKEN`` or ``MIRROR_SERVE_BASIC`` (not both)."""
    source = os.environ if env is None else env
    token, basic = source.get("MIRROR_SERVE_TOKEN", ""), source.get("MIRROR_SERVE_BASIC", "")
    if token and basic:
        raise UsageError("set MIRROR_SERVE_TOKEN or MIRROR_SERVE_BASIC, not both")
    if token:
        return AuthConfig("bearer", token)
    if basic:
        if ":" not in basic or basic.startswith(":"):
            raise UsageError("MIRROR_SERVE_BASIC must be user:password")
        return AuthConfig("basic", basic)
    return None
