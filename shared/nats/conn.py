"""NATS connection that keeps reconnecting forever, with backoff, and counts what happens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import nats
from nats.aio.client import Client as NATS

from shared.nats.auth import NatsAuth

log = logging.getLogger("raaf.nats")


class NatsEvents:
    """Callbacks the connection calls on state changes (metrics, readiness)."""

    def __init__(
        self,
        on_disconnect: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.on_disconnect = on_disconnect
        self.on_reconnect = on_reconnect
        self.on_error = on_error


async def connect_nats(
    url: str,
    *,
    name: str,
    reconnect_wait: float = 1.0,
    ping_interval: float = 10.0,
    events: NatsEvents | None = None,
    stop: asyncio.Event | None = None,
    max_initial_wait: float = 5.0,
    options: Mapping[str, Any] | None = None,
    auth: NatsAuth | None = None,
) -> NATS:
    """Connect, retrying the first connection forever (capped exponential backoff with jitter).

    Once connected, nats-py reconnects on its own forever; ``stop`` aborts the initial retry loop.
    ``options`` are passed on to ``Client.connect`` (e.g. ``skip_subject_validation``, ``pending_size``);
    ``auth`` adds the user, creds file and TLS context (``NATS_USER`` ..., ``shared.nats.auth``).
    """
    events = events or NatsEvents()
    client: NATS

    async def disconnected() -> None:
        # nats-py calls this on its own close() and drain() too; only an unplanned loss is news.
        if client.is_closed:
            log.debug("nats connection closed")
            return
        log.warning("nats disconnected")
        if events.on_disconnect:
            events.on_disconnect()

    async def reconnected() -> None:
        log.info("nats reconnected")
        if events.on_reconnect:
            events.on_reconnect()

    async def error(exc: Exception) -> None:
        log.debug("nats error: %s", exc)
        if events.on_error:
            events.on_error(exc)

    # nats-py annotates the waits as int, but takes (and these settings are) fractional seconds.
    settings: dict[str, Any] = {
        "servers": [u.strip() for u in url.split(",")],
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": reconnect_wait,
        "ping_interval": ping_interval,
        "max_outstanding_pings": 2,
        "connect_timeout": 2,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        **(auth.options() if auth is not None else {}),
        **(options or {}),
    }
    attempt = 0
    while True:
        client = NATS()  # a fresh client per attempt: a failed connect leaves one closed
        try:
            await client.connect(**settings)
            return client
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            attempt += 1
            delay = min(max_initial_wait, reconnect_wait * 2 ** min(attempt, 10)) * (0.5 + random.random() / 2)
            log.warning("nats not reachable (%s); retrying in %.1fs", exc, delay, extra={"attempt": attempt})
            if stop is not None:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    continue
                raise ConnectionAbortedError("stopped before NATS was reachable") from exc
            await asyncio.sleep(delay)


async def barrier(nc: NATS, timeout: float = 5.0) -> None:
    """Return once the server has processed everything this client sent before (SUBs included).

    ``nc.flush()`` does not guarantee that: nats-py writes its PING straight to the socket while
    earlier commands may still wait in its pending buffer, so the PONG can come back before the
    server saw a SUB. A message to a fresh inbox travels behind everything queued before it.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        await nc.publish(inbox, b"")
        await sub.next_msg(timeout)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
