"""Answer statistics requests for one process: its sections in the seed's shape, typed, within a time limit."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.stats import SECTION_NAMES, InstanceStats, stats_encoder

log = logging.getLogger("raaf.stats")

# What a process reports: ``{"websocket_server": {...}, ...}`` (the seed's shape) or section Structs by name.
StatsSnapshot = Mapping[str, Any]
StatsProvider = Callable[[], StatsSnapshot | Awaitable[StatsSnapshot]]


class StatsResponder:
    """Turns a provider's snapshot into an :class:`InstanceStats` answer.

    A provider that raises, times out or returns an unknown section or a mistyped figure yields an answer
    with ``error`` set, never a crash. ``last`` keeps the latest good snapshot for ``$SRV.STATS``.
    """

    def __init__(
        self,
        *,
        service: str,
        instance: str,
        version: str,
        http_url: str | None,
        provider: StatsProvider,
        timeout: float = 2.0,
    ) -> None:
        self.service = service
        self.instance = instance
        self.version = version
        self.http_url = http_url
        self.provider = provider
        self.timeout = timeout
        self.last: dict[str, Any] = {}

    async def answer(self) -> InstanceStats:
        identity: dict[str, Any] = {
            "service": self.service, "instance": self.instance, "version": self.version,
            "http_url": self.http_url, "at": time.time(),
        }
        try:
            snapshot = await asyncio.wait_for(self._snapshot(), self.timeout)
            unknown = set(snapshot) - set(SECTION_NAMES)
            if unknown:
                raise ValueError(f"unknown stats sections {sorted(unknown)}")
            answer = msgspec.convert({**snapshot, **identity}, InstanceStats, from_attributes=True)
        except TimeoutError:
            return InstanceStats(**identity, error=f"stats took longer than {self.timeout:g}s")
        except Exception as exc:
            log.warning("stats provider failed: %s", exc, extra={"service": self.service})
            return InstanceStats(**identity, error=f"{type(exc).__name__}: {exc}")
        self.last = {name: msgspec.to_builtins(getattr(answer, name)) for name in SECTION_NAMES
                     if getattr(answer, name) is not None}
        return answer

    async def reply_bytes(self) -> bytes:
        return stats_encoder.encode(await self.answer())

    async def serve(self, nc: NATS, subject: str) -> Subscription:
        """Answer on ``subject`` with a plain subscription (for processes that are not micro services)."""

        async def handle(msg: Msg) -> None:
            if msg.reply:
                await nc.publish(msg.reply, await self.reply_bytes())

        return await nc.subscribe(subject, cb=handle)

    async def _snapshot(self) -> StatsSnapshot:
        result = self.provider()
        if inspect.isawaitable(result):
            result = await result
        return result
