"""Library objects (``EventEmitter``, ``MessageQueue``) answer the cluster's stats request like a service does."""

from __future__ import annotations

import contextlib
import secrets

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from proto.subjects import Subjects
from shared.app import VERSION
from shared.natsconn import barrier
from shared.stats_responder import StatsProvider, StatsResponder


def unique_instance(base: str) -> str:
    """``base`` plus a random suffix: two emitters in one process (same ``INSTANCE_ID``) are counted apart."""
    return f"{base}-{secrets.token_hex(4)}"


class StatsReporter:
    """Answers ``Subjects.service_stats`` of ``prefix`` with ``provider``'s sections until :meth:`stop`.

    Plain subscription, no queue group: every reporter answers each scatter-gather request once.
    """

    def __init__(self, *, service: str, instance: str, prefix: str, provider: StatsProvider,
                 timeout: float = 2.0) -> None:
        self.subject = Subjects(prefix).service_stats
        self.responder = StatsResponder(service=service, instance=instance, version=VERSION, http_url=None,
                                        provider=provider, timeout=timeout)
        self._subscription: Subscription | None = None

    @property
    def instance(self) -> str:
        return self.responder.instance

    @property
    def serving(self) -> bool:
        return self._subscription is not None

    async def start(self, nc: NATS, *, flush_timeout: float = 2.0) -> None:
        """Subscribe (idempotent); the barrier makes the next stats request see this reporter."""
        if self._subscription is not None:
            return
        self._subscription = await self.responder.serve(nc, self.subject)
        await barrier(nc, timeout=max(1.0, flush_timeout))

    async def stop(self) -> None:
        """Stop answering (idempotent); a connection already gone is fine."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
