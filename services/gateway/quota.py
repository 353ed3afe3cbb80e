"""Per-identity quotas: runs or rooms one identity may start per minute, and the long-lived HTTP streams it holds."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from proto.errors import Error, ErrorCode
from services.gateway.addresses import ClientAddresses
from services.gateway.errors import LimitReached, identity_rate_limited
from services.gateway.metrics import GatewayCounters
from services.gateway.registry import ConnectionRegistry
from shared.identity import Identity


class IdentityRate:
    """A token bucket per subject (``per_minute`` at once, refilled evenly); 0 turns it off. Anonymous callers
    (auth mode ``none``: loopback or an explicit opt-in) are not counted. At most ``max_identities`` buckets
    are kept, the least recently used dropped first (a dropped bucket starts full again)."""

    def __init__(self, per_minute: int, *, what: str, setting: str, max_identities: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.what = what
        self.setting = setting
        self.max_identities = max_identities
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # subject -> (tokens, at)

    def take(self, identity: Identity) -> None:
        """Count one more; raise :class:`IdentityRateLimited` (with ``retry_after``) when none is left."""
        subject = identity.subject
        if self.per_minute <= 0 or subject is None:
            return
        now = self.clock()
        tokens, at = self._buckets.pop(subject, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * self.per_minute / 60.0)
        if tokens < 1.0:
            self._buckets[subject] = (tokens, now)
            raise identity_rate_limited(self.what, self.per_minute, self.setting,
                                      retry_after=(1.0 - tokens) * 60.0 / self.per_minute)
        self._buckets[subject] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_identities:
            self._buckets.popitem(last=False)


class StreamLease:
    """One long-lived HTTP stream's slot, held from before its run starts until it ends (``with lease:``).

    ``async with lease.until_expiry():`` around the stream's loop ends it when the identity's token expires
    (``exp``): the block raises ``TimeoutError`` and :attr:`expired` is True, so the route can write its dialect's
    final error event (:meth:`error`) before it closes."""

    __slots__ = ("_released", "_timeout", "address", "identity", "quota")

    def __init__(self, quota: StreamQuota, identity: Identity, address: str | None) -> None:
        self.quota = quota
        self.identity = identity
        self.address = address
        self._timeout: asyncio.Timeout | None = None
        self._released = False

    def until_expiry(self) -> asyncio.Timeout:
        expires = self.identity.expires_at
        if expires is None:
            self._timeout = asyncio.timeout(None)
        else:
            loop = asyncio.get_running_loop()
            self._timeout = asyncio.timeout_at(loop.time() + max(0.0, expires - time.time()))
        return self._timeout

    @property
    def expired(self) -> bool:
        return self._timeout is not None and self._timeout.expired()

    @staticmethod
    def error() -> Error:
        return Error(code=ErrorCode.UNAUTHORIZED, message="token expired: the stream ends; authenticate again "
                     "and resume")

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.quota.release(self)

    def __enter__(self) -> StreamLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StreamQuota:
    """Every long-lived HTTP stream the gateway serves (a run's SSE events, Chat Completions and Responses streams,
    the AI SDK UI stream, AG-UI) counts as a connection: against ``WEBSOCKET_MAX_CONNECTIONS``, its identity's
    ``GATEWAY_MAX_CONNECTIONS_PER_IDENTITY`` and its address's ``GATEWAY_MAX_CONNECTIONS_PER_ADDRESS``, beside the
    WebSocket and channel SSE connections; and it ends when its token expires."""

    def __init__(self, registry: ConnectionRegistry, addresses: ClientAddresses, counters: GatewayCounters) -> None:
        self.registry = registry
        self.addresses = addresses
        self.counters = counters

    def take(self, request: web.BaseRequest, identity: Identity) -> StreamLease:
        """A lease for one more stream of ``identity`` from ``request``'s address, or ``LimitReached``."""
        address = self.addresses.of(request)
        try:
            self.registry.lease(identity, address)
        except LimitReached:
            self.counters.refused["max_connections"] += 1
            raise
        self.counters.connections_opened["sse"] += 1
        return StreamLease(self, identity, address)

    def release(self, lease: StreamLease) -> None:
        self.registry.unlease(lease.identity, lease.address)
        self.counters.disconnects["unauthorized" if lease.expired else "normal"] += 1

