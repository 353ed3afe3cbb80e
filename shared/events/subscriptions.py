"""The event bus's listeners: one NATS subscription per pattern, its listeners, and their drain on removal or close."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from shared.errors import ConnectionError, listener_limit
from shared.events.listeners import Callback, Listener, PatternListeners, Transform
from shared.events.metrics import EventCounters
from shared.events.settings import EventSettings
from shared.nats.conn import barrier
from shared.nats.direct import DirectDelivery


class Subscriptions:
    """Listener patterns and their subscriptions on one connection (``attach`` it on connect)."""

    def __init__(self, settings: EventSettings, counters: EventCounters, *, name_start: int,
                 new_id: Callable[[], str], listen_subject: Callable[[str], str]) -> None:
        self.settings = settings
        self.counters = counters
        self._name_start = name_start
        self._new_id = new_id
        self._listen_subject = listen_subject
        self._nc: NATS | None = None
        self.direct: DirectDelivery | None = None  # set on attach when EVENTS_DIRECT_DELIVERY
        self.closing = False  # the bus is closing: a removed pattern is not drained on its own any more
        self._patterns: dict[str, PatternListeners] = {}
        self._listeners: dict[str, tuple[PatternListeners, Listener]] = {}
        self._cleanups: set[asyncio.Task[None]] = set()

    def attach(self, nc: NATS, direct: DirectDelivery | None) -> None:
        self._nc = nc
        self.direct = direct

    async def add(self, nc: NATS, pattern: str, callback: Callback, *, once: bool,
                  transform: Transform | None) -> str:
        """Register ``callback`` on ``pattern``; once this returns, NATS delivers every later event to it."""
        if not callable(callback):
            raise TypeError(f"a listener must be callable, not {type(callback).__name__}")
        subject = self._listen_subject(pattern)
        group = self._patterns.get(subject)
        listener = Listener(id=f"lst-{uuid.uuid4().hex}", pattern=pattern, callback=callback, once=once,
                            transform=transform)
        if group is not None:
            if len(group.listeners) >= self.settings.max_listeners:
                raise listener_limit(pattern, self.settings.max_listeners)
            self._register(group, listener)
            return listener.id
        if len(self._patterns) >= self.settings.max_patterns:
            raise listener_limit(pattern, self.settings.max_patterns, "distinct patterns on this emitter")
        group = PatternListeners(subject=subject, name_start=self._name_start, counters=self.counters,
                                 new_id=self._new_id, on_removed=self._listener_removed,
                                 pending_limit=self.settings.pending_limit,
                                 pending_bytes_limit=self.settings.pending_bytes_limit)
        self._patterns[subject] = group
        self.counters.patterns += 1
        self._register(group, listener)
        try:
            if self.direct is not None:
                group.subscription = await self.direct.subscribe_messages(subject, group.route)
            else:
                group.subscription = await nc.subscribe(
                    subject, cb=group.deliver, pending_msgs_limit=self.settings.pending_limit,
                    pending_bytes_limit=self.settings.pending_bytes_limit)
            # Not flush(): nats-py can send its PING ahead of a SUB still in its buffer.
            await barrier(nc, timeout=max(1.0, self.settings.publish_timeout))
        except (nats.errors.Error, TimeoutError) as exc:
            self.remove(listener.id)
            raise ConnectionError(f"cannot listen on {pattern!r}: {exc!r}") from exc
        return listener.id

    def _register(self, group: PatternListeners, listener: Listener) -> None:
        group.add(listener)
        self._listeners[listener.id] = (group, listener)
        self.counters.listeners += 1

    def remove(self, listener_id: str) -> bool:
        """Remove one listener; False when no listener has that id (any more)."""
        entry = self._listeners.get(listener_id)
        if entry is None:
            return False
        group, listener = entry
        group.remove(listener)
        return True

    def _listener_removed(self, group: PatternListeners, listener: Listener) -> None:
        """Called by the group for every removal (``off``, a ``once`` that fired); the last one ends the pattern."""
        self._listeners.pop(listener.id, None)
        self.counters.listeners -= 1
        if group.listeners:
            return
        if self._patterns.get(group.subject) is group:
            del self._patterns[group.subject]
            self.counters.patterns -= 1
        if group.subscription is not None and not self.closing:
            # Drain, not unsubscribe: the delivery in progress (maybe a once listener's call) must finish.
            task = asyncio.get_running_loop().create_task(self._drain(group))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def _drain(self, group: PatternListeners) -> None:
        """Unsubscribe ``group`` and let its listeners finish what already arrived."""
        subscription: Any = group.subscription  # nats-py's drain() has no annotations
        assert subscription is not None
        with contextlib.suppress(Exception):
            if self.direct is not None:
                await self.direct.drain(subscription)
            else:
                await subscription.drain()
        await group.idle()

    def count(self, pattern: str | None = None) -> int:
        if pattern is None:
            return len(self._listeners)
        group = self._patterns.get(self._listen_subject(pattern))
        return 0 if group is None else len(group.listeners)

    async def close(self, timeout: float) -> None:
        """Deliver what listeners already received (within ``timeout``), then unsubscribe every pattern."""
        groups = list(self._patterns.values())
        self._patterns.clear()
        self._listeners.clear()
        subscribed = [group for group in groups if group.subscription is not None]
        if subscribed and self._nc is not None and self._nc.is_connected:
            # Drain (listeners finish what already arrived) within one deadline; a stuck listener is cut off.
            loop = asyncio.get_running_loop()
            drains = [loop.create_task(self._drain(group)) for group in subscribed]
            _, late = await asyncio.wait(drains, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        for group in subscribed:
            group.stop()
            assert group.subscription is not None
            if self.direct is not None:
                self.direct.forget(group.subscription)
            with contextlib.suppress(Exception):
                await group.subscription.unsubscribe()
        for group in groups:
            for listener in group.listeners:
                listener.active = False
        self.counters.listeners = self.counters.patterns = 0
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=timeout)
