"""Capturing a stream without letting a chatty command exhaust our memory."""

from __future__ import annotations

import asyncio

_CHUNK = 64 * 1024


class BoundedBuffer:
    """Keeps the first and last ``limit/2`` bytes of a stream and counts what was dropped."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0

    def feed(self, data: bytes) -> None:
        room = self._half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - self._half
        if excess > 0:
            self._dropped += excess
            del self._tail[:excess]

    def text(self) -> str:
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        if self._dropped:
            return f"{head}\n[... {self._dropped} bytes truncated ...]\n{tail}"
        return head + tail


async def drain(stream: asyncio.StreamReader | None, sink: BoundedBuffer) -> None:
    """Read to EOF, always: a child blocked on a full pipe would otherwise never exit."""
    if stream is None:
        return
    while chunk := await stream.read(_CHUNK):
        sink.feed(chunk)
