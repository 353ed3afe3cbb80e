"""Listeners: the callbacks on one pattern, sharing one NATS subscription, and the in-order delivery to them."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.events import Event, event_decoder, read_event
from shared.events.metrics import EventCounters
from shared.events.traced import TRACEPARENT, TRACESTATE, delivering
from shared.nats.direct import header_value
from shared.tracing.setup import TRACING

log = logging.getLogger("raaf.events")

Callback = Callable[[Event], Awaitable[Any] | Any]
Transform = Callable[[Event], Event | None]
MSG_ID = "Nats-Msg-Id"
_decode = event_decoder.decode
_isawaitable = inspect.isawaitable
_TRACEPARENT = TRACEPARENT.encode()
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
    """Every listener on one NATS subject pattern: one subscription, events delivered in arrival order.

    Two ways in. ``deliver(msg)`` is a nats-py subscription callback (nats-py queues, bounds and awaits).
    ``route(subject, payload, headers)`` is called from the connection's reader (``shared.nats.direct``):
    sync listeners run right there; the first awaitable a listener returns hands the rest of that event,
    and every event arriving until the work is done, to one worker task, in order, through a backlog of at
    most ``pending_limit`` events and ``pending_bytes_limit`` bytes (beyond: dropped and counted, as nats-py
    drops for a slow consumer). So an async listener is awaited before the next event, as on the nats-py path.
    """

    subject: str
    name_start: int  # where the event name starts in a subject (after "<prefix>.events.")
    counters: EventCounters
    new_id: Callable[[], str]
    on_removed: Callable[[PatternListeners, Listener], None]
    pending_limit: int = 65_536
    pending_bytes_limit: int = 128 << 20
    listeners: tuple[Listener, ...] = ()
    subscription: Subscription | None = None
    worker: asyncio.Task[None] | None = None  # set while an awaitable delivery (and its backlog) is in progress
    backlog: deque[tuple[bytes, bytes, bytes | None]] = field(default_factory=deque)
    backlog_bytes: int = 0

    def add(self, listener: Listener) -> None:
        self.listeners = (*self.listeners, listener)

    def remove(self, listener: Listener) -> None:
        if not listener.active:
            return
        listener.active = listener.plain = False
        # Copy on write: a delivery in progress keeps iterating its own tuple and skips inactive listeners.
        self.listeners = tuple(item for item in self.listeners if item is not listener)
        self.on_removed(self, listener)

    # ---- nats-py's path: a subscription callback --------------------------------------------------

    async def deliver(self, msg: Msg) -> None:
        """The subscription's callback: read the message once, then call each listener in turn."""
        # The hot path on the receiving side: one decode, then plain calls for plain listeners.
        counters = self.counters
        counters.received += 1
        try:
            event = _decode(msg.data)
        except msgspec.DecodeError:
            event = None
        name = msg.subject[self.name_start:]
        headers = msg.headers
        if type(event) is not Event or event.event != name or event.seq is not None:
            event = self._read_foreign(name, msg.data, headers.get(MSG_ID) if headers else None)
        if headers is not None and TRACING.on and TRACEPARENT in headers:  # off: one test, of a message with headers
            with delivering(event, headers[TRACEPARENT], headers.get(TRACESTATE)):
                counters.delivered += await self._deliver_all(self.listeners, event)
            return
        delivered = 0
        for listener in self.listeners:
            if listener.plain:
                try:
                    result = listener.callback(event)
                    if result is not None and _isawaitable(result):
                        await result
                    delivered += 1
                except Exception as exc:
                    self.failed(listener, event, exc)
            elif listener.active and await self._deliver_to(listener, event):
                delivered += 1
        counters.delivered += delivered

    async def _deliver_to(self, listener: Listener, event: Event) -> bool:
        """A listener that is async, ``once``, or behind a filter/map; True when it was called and returned."""
        outcome = self._start(listener, event)
        if isinstance(outcome, bool):
            return outcome
        try:
            await outcome
            return True
        except Exception as exc:
            self.failed(listener, event, exc)
            return False

    # ---- the direct path: called from the connection's reader -----------------------------------

    def route(self, subject: bytes, payload: bytes, headers: bytes | None) -> None:
        """A message from the reader: delivered now to sync listeners, or queued behind async work."""
        counters = self.counters
        counters.received += 1
        if self.worker is not None:
            self._queue(subject, payload, headers)
            return
        if headers is not None and TRACING.on and _TRACEPARENT in headers:
            # A traced event: delivered by the worker, in its span (and in order: later events queue behind it).
            self._queue(subject, payload, headers)
            self.worker = asyncio.get_running_loop().create_task(self._work_backlog())
            return
        event = self._read(subject, payload, headers)
        delivered = 0
        listeners = self.listeners
        for listener in listeners:
            if listener.plain:
                try:
                    result = listener.callback(event)
                except Exception as exc:
                    self.failed(listener, event, exc)
                    continue
                if result is not None and _isawaitable(result):
                    self._hand_over(listeners, listener, event, result, delivered)
                    return
                delivered += 1
            elif listener.active:
                outcome = self._start(listener, event)
                if outcome is True:
                    delivered += 1
                elif outcome is not False:
                    self._hand_over(listeners, listener, event, outcome, delivered)
                    return
        counters.delivered += delivered

    def _queue(self, subject: bytes, payload: bytes, headers: bytes | None) -> None:
        size = len(payload)
        if len(self.backlog) >= self.pending_limit or self.backlog_bytes + size > self.pending_bytes_limit:
            self.counters.dropped += 1
            return
        self.backlog.append((subject, payload, headers))
        self.backlog_bytes += size

    def _hand_over(self, listeners: tuple[Listener, ...], current: Listener, event: Event,
                   pending: Awaitable[Any], delivered: int) -> None:
        rest = listeners[listeners.index(current) + 1:]
        self.worker = asyncio.get_running_loop().create_task(self._work(current, event, pending, rest, delivered))

    async def _work(self, current: Listener, event: Event, pending: Awaitable[Any], rest: tuple[Listener, ...],
                    delivered: int) -> None:
        """Finish one event's delivery (await ``pending``, then the listeners after it), then the backlog."""
        counters = self.counters
        try:
            try:
                await pending
                delivered += 1
            except Exception as exc:
                self.failed(current, event, exc)
            counters.delivered += delivered + await self._deliver_all(rest, event)
            await self._deliver_backlog()
        finally:
            self.worker = None

    async def _work_backlog(self) -> None:
        try:
            await self._deliver_backlog()
        finally:
            self.worker = None

    async def _deliver_backlog(self) -> None:
        """Deliver the queued events in order, each one that carries a trace context in its CONSUMER span."""
        counters = self.counters
        backlog = self.backlog
        while backlog:
            subject, payload, headers = backlog.popleft()
            self.backlog_bytes -= len(payload)
            try:
                event = self._read(subject, payload, headers)
            except Exception:  # e.g. a subject that is not UTF-8: skip it, keep the pattern going
                log.exception("cannot read an event on %r", subject)
                continue
            parent = header_value(headers, TRACEPARENT) if headers is not None and TRACING.on else None
            if parent:
                with delivering(event, parent, header_value(headers, TRACESTATE)):
                    counters.delivered += await self._deliver_all(self.listeners, event)
            else:
                counters.delivered += await self._deliver_all(self.listeners, event)

    async def _deliver_all(self, listeners: tuple[Listener, ...], event: Event) -> int:
        delivered = 0
        for listener in listeners:
            if listener.active and await self._deliver_to(listener, event):
                delivered += 1
        return delivered

    async def idle(self) -> None:
        """Return once the worker (if any) has delivered everything queued."""
        while (worker := self.worker) is not None:
            await asyncio.shield(worker)

    def stop(self) -> None:
        """Cancel the worker and drop what it had queued (after the drain deadline)."""
        if self.worker is not None:
            self.worker.cancel()
        self.backlog.clear()
        self.backlog_bytes = 0

    # ---- reading and calling ---------------------------------------------------------------------

    def _read(self, subject: bytes, payload: bytes, headers: bytes | None) -> Event:
        try:
            event = _decode(payload)
        except msgspec.DecodeError:
            event = None
        name = subject[self.name_start:].decode()
        if type(event) is not Event or event.event != name or event.seq is not None:
            return self._read_foreign(name, payload, header_value(headers, MSG_ID))
        return event

    def _read_foreign(self, name: str, payload: bytes, msg_id: str | None) -> Event:
        return read_event(name, payload, default_id=msg_id or self.new_id(), timestamp=time.time())

    def _start(self, listener: Listener, event: Event) -> bool | Awaitable[Any]:
        """Call a listener that is async, ``once``, or behind a filter/map: True when it returned, False when it
        was skipped or raised, else the awaitable it returned (still to be awaited)."""
        try:
            if listener.transform is not None:
                transformed = listener.transform(event)
                if transformed is None:
                    return False
                event = transformed
            if listener.once:
                self.remove(listener)  # before the call, so it can never run twice
            result = listener.callback(event)
            if result is not None and _isawaitable(result):
                return result
            return True
        except Exception as exc:
            self.failed(listener, event, exc)
            return False

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
