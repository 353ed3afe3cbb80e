"""What an extension gets from the gateway: NATS, subjects, auth, metrics, settings and the SSE hook, not the app."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from proto.subjects import Subjects
from services.gateway.auth import Authenticator
from services.gateway.quota import StreamQuota
from services.gateway.settings import GatewaySettings
from services.gateway.sse import SseStream
from shared.identity import Identity
from shared.service.settings import RuntimeSettings

OpenStream = Callable[[web.Request, Identity], AbstractAsyncContextManager[SseStream]]


@dataclass(frozen=True, eq=False)
class GatewayContext:
    """Built once per gateway, before it connects: ``nc`` and ``js`` answer from ``start()`` on."""

    settings: GatewaySettings
    runtime: RuntimeSettings  # prefix, instance id
    subjects: Subjects
    authenticator: Authenticator
    metrics: CollectorRegistry  # the gateway's /metrics registry
    open_stream: OpenStream  # an SSE response whose connection the gateway tracks and cleans up
    stream_quota: StreamQuota  # leases for the other long-lived HTTP streams (runs, the dialects)
    _nats: Callable[[], NATS]
    _jetstream: Callable[[], JetStreamContext]

    @property
    def nc(self) -> NATS:
        """The gateway's NATS connection (``RuntimeError`` before the gateway started)."""
        return self._nats()

    @property
    def js(self) -> JetStreamContext:
        return self._jetstream()
