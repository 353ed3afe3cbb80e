"""Helpers for the event system's tests: emitters on a unique prefix, their settings, their stream removed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
import nats.js.errors
from prometheus_client import CollectorRegistry

from proto.subjects import Subjects
from raaf.events import EventEmitter
from shared.events.settings import EventSettings
from tests.support.env import unique_prefix

# Small streams: JetStream reserves each stream's max bytes, and the session's server holds many.
TEST_ENV = {"NATS_RECONNECT_WAIT": "0.2", "SHUTDOWN_TIMEOUT": "5", "EVENTS_HISTORY_MAX_BYTES": str(8 << 20)}


# What the delivery_path fixture (tests/conftest.py) sets for the "nats-py" runs: nats-py's own paths.
NATS_PY_PATHS = {"EVENTS_DIRECT_DELIVERY": "false", "EVENTS_LEAN_PUBLISH": "false"}


def event_settings(nats_url: str, prefix: str, **env: str) -> EventSettings:
    return EventSettings.from_env({"NATS_URL": nats_url, "RAAF_PREFIX": prefix, **TEST_ENV, **env})


async def delete_events_stream(nats_url: str, prefix: str) -> None:
    """Remove the events stream a test created (if the server is still up)."""
    with contextlib.suppress(Exception):
        nc = await nats.connect(nats_url, connect_timeout=1, max_reconnect_attempts=0)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(Subjects(prefix).stream_name("events"))
        finally:
            await nc.close()


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
        await delete_events_stream(nats_url, prefix)
