"""The server's front door (pure ASGI): request ids, bounds, traversal, authentication.

Every response carries ``X-Request-ID`` (the client's, when it is a sane token, else a new
one); refusals are logged with it. The checks run before routing, so a hostile request
never reaches the index or the store.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from mirror.serve.config import AuthConfig, Limits

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_OPEN_PATHS = ("/healthz",)


def request_id(scope: Scope) -> str:
    state: dict[str, Any] = scope.get("state", {})
    return str(state.get("request_id", "-"))


class Guard:
    def __init__(self, app: ASGIApp, *, limits: Limits, auth: AuthConfig | None) -> None:
        self.app, self.limits, self.auth = app, limits, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        refusal = self._refuse(scope)
        if refusal is not None:
            status, reason, extra = refusal
            log.warning("%s %s -> %d %s [request %s]", scope["method"],
                        scope["path"][:200], status, reason, rid)
            await _answer(send_with_id, status, reason, rid, extra)
            return
        await self.app(scope, receive, send_with_id)

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                text = str(value.decode("latin-1"))
                if _REQUEST_ID.fullmatch(text):
                    return text
        return uuid.uuid4().hex[:16]

    def _refuse(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        method, path = scope["method"], scope["path"]
        raw = scope.get("raw_path", b"").decode("latin-1").lower()
        query = scope.get("query_string", b"").decode("latin-1")
        if method not in ("GET", "HEAD", "OPTIONS"):
            return 405, "read-only server: GET, HEAD and OPTIONS only", {"Allow": "GET, HEAD"}
        if len(raw) + len(query) > self.limits.max_url:
            return 414, "URL too long", {}
        if _traversal(path, raw):
            return 400, "path traversal refused", {}
        if len(parse_qsl(query, keep_blank_values=True)) > self.limits.max_params:
            return 400, f"more than {self.limits.max_params} query parameters", {}
        if _has_body(scope):
            return 413, "requests must not carry a body", {}
        return self._challenge(scope)

    def _challenge(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        if self.auth is None or scope["method"] == "OPTIONS" or scope["path"] in _OPEN_PATHS:
            return None
        if _authorised(self.auth, scope):
            return None
        challenge = 'Basic realm="mirror"' if self.auth.kind == "basic" else "Bearer"
        return 401, "authentication required", {"WWW-Authenticate": challenge}


def _traversal(path: str, raw: str) -> bool:
    parts = path.split("/")
    return (".." in parts or "." in parts or "\\" in path or "\x00" in path
            or "%2e" in raw or "%2f" in raw or "%5c" in raw or "%00" in raw)


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
        if name == b"transfer-encoding":
            return True
    return False


def _authorised(auth: AuthConfig, scope: Scope) -> bool:
    header = next((v.decode("latin-1") for n, v in scope.get("headers", ())
                   if n == b"authorization"), "")
    scheme, _, credentials = header.partition(" ")
    if auth.kind == "bearer":
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), auth.secret.encode())
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return scheme.lower() == "basic" and hmac.compare_digest(decoded, auth.secret.encode())


async def _answer(send: Send, status: int, reason: str, rid: str,
                  extra: dict[str, str]) -> None:
    body = json.dumps({"error": reason, "request_id": rid}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               *((k.lower().encode(), v.encode()) for k, v in extra.items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
