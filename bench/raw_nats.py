"""A publish-only NATS client for load generation: a tick's PUBs (of one phase group) go out as one write.

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
    """Publishes ``head_i + stamp + tail`` to ``subject_i`` for every i of a group, in one write per group.

    The subjects are dealt into ``groups`` groups (i modulo groups), so streams can tick at different phases."""

    def __init__(self, protocol: _Protocol, subjects: Sequence[str], heads: Sequence[bytes], tail: bytes,
                 groups: int = 1) -> None:
        self._protocol = protocol
        pairs = list(zip((s.encode() for s in subjects), heads, strict=True))
        self._groups = [pairs[g::groups] for g in range(groups)]
        self._tail = tail
        self._prefixes: dict[tuple[int, int], list[bytes]] = {}  # by group and stamp length: "PUB <s> <n>\r\n<head>"

    @classmethod
    async def connect(cls, url: str, subjects: Sequence[str], heads: Sequence[bytes], tail: bytes,
                      groups: int = 1) -> TickPublisher:
        host, _, port = url.removeprefix("nats://").rpartition(":")
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, host, int(port))
        await protocol.info
        assert protocol.transport is not None
        protocol.transport.write(b'CONNECT {"verbose":false,"pedantic":false,"name":"bench-publisher"}\r\n')
        publisher = cls(protocol, subjects, heads, tail, groups)
        await publisher.flush()
        return publisher

    @property
    def groups(self) -> int:
        return len(self._groups)

    def publish_tick(self, stamp: bytes, group: int = 0) -> int:
        """Every message of ``group`` with this stamp, written at once; returns the bytes written."""
        prefixes = self._prefixes.get((group, len(stamp)))
        if prefixes is None:
            size = len(stamp) + len(self._tail)
            prefixes = self._prefixes[group, len(stamp)] = [
                b"PUB %s %d\r\n%s" % (subject, len(head) + size, head) for subject, head in self._groups[group]
            ]
        if not prefixes:
            return 0
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
