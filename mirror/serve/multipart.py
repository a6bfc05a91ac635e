"""``multipart/related`` bodies, written part by part so a series is never held in memory.

The wire format is the one both clients parse (dicomweb.md 1.5): the boundary in the
Content-Type header (Python client) and as the body's first line (JS client, cornerstone),
each part's header spelled exactly ``Content-Type:``, a random boundary per response.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator


def new_boundary() -> str:
    return uuid.uuid4().hex


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    ts = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"{ts}; boundary={boundary}'


def part_header(boundary: str, media: str, transfer_syntax: str | None = None) -> bytes:
    ts = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f"--{boundary}\r\nContent-Type: {media}{ts}\r\n\r\n".encode()


def stream(
    boundary: str, parts: Iterable[tuple[str, str | None, Iterable[bytes]]]
) -> Iterator[bytes]:
    """Yield the body: for each ``(media, transfer_syntax, chunks)`` a header and its bytes."""
    for media, ts, chunks in parts:
        yield part_header(boundary, media, ts)
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()
