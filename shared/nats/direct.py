"""Messages from the connection's reader straight to a function, skipping nats-py's per-message ``Msg``, queue and task.

nats-py hands every message of a callback subscription through a ``Msg`` object, an asyncio queue and a
task switch: about a microsecond a message, often the largest cost of a busy subscriber. For the
subscriptions made here, a plain function is called instead, synchronously, in arrival order, inside the
connection's reader (the ``direct`` path of :mod:`shared.nats.fastpaths`, which holds the nats-py internals
it needs). Everything else (requests, JetStream, other subscriptions) takes nats-py's normal path.

What this gives up, and the route must provide itself where it matters: nats-py's per-subscription pending
limits and slow-consumer errors (a route that has to await work buffers it, bounded, itself) and its
``Msg`` (a route gets the subject, payload and raw header bytes). A route must not block; an exception it
raises is logged and the reader carries on.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from shared.nats import fastpaths
from shared.nats.fastpaths import MessageRoute, Route

_HEADER_LINE = b"NATS/1.0"


class DirectDelivery:
    """Subscriptions on ``nc`` whose messages go to a function from the reader (see the module docstring).

    Only for a client that ``fastpaths.install(nc, direct=True)`` said yes for; otherwise the constructor
    raises :class:`shared.nats.fastpaths.FastPathUnavailable` and the caller subscribes through nats-py."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._routes = fastpaths.routes(nc)

    async def subscribe(self, subject: str, route: Route) -> Subscription:
        """A subscription whose messages go to ``route(payload)``, synchronously, in arrival order."""
        sub: Subscription = await self.nc.subscribe(subject)
        self._routes.add(sub, route)
        return sub

    async def subscribe_messages(self, subject: str, route: MessageRoute) -> Subscription:
        """A subscription whose messages go to ``route(subject, payload, raw_headers)``, in arrival order."""
        sub: Subscription = await self.nc.subscribe(subject)
        self._routes.add_messages(sub, route)
        return sub

    def forget(self, sub: Subscription) -> None:
        """Stop routing ``sub``'s messages (after a drain: nothing more arrives for it)."""
        self._routes.forget(sub)

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
