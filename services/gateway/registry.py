"""This gateway's open connections, by id, within ``WEBSOCKET_MAX_CONNECTIONS`` (WebSocket and SSE alike)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from services.gateway.connection import Connection


class ConnectionRegistry:
    """A slot is reserved before the upgrade, so concurrent handshakes cannot overshoot the limit."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._by_id: dict[str, Connection] = {}
        self._reserved = 0
        self.counts: dict[str, int] = {"ws": 0, "sse": 0}
        self._empty: asyncio.Event | None = None

    def reserve(self) -> bool:
        if len(self._by_id) + self._reserved >= self.max_connections:
            return False
        self._reserved += 1
        return True

    def unreserve(self) -> None:
        self._reserved -= 1

    def add(self, conn: Connection) -> None:
        """Take a reserved slot."""
        self._reserved -= 1
        self._by_id[conn.id] = conn
        self.counts[conn.kind] += 1

    def remove(self, conn: Connection) -> None:
        if self._by_id.pop(conn.id, None) is not None:
            self.counts[conn.kind] -= 1
            if not self._by_id and self._empty is not None:
                self._empty.set()

    async def wait_empty(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until every connection is gone; True if they all are."""
        if self._by_id:
            self._empty = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), timeout)
        return not self._by_id

    def get(self, connection_id: str) -> Connection | None:
        return self._by_id.get(connection_id)

    def snapshot(self) -> list[Connection]:
        return list(self._by_id.values())

    def __iter__(self) -> Iterator[Connection]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def authenticated(self) -> int:
        return sum(1 for c in self._by_id.values() if c.identity.subject is not None)
