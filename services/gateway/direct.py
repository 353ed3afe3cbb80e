"""Channel messages from nats-py's parser straight to the fan-out, skipping its per-message machinery.

nats-py hands every message of a callback subscription through a ``Msg`` object, an asyncio queue
and a task switch: several microseconds a message, the gateway's largest cost after the socket
writes. For the subscriptions registered here, the client's ``_process_msg`` (pinned by ``uv.lock``;
the channel tests exercise it) calls a plain function with the payload instead. Everything else
(requests, JetStream, other subscriptions) takes nats-py's normal path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

log = logging.getLogger("raaf.gateway.direct")

Route = Callable[[bytes], None]


class DirectDelivery:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._routes: dict[int, Route] = {}
        original = nc._process_msg
        stats: dict[str, Any] = nc.stats

        async def process_msg(sid: int, subject: Any, reply: Any, data: bytes, headers: Any) -> None:
            route = self._routes.get(sid)
            if route is None:
                await original(sid, subject, reply, data, headers)
                return
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            try:
                route(data)
            except Exception:
                log.exception("delivering a message on %s failed", subject)

        nc._process_msg = process_msg  # type: ignore[method-assign]

    async def subscribe(self, subject: str, route: Route) -> Subscription:
        """A subscription whose messages go to ``route(payload)``, synchronously, in arrival order."""
        sub: Subscription = await self.nc.subscribe(subject)
        self._routes[sub._id] = route
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        self._routes.pop(sub._id, None)
        await sub.unsubscribe()
