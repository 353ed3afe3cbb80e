"""Messages from nats-py's parser straight to a function, skipping its per-message ``Msg``, queue and task hop.

nats-py hands every message of a callback subscription through a ``Msg`` object, an asyncio queue and a
task switch: about a microsecond a message, often the largest cost of a busy subscriber. For the
subscriptions registered here, the client's ``_process_msg`` (pinned by ``uv.lock``; tests/test_nats_direct.py
exercises it) calls a plain function instead, synchronously, in arrival order, inside the connection's reader.
Everything else (requests, JetStream, other subscriptions) takes nats-py's normal path.

What this gives up, and the route must provide itself where it matters: nats-py's per-subscription pending
limits and slow-consumer errors (a route that has to await work buffers it, bounded, itself) and its
``Msg`` (a route gets the subject, payload and raw header bytes). A route must not block; an exception it
raises is logged and the reader carries on.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

log = logging.getLogger("raaf.nats_direct")

Route = Callable[[bytes], None]  # the payload only
MessageRoute = Callable[[bytes, bytes, bytes | None], None]  # subject, payload, raw headers (None without)

_HEADER_LINE = b"NATS/1.0"


class _Routes:
    """The routes of one connection; installed once per client, shared by every DirectDelivery on it."""

    __slots__ = ("messages", "payloads")

    def __init__(self) -> None:
        self.payloads: dict[int, Route] = {}
        self.messages: dict[int, MessageRoute] = {}


# Keyed weakly by the client; a _Routes holds no reference back to it, so a dropped client is collected.
_installed: weakref.WeakKeyDictionary[NATS, _Routes] = weakref.WeakKeyDictionary()


def _install(nc: NATS) -> _Routes:
    routes = _installed.get(nc)
    if routes is not None:
        return routes
    routes = _installed[nc] = _Routes()
    original: Any = nc._process_msg
    stats: dict[str, Any] = nc.stats
    payloads = routes.payloads
    messages = routes.messages

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        route = payloads.get(sid)
        if route is not None:
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            try:
                route(data)
            except Exception:
                log.exception("delivering a message on %s failed", subject)
            return
        message_route = messages.get(sid)
        if message_route is None:
            await original(sid, subject, reply, data, headers)
            return
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            message_route(subject, data, headers)
        except Exception:
            log.exception("delivering a message on %s failed", subject)

    nc._process_msg = process_msg  # type: ignore[method-assign]
    return routes


class DirectDelivery:
    """Subscriptions on ``nc`` whose messages go to a function from the reader (see the module docstring)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._routes = _install(nc)

    async def subscribe(self, subject: str, route: Route) -> Subscription:
        """A subscription whose messages go to ``route(payload)``, synchronously, in arrival order."""
        sub: Subscription = await self.nc.subscribe(subject)
        self._routes.payloads[sub._id] = route
        return sub

    async def subscribe_messages(self, subject: str, route: MessageRoute) -> Subscription:
        """A subscription whose messages go to ``route(subject, payload, raw_headers)``, in arrival order."""
        sub: Subscription = await self.nc.subscribe(subject)
        self._routes.messages[sub._id] = route
        return sub

    def forget(self, sub: Subscription) -> None:
        """Stop routing ``sub``'s messages (after a drain: nothing more arrives for it)."""
        self._routes.payloads.pop(sub._id, None)
        self._routes.messages.pop(sub._id, None)

    async def unsubscribe(self, sub: Subscription) -> None:
        """Unsubscribe at once; messages still on their way are dropped by nats-py."""
        self.forget(sub)
        await sub.unsubscribe()

    async def drain(self, sub: Subscription) -> None:
        """Unsubscribe, and deliver what the server sent before it saw that (a round trip), then stop routing."""
        untyped: Any = sub  # nats-py's drain() has no annotations
        try:
            await untyped.drain()
        finally:
            self.forget(sub)


def header_value(raw: bytes | None, key: str) -> str | None:
    """The value of header ``key`` in a message's raw NATS header block (``NATS/1.0\\r\\nKey: value\\r\\n...``)."""
    if not raw or not raw.startswith(_HEADER_LINE):
        return None
    wanted = key.encode()
    for line in raw.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip() == wanted:
            return value.strip().decode("utf-8", "replace")
    return None
