"""``EventEmitter``: the seed's publish/subscribe event system, over NATS subjects with JetStream history."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from proto.events import Event
from shared.errors import event_timeout
from shared.events.bus import EventBus
from shared.events.listeners import Callback, Transform
from shared.events.settings import EventSettings
from shared.service.overrides import configured_environ

__all__ = ["Event", "EventEmitter"]


class EventEmitter:
    """Publish and listen to application events: ``emit("user.login", data)`` is the NATS subject
    ``<prefix>.events.user.login``; ``on("user.*", cb)`` and ``on("user.**", cb)`` use NATS's own wildcards.

    ``async with EventEmitter(max_listeners=50) as emitter:`` (or ``await emitter.connect()`` ... ``close()``).
    Arguments left as None come from ``settings`` (default: :meth:`EventSettings.from_env`); ``nc`` shares
    an existing NATS connection instead of opening one; ``registry`` receives the Prometheus metrics
    (default: prometheus_client's default registry). While connected it answers ``raaf.stats()`` as service
    ``event-emitter`` (section ``event_emitter``) unless ``report_stats=False`` (``EVENTS_REPORT_STATS``).
    ``direct_delivery=False`` (``EVENTS_DIRECT_DELIVERY``) takes listener events through nats-py's own
    per-subscription queue and task instead of dispatching them from the connection's reader;
    ``lean_publish=False`` (``EVENTS_LEAN_PUBLISH``) publishes through nats-py's generic ``publish``.
    """

    def __init__(self, max_listeners: int | None = None, enable_wildcards: bool | None = None,
                 enable_history: bool | None = None, *, history_size: int | None = None,
                 confirm: bool | None = None, source: str | None = None, settings: EventSettings | None = None,
                 nc: NATS | None = None, registry: CollectorRegistry | None = None,
                 provision: bool = True, report_stats: bool | None = None,
                 direct_delivery: bool | None = None, lean_publish: bool | None = None) -> None:
        settings = EventSettings.from_env(configured_environ()) if settings is None else settings
        overrides: dict[str, Any] = {key: value for key, value in (
            ("max_listeners", max_listeners), ("enable_wildcards", enable_wildcards),
            ("enable_history", enable_history), ("history_size", history_size), ("confirm", confirm),
            ("source", source), ("report_stats", report_stats), ("direct_delivery", direct_delivery),
            ("lean_publish", lean_publish)) if value is not None}
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
        self._bus = EventBus(settings, nc=nc, registry=registry, provision=provision)
        self._transform: Transform | None = None
        self._root = True

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def settings(self) -> EventSettings:
        return self._bus.settings

    @property
    def connected(self) -> bool:
        return self._bus.connected

    async def connect(self) -> Self:
        """Connect to NATS and provision the history stream (idempotent); return self."""
        await self._bus.connect()
        return self

    async def close(self) -> None:
        """Stop taking work, finish emits in flight, let listeners handle what arrived, disconnect.

        A derived emitter (from ``filter``/``map``) shares its parent's connection and does not close it.
        """
        if self._root:
            await self._bus.close()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # ---- emitting ------------------------------------------------------------------------------

    async def emit(self, event: str, data: Any = None, *, id: str | None = None,
                   confirm: bool | None = None, source: str | None = None) -> Event:
        """Publish ``event`` with ``data`` (anything JSON-encodable) and return the envelope sent.

        With history on and ``confirm`` (default ``EVENTS_CONFIRM``, true), return once JetStream has
        stored it; a try that is not acknowledged is repeated with the same ``id``, which JetStream stores
        once. Pass your own ``id`` to make an emit you may repeat idempotent; ``source`` overrides
        ``EVENTS_SOURCE`` for this event.
        """
        return await self._bus.emit(event, data, event_id=id, confirm=confirm, source=source)

    def emit_async(self, event: str, data: Any = None, *, id: str | None = None,
                   confirm: bool | None = None, source: str | None = None) -> asyncio.Future[Event]:
        """Start an emit without waiting; the returned future resolves to the envelope (or the emit's error).

        Emits started this way are published in order by one writer and, when confirmed, acknowledged by
        JetStream in a pipeline (many in flight), so they are much faster than awaiting each ``emit``. A bad
        name, unencodable data or an oversized event raise here at once. At most ``EVENTS_MAX_PENDING_EMITS``
        are in flight (:class:`raaf.errors.EmitBacklogError` beyond).
        """
        return self._bus.emit_async(event, data, event_id=id, confirm=confirm, source=source)

    # ---- listening -----------------------------------------------------------------------------

    async def on(self, pattern: str, callback: Callback) -> str:
        """Call ``callback(event)`` (a function or an async function) for every event matching ``pattern``.

        ``*`` matches one token, a last ``**`` or ``>`` any number (one or more). Returns the listener id for
        :meth:`off`. Once ``on`` returns, every event emitted afterwards, by anyone, reaches the callback.
        A callback that raises is logged and counted; the other listeners still get the event.
        """
        return await self._bus.add_listener(pattern, callback, transform=self._transform)

    async def once(self, pattern: str, callback: Callback) -> str:
        """Like :meth:`on`, but the listener is removed when it first fires (it never fires twice)."""
        return await self._bus.add_listener(pattern, callback, once=True, transform=self._transform)

    async def off(self, listener_id: str) -> bool:
        """Remove a listener; False if there was none with that id (or a ``once`` listener already fired)."""
        return self._bus.remove_listener(listener_id)

    async def wait_for_event(self, pattern: str, timeout: float | None = None) -> Event:
        """The next event matching ``pattern``; :class:`raaf.errors.EventTimeoutError` after ``timeout``
        seconds (default ``EVENTS_WAIT_TIMEOUT``)."""
        seconds = self.settings.wait_timeout if timeout is None else timeout
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        def resolve(event: Event) -> None:
            if not future.done():
                future.set_result(event)

        listener_id: str | None = None
        try:
            async with asyncio.timeout(seconds):
                listener_id = await self.once(pattern, resolve)
                return await future
        except builtins.TimeoutError:
            raise event_timeout(pattern, seconds) from None
        finally:
            if listener_id is not None:
                self._bus.remove_listener(listener_id)

    def event_subject(self, event: str) -> str:
        """The NATS subject of an event name (``user.login`` -> ``<prefix>.events.user.login``), checked."""
        return self._bus.event_subject(event)

    def listen_subject(self, pattern: str) -> str:
        """The NATS subject (with NATS wildcards) a listener pattern maps to, checked."""
        return self._bus.listen_subject(pattern)

    def listener_count(self, pattern: str | None = None) -> int:
        """Listeners on ``pattern`` (all listeners of the emitter when None)."""
        return self._bus.listener_count(pattern)

    # ---- derived emitters ----------------------------------------------------------------------

    def filter(self, predicate: Callable[[Event], bool]) -> EventEmitter:
        """An emitter whose listeners (and history, and wait_for_event) only see events ``predicate`` accepts."""
        return self._derive(lambda event: event if predicate(event) else None)

    def map(self, function: Callable[[Event], Event]) -> EventEmitter:
        """An emitter whose listeners (and history, and wait_for_event) see ``function(event)`` instead."""
        return self._derive(function)

    def _derive(self, step: Transform) -> EventEmitter:
        parent = self._transform
        if parent is None:
            transform = step
        else:
            def transform(event: Event) -> Event | None:
                first = parent(event)
                return None if first is None else step(first)
        derived = object.__new__(EventEmitter)
        derived._bus = self._bus
        derived._transform = transform
        derived._root = False
        return derived

    # ---- history and stats ---------------------------------------------------------------------

    async def history(self, pattern: str = "**", *, limit: int | None = None, since: float | datetime | None = None,
                      after_seq: int | None = None) -> list[Event]:
        """Stored events matching ``pattern``, oldest first, each with its stream ``seq``.

        Without a start: the last ``limit`` (default ``EVENTS_HISTORY_SIZE``). With ``since`` (Unix seconds or
        a datetime) or ``after_seq`` (a ``seq`` you have seen): the first ``limit`` from there, to page
        forward. Never more than ``EVENTS_HISTORY_MAX_READ`` per call.
        """
        events = await self._bus.history(pattern, limit=limit, since=since, after_seq=after_seq)
        transform = self._transform
        if transform is None:
            return events
        return [out for event in events if (out := transform(event)) is not None]

    def stats(self) -> dict[str, Any]:
        """Counters and settings of this emitter (shared with the emitters derived from it)."""
        return self._bus.stats()
