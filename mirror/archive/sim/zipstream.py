"""Streaming the series ZIP straight onto the socket with flat memory.

``zipfile`` writing to an object without ``tell``/``seek`` switches to data descriptors
(like Java's ``ZipOutputStream`` on the real server), so each entry is compressed and sent
as it is generated and nothing but the current instance is ever held; STORED entries carry
their sizes in the local header, as ``ZipOutputStream`` writes them. The
:class:`ChunkedWriter` frames the bytes as HTTP/1.1 chunks, paces them through an
injectable clock/sleep (bandwidth cap) and can cut the connection after N bytes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from typing import Protocol

CHUNK = 64 * 1024

EntrySource = tuple[str, Callable[[], bytes]]


class Truncated(Exception):
    """Raised by :class:`ChunkedWriter` when its byte budget runs out (fault injection)."""


class RawOut(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class Pacer:
    """Token-bucket pacing of one response: never faster than ``rate`` bytes/s."""

    def __init__(
        self, rate: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.start = clock()
        self.sent = 0

    def account(self, nbytes: int) -> None:
        self.sent += nbytes
        delay = self.start + self.sent / self.rate - self.clock()
        if delay > 0:
            self.sleep(delay)


class ChunkedWriter:
    """A write-only, non-seekable file object emitting HTTP chunked transfer encoding."""

    def __init__(
        self,
        raw: RawOut,
        *,
        pacer: Pacer | None = None,
        truncate_after: int | None = None,
    ) -> None:
        self._raw = raw
        self._buf = bytearray()
        self._pacer = pacer
        self._budget = truncate_after
        self.body_bytes = 0

    def write(self, data: bytes, /) -> int:
        self._buf += data
        while len(self._buf) >= CHUNK:
            self._emit(bytes(self._buf[:CHUNK]))
            del self._buf[:CHUNK]
        return len(data)

    def close(self) -> None:
        """The socket outlives the ZIP; only :meth:`finish` ends the body."""

    def flush(self) -> None:
        if self._buf:
            self._emit(bytes(self._buf))
            self._buf.clear()
        self._raw.flush()

    def finish(self) -> None:
        """Send what is buffered and the terminating zero-length chunk."""
        self.flush()
        self._raw.write(b"0\r\n\r\n")
        self._raw.flush()

    def _emit(self, data: bytes) -> None:
        if self._budget is not None and self.body_bytes + len(data) > self._budget:
            data = data[: max(0, self._budget - self.body_bytes)]
            self._send(data)
            raise Truncated
        self._send(data)

    def _send(self, data: bytes) -> None:
        if not data:
            return
        self._raw.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.body_bytes += len(data)
        if self._pacer is not None:
            self._pacer.account(len(data))


def write_zip(out: ChunkedWriter, entries: Iterable[EntrySource], compresslevel: int) -> None:
    """Write ``entries`` (name, bytes factory) as a ZIP; level 0 means stored.

    DEFLATEd entries go out with data descriptors, as ``ZipOutputStream`` sends them.
    ``ZipOutputStream`` refuses a STORED entry without its size and CRC, so those travel in
    the local header: the entry is assembled in a small seekable window (one instance), its
    header patched, and only then sent.
    """
    if compresslevel > 0:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for name, produce in entries:
                data = produce()
                with zf.open(name, "w") as member:
                    for start in range(0, len(data), CHUNK):
                        member.write(data[start : start + CHUNK])
        return
    window = _EntryWindow(out)
    with zipfile.ZipFile(window, "w", zipfile.ZIP_STORED) as zf:  # type: ignore[call-overload]
        for name, produce in entries:
            zf.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), produce())
            window.release()
    window.release()


_EPOCH = (1980, 1, 1, 0, 0, 0)


class _EntryWindow:
    """Looks seekable to ``zipfile`` but holds only the bytes since the last release."""

    def __init__(self, out: ChunkedWriter) -> None:
        self._out = out
        self._base = 0
        self._buf = bytearray()
        self._pos = 0

    def tell(self) -> int:
        return self._base + self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset < self._base:
            raise OSError("seek outside the current entry")
        self._pos = offset - self._base
        return offset

    def write(self, data: bytes, /) -> int:
        end = self._pos + len(data)
        self._buf[self._pos : end] = data
        self._pos = end
        return len(data)

    def flush(self) -> None:
        """The window is sent by :meth:`release`, never half-patched."""

    def release(self) -> None:
        self._out.write(bytes(self._buf))
        self._base += len(self._buf)
        self._buf.clear()
        self._pos = 0
