"""Helpers for the event system's tests: emitters on a unique prefix, and waiting for a condition."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from raaf.event_settings import EventSettings
from raaf.events import EventEmitter

_unique = itertools.count()


def unique_prefix() -> str:
    return f"ev{os.getpid()}x{next(_unique)}x{time.monotonic_ns() % 1_000_000}"


def event_settings(nats_url: str, prefix: str, **env: str) -> EventSettings:
    return EventSettings.from_env({"NATS_URL": nats_url, "RAAF_PREFIX": prefix, "NATS_RECONNECT_WAIT": "0.2",
                                   "SHUTDOWN_TIMEOUT": "5", **env})


@asynccontextmanager
async def emitters(nats_url: str, **env: str) -> AsyncIterator[Callable[..., Awaitable[EventEmitter]]]:
    """A factory of connected emitters sharing one fresh prefix; all are closed at the end."""
    prefix = unique_prefix()
    made: list[EventEmitter] = []

    async def make(**kwargs: Any) -> EventEmitter:
        kwargs.setdefault("registry", CollectorRegistry())
        emitter = EventEmitter(settings=event_settings(nats_url, prefix, **env), **kwargs)
        made.append(emitter)
        return await emitter.connect()

    try:
        yield make
    finally:
        for emitter in made:
            await emitter.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
