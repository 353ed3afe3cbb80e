"""This gateway's open connections, by id, within ``WEBSOCKET_MAX_CONNECTIONS`` (WebSocket, SSE and the run streams
alike), ``GATEWAY_MAX_CONNECTIONS_PER_IDENTITY`` per subject and ``GATEWAY_MAX_CONNECTIONS_PER_ADDRESS`` per client
address."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from services.gateway.connection import Connection
from services.gateway.errors import (
    too_many_address_connections,
    too_many_connections,
    too_many_identity_connections,
)
from shared.identity import Identity


class ConnectionRegistry:
    """A slot is reserved before the upgrade, so concurrent handshakes cannot overshoot the limit."""

    def __init__(self, max_connections: int, max_per_identity: int = 0, max_per_address: int = 0) -> None:
        self.max_connections = max_connections
        self.max_per_identity = max_per_identity  # 0: no limit
        self.max_per_address = max_per_address  # 0: no limit
        self._per_subject: dict[str, int] = {}
        self._per_address: dict[str, int] = {}
        self._by_id: dict[str, Connection] = {}
        self._reserved = 0
        self.streams = 0  # leased HTTP streams (services.gateway.quota.StreamQuota): counted, not Connections
        self.counts: dict[str, int] = {"ws": 0, "sse": 0}
        self._empty: asyncio.Event | None = None

    def reserve(self) -> bool:
        if len(self._by_id) + self._reserved + self.streams >= self.max_connections:
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
        self._count(conn.identity.subject, 1)
        self._count_address(conn.address, 1)

    def connections_of(self, subject: str) -> int:
        return self._per_subject.get(subject, 0)

    def connections_from(self, address: str) -> int:
        return self._per_address.get(address, 0)

    def admits(self, identity: Identity) -> bool:
        """Whether one more connection of this identity fits (anonymous ones are not counted)."""
        subject = identity.subject
        return subject is None or not self.max_per_identity or self._per_subject.get(subject, 0) < self.max_per_identity

    def admits_address(self, address: str | None) -> bool:
        """Whether one more connection from this client address fits (every connection counts, anonymous too)."""
        return (address is None or not self.max_per_address
                or self._per_address.get(address, 0) < self.max_per_address)

    def check(self, identity: Identity, address: str | None) -> None:
        """Raise the typed error of the first per-identity or per-address limit one more connection would pass."""
        if not self.admits(identity):
            raise too_many_identity_connections(self.max_per_identity)
        if not self.admits_address(address):
            raise too_many_address_connections(self.max_per_address)

    def lease(self, identity: Identity, address: str | None) -> None:
        """Count one long-lived HTTP stream (no :class:`Connection`) against every limit, or raise
        ``LimitReached``; undo with :meth:`unlease`."""
        if len(self._by_id) + self._reserved + self.streams >= self.max_connections:
            raise too_many_connections(self.max_connections)
        self.check(identity, address)
        self.streams += 1
        self.counts["sse"] += 1
        self._count(identity.subject, 1)
        self._count_address(address, 1)

    def unlease(self, identity: Identity, address: str | None) -> None:
        self.streams -= 1
        self.counts["sse"] -= 1
        self._count(identity.subject, -1)
        self._count_address(address, -1)

    def authenticate(self, conn: Connection, identity: Identity) -> None:
        """The connection's identity becomes ``identity`` (the same subject, or its first); refused with a typed
        error when that identity holds its limit of connections already."""
        first = conn.identity.subject is None and identity.subject is not None and conn.id in self._by_id
        if first and not self.admits(identity):
            raise too_many_identity_connections(self.max_per_identity)
        conn.identity = identity
        if first:
            self._count(identity.subject, 1)

    def _count(self, subject: str | None, delta: int) -> None:
        if subject is not None:
            _add(self._per_subject, subject, delta)

    def _count_address(self, address: str | None, delta: int) -> None:
        if address is not None:
            _add(self._per_address, address, delta)

    def remove(self, conn: Connection) -> None:
        if self._by_id.pop(conn.id, None) is not None:
            self.counts[conn.kind] -= 1
            self._count(conn.identity.subject, -1)
            self._count_address(conn.address, -1)
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


def _add(counts: dict[str, int], key: str, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
