"""A publish-only NATS client for load generation: a whole tick of PUBs goes out as one socket write.

nats-py builds and buffers each publish in Python (a few microseconds each); at 100,000 messages/s that is
a large share of the CPU the servers under test compete for. Here a tick of messages to many subjects is one
``bytes.join`` and one ``write``: the payloads share everything but their subject, so each message's
``PUB`` line is built once and the tick's common tail (the timestamp onward) is the join's separator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.info: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self.pong: asyncio.Future[None] | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line.startswith(b"INFO ") and not self.info.done():
                self.info.set_result(json.loads(line[5:]))
            elif line == b"PING":
                assert self.transport is not None
                self.transport.write(b"PONG\r\n")
            elif line == b"PONG" and self.pong is not None and not self.pong.done():
                self.pong.set_result(None)
            elif line.startswith(b"-ERR"):
                raise RuntimeError(f"nats-server: {line.decode()}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pong is not None and not self.pong.done():
            self.pong.set_exception(ConnectionError("nats-server closed the connection"))


class TickPublisher:
    """Publishes ``head_i + stamp + tail`` to ``subject_i`` for every i, in one write per tick."""

    def __init__(self, protocol: _Protocol, subjects: Sequence[str], heads: Sequence[bytes], tail: bytes) -> None:
        self._protocol = protocol
        self._subjects = [s.encode() for s in subjects]
        self._heads = list(heads)
        self._tail = tail
        self._prefixes: dict[int, list[bytes]] = {}  # by the stamp's length: "PUB <subject> <size>\r\n<head>"

    @classmethod
    async def connect(cls, url: str, subjects: Sequence[str], heads: Sequence[bytes], tail: bytes
                      ) -> TickPublisher:
        host, _, port = url.removeprefix("nats://").rpartition(":")
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, host, int(port))
        await protocol.info
        assert protocol.transport is not None
        protocol.transport.write(b'CONNECT {"verbose":false,"pedantic":false,"name":"bench-publisher"}\r\n')
        publisher = cls(protocol, subjects, heads, tail)
        await publisher.flush()
        return publisher

    def publish_tick(self, stamp: bytes) -> int:
        """Every subject's message with this stamp, written at once; returns the bytes written."""
        prefixes = self._prefixes.get(len(stamp))
        if prefixes is None:
            size = len(stamp) + len(self._tail)
            prefixes = self._prefixes[len(stamp)] = [
                b"PUB %s %d\r\n%s" % (subject, len(head) + size, head)
                for subject, head in zip(self._subjects, self._heads, strict=True)
            ]
        separator = stamp + self._tail + b"\r\n"
        data = separator.join(prefixes) + separator
        assert self._protocol.transport is not None
        self._protocol.transport.write(data)
        return len(data)

    async def flush(self) -> None:
        """Wait until the server has everything written so far (a PING/PONG round trip)."""
        self._protocol.pong = asyncio.get_running_loop().create_future()
        assert self._protocol.transport is not None
        self._protocol.transport.write(b"PING\r\n")
        await asyncio.wait_for(self._protocol.pong, 30)

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
