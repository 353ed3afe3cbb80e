"""The event bus under every EventEmitter: one NATS connection, emits, listener subscriptions and history."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from proto.events import Event, event_encoder
from proto.subjects import InvalidNameError, Subjects
from shared.errors import (
    ConnectionError,
    HistoryUnavailableError,
    event_too_large,
    invalid_event_data,
    invalid_event_name,
)
from shared.events.history import MSG_ID, EventHistory, events_stream_config
from shared.events.listeners import Callback, Transform
from shared.events.metrics import EventCounters, EventMetrics
from shared.events.outbox import PUBLISH_ERRORS, Outbox
from shared.events.settings import EventSettings
from shared.events.subscriptions import Subscriptions
from shared.events.traced import emitting
from shared.nats import fastpaths
from shared.nats.auth import redacted
from shared.nats.conn import NatsEvents, connect_nats
from shared.nats.direct import DirectDelivery
from shared.nats.jetstream import ensure_stream
from shared.stats.reporter import StatsReporter, unique_instance
from shared.tracing.setup import TRACING

log = logging.getLogger("raaf.events")

_SUBJECT_CACHE_SIZE = 4096
_now = time.time
_encode = event_encoder.encode


def _log_failed_emit(future: asyncio.Future[Event]) -> None:
    # Reading the exception marks it retrieved: an emit_async nobody awaits is logged here, not at GC time.
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("emit_async failed: %s", exc, extra={"error": type(exc).__name__})


class EventBus:
    """Connection, emits, one subscription per listener pattern, history reads and counters.

    ``EventEmitter`` (and the emitters ``filter``/``map`` derive from it) are views of one bus.
    """

    def __init__(self, settings: EventSettings, *, nc: NATS | None = None, registry: CollectorRegistry | None = None,
                 provision: bool = True) -> None:
        self.settings = settings
        self.subjects = Subjects(settings.runtime.prefix)
        self._name_start = len(self.subjects.prefix) + len(".events.")
        self._nc = nc
        self._owns_connection = nc is None
        self._provision = provision
        self._js: JetStreamContext | None = None
        self._history: EventHistory | None = None
        self.counters = EventCounters()
        self.metrics = EventMetrics.attach(self.counters, registry)
        self._subject_cache: dict[str, str] = {}
        self._id_prefix = f"{secrets.token_hex(8)}-"
        self._next_seq = itertools.count(1).__next__
        self._subscriptions = Subscriptions(settings, self.counters, name_start=self._name_start,
                                            new_id=self.new_id, listen_subject=self.listen_subject)
        self._outbox: Outbox | None = None  # set on connect
        self._connected = False
        self._closed = False
        self._open = False  # connected and not closed: the one check on the emit path
        self._publish: Callable[[str, bytes], Awaitable[None]] = self._not_connected
        self._lean_publish = False  # set on connect: EVENTS_LEAN_PUBLISH and the client has the expected shape
        self._max_size = settings.max_event_size
        self._source = settings.source or None
        self._history_on = settings.enable_history
        self._confirm = settings.enable_history and settings.confirm
        self.reporter: StatsReporter | None = None
        if settings.report_stats:
            self.reporter = StatsReporter(
                service="event-emitter", instance=unique_instance(settings.runtime.instance_id),
                prefix=settings.runtime.prefix, provider=self.stats_section, timeout=settings.runtime.stats_timeout)

    # ---- connection ----------------------------------------------------------------------------

    @property
    def nc(self) -> NATS:
        if self._nc is None or not self._connected:
            raise ConnectionError("the event emitter is not connected: await connect() first")
        return self._nc

    @property
    def connected(self) -> bool:
        return self._connected and self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect (unless given a connection) and provision the history stream; idempotent."""
        if self._closed:
            raise ConnectionError("the event emitter is closed")
        if self._connected:
            return
        runtime = self.settings.runtime
        nc = self._nc
        if nc is None:
            try:
                nc = self._nc = await asyncio.wait_for(connect_nats(
                    runtime.nats_url, name=f"{runtime.prefix}-events:{self.settings.source}",
                    reconnect_wait=runtime.nats_reconnect_wait, ping_interval=runtime.nats_ping_interval,
                    events=NatsEvents(on_error=self._on_nats_error),
                    # Every subject this connection uses is built from checked names and patterns.
                    options={"skip_subject_validation": True}, auth=runtime.nats_auth), self.settings.connect_timeout)
            except TimeoutError:
                raise ConnectionError(f"NATS at {redacted(runtime.nats_url)} not reachable within "
                                      f"{self.settings.connect_timeout:g}s") from None
        self._max_size = min(self.settings.max_event_size, nc.max_payload)
        if self._history_on:
            self._js = nc.jetstream(timeout=self.settings.publish_timeout)
            if self._provision:
                try:
                    await ensure_stream(self._js, events_stream_config(self.subjects, self.settings))
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.Error) as exc:
                    await self._close_own_connection()
                    if self._owns_connection:
                        self._nc = None
                    reason = getattr(exc, "description", None) or repr(exc)
                    raise HistoryUnavailableError(
                        f"cannot provision the events stream: {reason} (is JetStream enabled, with room for "
                        "EVENTS_HISTORY_MAX_BYTES? EVENTS_ENABLE_HISTORY=false runs without history)") from exc
            self._history = EventHistory(nc, self._js, self.subjects, timeout=self.settings.publish_timeout)
        paths = fastpaths.install(nc, direct=self.settings.direct_delivery, lean_publish=self.settings.lean_publish)
        self._lean_publish = paths.lean_publish
        self._publish = fastpaths.LeanPublish(nc).publish if paths.lean_publish else nc.publish
        self._subscriptions.attach(nc, DirectDelivery(nc) if paths.direct else None)
        self._outbox = Outbox(nc, self._js, self.counters, self.metrics, timeout=self.settings.publish_timeout,
                              retries=self.settings.publish_retries, limit=self.settings.max_pending_emits)
        self._connected = self._open = True
        if self.reporter is not None:
            await self.reporter.start(nc, flush_timeout=self.settings.publish_timeout)

    async def close(self) -> None:
        """Stop taking work, finish emits in flight, deliver what listeners already received, disconnect."""
        if self._closed:
            return
        self._closed = True
        self._open = False
        self._subscriptions.closing = True
        if self.reporter is not None:
            await self.reporter.stop()
        timeout = self.settings.runtime.shutdown_timeout
        if self._outbox is not None:
            await self._outbox.drain(timeout)
        self._publish = self._not_connected
        await self._subscriptions.close(timeout)
        await self._close_own_connection()
        self._connected = False

    async def _close_own_connection(self) -> None:
        if self._owns_connection and self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), self.settings.runtime.shutdown_timeout)
            except Exception:
                with contextlib.suppress(Exception):
                    await self._nc.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionError("the event emitter is closed")
        if not self._connected:
            raise ConnectionError("the event emitter is not connected: await connect() first")

    async def _not_connected(self, subject: str, payload: bytes) -> None:
        raise ConnectionError("the event emitter is not connected (or already closed)")

    def _on_nats_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            self.counters.dropped += 1

    # ---- names ---------------------------------------------------------------------------------

    def event_subject(self, name: str) -> str:
        """``user.login`` -> ``<prefix>.events.user.login``; a bad name is an :class:`InvalidEventNameError`."""
        subject = self._subject_cache.get(name)
        if subject is None:
            try:
                subject = self.subjects.event(name)
            except InvalidNameError as exc:
                raise invalid_event_name(name, exc.reason) from None
            if len(self._subject_cache) >= _SUBJECT_CACHE_SIZE:
                self._subject_cache.clear()
            self._subject_cache[name] = subject
        return subject

    def listen_subject(self, pattern: str) -> str:
        """A listener pattern (``user.*``, ``user.**``) as a NATS subject with wildcards, checked."""
        try:
            subject = self.subjects.event_listen(pattern)
        except InvalidNameError as exc:
            raise invalid_event_name(pattern, exc.reason) from None
        tail = subject[self._name_start:]
        if not self.settings.enable_wildcards and ("*" in tail or ">" in tail):
            raise invalid_event_name(pattern, "wildcards are disabled (EVENTS_ENABLE_WILDCARDS=false)")
        return subject

    def new_id(self) -> str:
        return f"{self._id_prefix}{self._next_seq()}"

    # ---- emit ----------------------------------------------------------------------------------

    def _envelope(self, name: str, data: Any, event_id: str | None, source: str | None) -> tuple[str, Event, bytes]:
        """The subject, envelope and encoded bytes of one event, or the typed error that stops it."""
        subject = self._subject_cache.get(name)
        if subject is None:
            subject = self.event_subject(name)
        event = Event(event=name, data=data, id=f"{self._id_prefix}{self._next_seq()}" if event_id is None
                      else event_id, timestamp=_now(), source=self._source if source is None else source)
        try:
            payload = _encode(event)
        except (TypeError, msgspec.EncodeError) as exc:
            self.counters.emit_failures += 1
            raise invalid_event_data(name, str(exc)) from None
        if len(payload) > self._max_size:
            self.counters.emit_failures += 1
            raise event_too_large(name, len(payload), self._max_size)
        return subject, event, payload

    def _unconfirmed_headers(self, event_id: str | None) -> dict[str, str] | None:
        # Unconfirmed, only an id the caller chose can be emitted again, so only then does the Msg-Id header
        # (and its parsing on every receiver) buy anything.
        return {MSG_ID: event_id} if event_id is not None and self._history_on else None

    async def emit(self, name: str, data: Any = None, *, event_id: str | None = None,
                   confirm: bool | None = None, source: str | None = None) -> Event:
        """Publish one event; with history and ``confirm``, return once JetStream has stored it."""
        # The hot path of the event system: an unconfirmed emit is one envelope and one publish. The common
        # case (cached subject, own id and source, unconfirmed) is written out here without helper calls;
        # every other case goes through the same _envelope as emit_async.
        if not self._open:
            self._check_open()
        if TRACING.on:  # the one check tracing adds here: off, nothing else changes
            return await self._emit_traced(name, data, event_id, confirm, source)
        subject = self._subject_cache.get(name)
        if subject is None or event_id is not None or source is not None:
            subject, event, payload = self._envelope(name, data, event_id, source)
        else:
            event = Event(event=name, data=data, id=f"{self._id_prefix}{self._next_seq()}", timestamp=_now(),
                          source=self._source)
            try:
                payload = _encode(event)
            except (TypeError, msgspec.EncodeError) as exc:
                self.counters.emit_failures += 1
                raise invalid_event_data(name, str(exc)) from None
            if len(payload) > self._max_size:
                self.counters.emit_failures += 1
                raise event_too_large(name, len(payload), self._max_size)
        if self._confirm if confirm is None else confirm and self._history_on:
            assert self._outbox is not None
            return await self._outbox.submit(subject, payload, event, confirm=True, headers={MSG_ID: event.id})
        try:
            if event_id is None or (headers := self._unconfirmed_headers(event_id)) is None:
                await self._publish(subject, payload)  # the lean path: no headers
            else:
                await self.nc.publish(subject, payload, headers=headers)
        except PUBLISH_ERRORS as exc:
            self.counters.emit_failures += 1
            raise ConnectionError(f"cannot emit {name!r}: {exc!r}") from exc
        self.counters.emitted += 1
        return event

    async def _emit_traced(self, name: str, data: Any, event_id: str | None, confirm: bool | None,
                           source: str | None) -> Event:
        """``emit`` while tracing is on: in a PRODUCER span whose context the message's headers carry."""
        subject, event, payload = self._envelope(name, data, event_id, source)
        confirmed = self._confirm if confirm is None else confirm and self._history_on
        with emitting(event, {MSG_ID: event.id} if confirmed else self._unconfirmed_headers(event_id)) as headers:
            if confirmed:
                assert self._outbox is not None
                return await self._outbox.submit(subject, payload, event, confirm=True, headers=headers)
            try:
                await self.nc.publish(subject, payload, headers=headers)
            except PUBLISH_ERRORS as exc:
                self.counters.emit_failures += 1
                raise ConnectionError(f"cannot emit {name!r}: {exc!r}") from exc
        self.counters.emitted += 1
        return event

    def emit_async(self, name: str, data: Any = None, *, event_id: str | None = None,
                   confirm: bool | None = None, source: str | None = None) -> asyncio.Future[Event]:
        """Hand an emit to the outbox and return its future; at most EVENTS_MAX_PENDING_EMITS at once."""
        self._check_open()
        subject, event, payload = self._envelope(name, data, event_id, source)
        confirmed = self._confirm if confirm is None else confirm and self._history_on
        assert self._outbox is not None
        headers = {MSG_ID: event.id} if confirmed else self._unconfirmed_headers(event_id)
        if TRACING.on:
            with emitting(event, headers) as traced:
                future = self._outbox.submit(subject, payload, event, confirm=confirmed, headers=traced)
        else:
            future = self._outbox.submit(subject, payload, event, confirm=confirmed, headers=headers)
        future.add_done_callback(_log_failed_emit)
        return future

    # ---- listeners -----------------------------------------------------------------------------

    async def add_listener(self, pattern: str, callback: Callback, *, once: bool = False,
                           transform: Transform | None = None) -> str:
        """Register ``callback`` on ``pattern``; once this returns, NATS delivers every later event to it."""
        self._check_open()
        return await self._subscriptions.add(self.nc, pattern, callback, once=once, transform=transform)

    def remove_listener(self, listener_id: str) -> bool:
        """Remove one listener; False when no listener has that id (any more)."""
        return self._subscriptions.remove(listener_id)

    def listener_count(self, pattern: str | None = None) -> int:
        return self._subscriptions.count(pattern)

    # ---- history -------------------------------------------------------------------------------

    async def history(self, pattern: str, *, limit: int | None, since: float | datetime | None,
                      after_seq: int | None) -> list[Event]:
        """Stored events on ``pattern``: the last ``limit``, or the first ``limit`` from a time or sequence."""
        self._check_open()
        if self._history is None:
            raise HistoryUnavailableError("event history is disabled (EVENTS_ENABLE_HISTORY=false)")
        if since is not None and after_seq is not None:
            raise ValueError("give since or after_seq, not both")
        subject = self.listen_subject(pattern)
        count = min(self.settings.history_size if limit is None else limit, self.settings.history_max_read)
        if count <= 0:
            return []
        if since is None and after_seq is None:
            return await self._history.last(subject, count)
        start_time = since.timestamp() if isinstance(since, datetime) else since
        start_seq = None if after_seq is None else after_seq + 1
        return await self._history.since(subject, start_seq=start_seq, start_time=start_time, limit=count)

    # ---- stats ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters.as_dict(),
            "pending_emits": 0 if self._outbox is None else len(self._outbox),
            "connected": self.connected,
            "history_enabled": self._history_on,
            "wildcards_enabled": self.settings.enable_wildcards,
            "direct_delivery": self._subscriptions.direct is not None,
            "lean_publish": self._lean_publish,
            "max_listeners": self.settings.max_listeners,
            "history_size": self.settings.history_size,
        }

    def stats_section(self) -> dict[str, Any]:
        """This emitter's ``event_emitter`` section of ``raaf.stats()`` (the seed's shape)."""
        counters = self.counters
        return {"event_emitter": {"listeners": counters.listeners, "emitted": counters.emitted,
                                  "delivered": counters.delivered,
                                  "errors": counters.listener_errors + counters.emit_failures}}
