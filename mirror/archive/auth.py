"""Optional OAuth tokens for the NBIA API (public v4 data needs none).

A stale token is worse than none (the server answers 401), so the token is refreshed at
least ``margin`` seconds before ``expires_in`` runs out and never sent past its expiry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from mirror.errors import ArchiveProtocolError, AuthError

REFRESH_MARGIN = 60.0


def token_url_for(base_url: str) -> str:
    """``https://host/nbia-api/services/v4/`` -> ``https://host/nbia-api/oauth/token``."""
    parts = urlsplit(base_url)
    path = parts.path
    root = path[: path.index("/nbia-api/")] if "/nbia-api/" in path else ""
    return f"{parts.scheme}://{parts.netloc}{root}/nbia-api/oauth/token"


class TokenManager:
    """Password-grant tokens, refreshed before expiry; thread-safe and picklable."""

    def __init__(
        self,
        token_url: str,
        username: str,
        password: str,
        *,
        client_id: str = "NBIA",
        clock: Callable[[], float] = time.monotonic,
        margin: float = REFRESH_MARGIN,
    ) -> None:
        self.token_url = token_url
        self.username = username
        self.password = password
        self.client_id = client_id
        self.clock = clock
        self.margin = margin
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def headers(self, client: httpx.Client) -> dict[str, str]:
        """The Authorization header, fetching or refreshing the token as needed."""
        with self._lock:
            if self._access is None or self.clock() >= self._expires_at - self.margin:
                self._renew(client)
            return {"Authorization": f"Bearer {self._access}"}

    def _renew(self, client: httpx.Client) -> None:
        if self._refresh is not None:
            try:
                self._store(
                    self._post(
                        client, {"grant_type": "refresh_token", "refresh_token": self._refresh}
                    )
                )
                return
            except AuthError:
                self._refresh = None  # refresh token expired too: fall back to the password
        self._store(
            self._post(
                client,
                {"grant_type": "password", "username": self.username, "password": self.password},
            )
        )

    def _post(self, client: httpx.Client, form: dict[str, str]) -> dict[str, Any]:
        started = self.clock()
        try:
            resp = client.post(self.token_url, data={**form, "client_id": self.client_id})
        except httpx.HTTPError as exc:
            raise AuthError(f"token endpoint unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise AuthError(f"token request refused ({resp.status_code}): {resp.text[:200]}")
        try:
            data = resp.json()
            data["_started"] = started
            int(data["expires_in"])
            str(data["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveProtocolError(f"malformed token response: {resp.text[:200]}") from exc
        return dict(data)

    def _store(self, data: dict[str, Any]) -> None:
        self._access = str(data["access_token"])
        self._refresh = data.get("refresh_token") or None
        # Lifetime counts from when we asked, so network delay never makes us overshoot.
        self._expires_at = float(data["_started"]) + int(data["expires_in"])
