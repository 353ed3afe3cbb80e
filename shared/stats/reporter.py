"""Library objects (``EventEmitter``, ``MessageQueue``) answer the cluster's stats request like a service does."""

from __future__ import annotations

import contextlib
import secrets
import time

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.lifecycle import ServiceStarted, ServiceStopping, lifecycle_encoder
from proto.subjects import Subjects
from shared.nats.conn import barrier
from shared.stats.responder import StatsProvider, StatsResponder
from shared.version import VERSION


def unique_instance(base: str) -> str:
    """``base`` plus a random suffix: two emitters in one process (same ``INSTANCE_ID``) are counted apart."""
    return f"{base}-{secrets.token_hex(4)}"


class StatsReporter:
    """Answers ``Subjects.service_stats`` of ``prefix`` with ``provider``'s sections until :meth:`stop`.

    Plain subscription, no queue group: every reporter answers each scatter-gather request once. Not being a
    micro service, it makes itself known the way services do besides ``$SRV.PING``: a ``service_started``
    announcement (``kind="reporter"``) on start, the same announcement as its answer on
    ``Subjects.stats_reporters`` (discovery), and ``service_stopping`` on stop. So a gather that returns once
    every known instance answered waits for it too.
    """

    def __init__(self, *, service: str, instance: str, prefix: str, provider: StatsProvider,
                 timeout: float = 2.0) -> None:
        self.subjects = Subjects(prefix)
        self.subject = self.subjects.service_stats
        self.responder = StatsResponder(service=service, instance=instance, version=VERSION, http_url=None,
                                        provider=provider, timeout=timeout)
        self._nc: NATS | None = None
        self._subscriptions: list[Subscription] = []
        self._announcement = b""

    @property
    def instance(self) -> str:
        return self.responder.instance

    @property
    def serving(self) -> bool:
        return bool(self._subscriptions)

    async def start(self, nc: NATS, *, flush_timeout: float = 2.0) -> None:
        """Subscribe and announce (idempotent); the barrier makes the next stats request see this reporter."""
        if self._subscriptions:
            return
        r = self.responder
        self._announcement = lifecycle_encoder.encode(ServiceStarted(
            service=r.service, instance=r.instance, version=r.version, at=time.time(), kind="reporter"))
        self._nc = nc
        self._subscriptions = [await r.serve(nc, self.subject),
                               await nc.subscribe(self.subjects.stats_reporters, cb=self._answer_discovery)]
        await nc.publish(self.subjects.service_lifecycle(r.service), self._announcement)
        await barrier(nc, timeout=max(1.0, flush_timeout))

    async def stop(self) -> None:
        """Stop answering and say so (idempotent); a connection already gone is fine."""
        subscriptions, self._subscriptions = self._subscriptions, []
        if not subscriptions or self._nc is None:
            return
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        service = self.responder.service
        stopping = lifecycle_encoder.encode(ServiceStopping(service=service, instance=self.instance, at=time.time()))
        with contextlib.suppress(Exception):
            await self._nc.publish(self.subjects.service_lifecycle(service), stopping)
            if self._nc.is_connected:  # the next stats request must not wait for this reporter
                await barrier(self._nc, timeout=1.0)

    async def _answer_discovery(self, msg: Msg) -> None:
        if msg.reply and self._nc is not None:
            await self._nc.publish(msg.reply, self._announcement)
