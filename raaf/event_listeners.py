"""Listeners: the callbacks on one pattern, sharing one NATS subscription, and the in-order delivery to them."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.events import Event, event_decoder, read_event
from raaf.event_metrics import EventCounters

log = logging.getLogger("raaf.events")

Callback = Callable[[Event], Awaitable[Any] | Any]
Transform = Callable[[Event], Event | None]
MSG_ID = "Nats-Msg-Id"
_decode = event_decoder.decode
_LOG_EVERY = 1.0  # seconds: a listener that fails on every event logs once a second, with a count of the rest


@dataclass(eq=False, slots=True)
class Listener:
    """One registered callback. ``transform`` is what derived (filter/map) emitters put in front of it."""

    id: str
    pattern: str
    callback: Callback
    once: bool
    transform: Transform | None = None
    is_async: bool = False
    active: bool = True
    plain: bool = False  # active, sync, no transform, not once: called straight from the delivery loop
    errors: int = 0
    last_logged: float = 0.0
    unlogged: int = 0

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.callback)
        self.plain = not self.is_async and not self.once and self.transform is None


@dataclass(eq=False, slots=True)
class PatternListeners:
    """Every listener on one NATS subject pattern: one subscription, events delivered in arrival order."""

    subject: str
    name_start: int  # where the event name starts in a subject (after "<prefix>.events.")
    counters: EventCounters
    new_id: Callable[[], str]
    on_removed: Callable[[PatternListeners, Listener], None]
    listeners: tuple[Listener, ...] = ()
    subscription: Subscription | None = None

    def add(self, listener: Listener) -> None:
        self.listeners = (*self.listeners, listener)

    def remove(self, listener: Listener) -> None:
        if not listener.active:
            return
        listener.active = listener.plain = False
        # Copy on write: a delivery in progress keeps iterating its own tuple and skips inactive listeners.
        self.listeners = tuple(item for item in self.listeners if item is not listener)
        self.on_removed(self, listener)

    async def deliver(self, msg: Msg) -> None:
        """The subscription's callback: read the message once, then call each listener in turn."""
        # The hot path on the receiving side: one decode, then plain calls for plain listeners.
        counters = self.counters
        counters.received += 1
        try:
            event = _decode(msg.data)
        except msgspec.DecodeError:
            event = None
        if type(event) is not Event or event.event != msg.subject[self.name_start:] or event.seq is not None:
            event = self._read_foreign(msg)
        delivered = 0
        for listener in self.listeners:
            if listener.plain:
                try:
                    result = listener.callback(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
                    delivered += 1
                except Exception as exc:
                    self.failed(listener, event, exc)
            elif listener.active and await self._deliver_to(listener, event):
                delivered += 1
        counters.delivered += delivered

    async def _deliver_to(self, listener: Listener, event: Event) -> bool:
        """A listener that is async, ``once``, or behind a filter/map; True when it was called and returned."""
        try:
            if listener.transform is not None:
                transformed = listener.transform(event)
                if transformed is None:
                    return False
                event = transformed
            if listener.once:
                self.remove(listener)  # before the call, so it can never run twice
            result = listener.callback(event)
            if listener.is_async or (result is not None and inspect.isawaitable(result)):
                await result
            return True
        except Exception as exc:
            self.failed(listener, event, exc)
            return False

    def _read_foreign(self, msg: Msg) -> Event:
        headers = msg.headers
        msg_id = headers.get(MSG_ID) if headers else None
        return read_event(msg.subject[self.name_start:], msg.data, default_id=msg_id or self.new_id(),
                          timestamp=time.time())

    def failed(self, listener: Listener, event: Event, exc: Exception) -> None:
        """Count and log a listener that raised; the other listeners carry on."""
        self.counters.listener_errors += 1
        listener.errors += 1
        now = time.monotonic()
        if now - listener.last_logged < _LOG_EVERY:
            listener.unlogged += 1
            return
        log.error("event listener raised", exc_info=exc, extra={
            "listener_id": listener.id, "pattern": listener.pattern, "event": event.event, "event_id": event.id,
            "listener_errors": listener.errors, "unlogged_since_last": listener.unlogged,
        })
        listener.last_logged = now
        listener.unlogged = 0
