"""Pipelined emits: one writer task publishes queued events; JetStream acks resolve them; unacked ones are retried."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck

from proto.events import Event
from shared.errors import ConnectionError, emit_backlog, emit_failed
from shared.events.metrics import EventCounters, EventMetrics

# Errors after which the same id is published again: nothing (or nothing we heard of) was stored.
_RETRYABLE = (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError,
              nats.errors.NoRespondersError)
PUBLISH_ERRORS = (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError,
                   nats.errors.ConnectionDrainingError, nats.errors.ConnectionReconnectingError)


@dataclass(eq=False, slots=True)
class PendingEmit:
    subject: str
    payload: bytes
    event: Event
    confirm: bool
    headers: dict[str, str] | None
    future: asyncio.Future[Event]
    tries: int = 0
    deadline: float = 0.0
    acked: bool = False
    ack: asyncio.Future[PubAck] | None = None
    reason: str = ""


class Outbox:
    """Emits handed over without waiting: published in order by one task, confirmed by JetStream's acks.

    A confirmed emit that is not acknowledged within ``timeout`` (or whose stream did not answer) is published
    again with the same ``Nats-Msg-Id``, up to ``retries`` more times; JetStream stores it once.
    """

    def __init__(self, nc: NATS, js: JetStreamContext | None, counters: EventCounters, metrics: EventMetrics, *,
                 timeout: float, retries: int, limit: int) -> None:
        self._nc = nc
        self._js = js
        self._counters = counters
        self._metrics = metrics
        self._timeout = timeout
        self._retries = retries
        self._limit = limit
        self._queue: deque[PendingEmit] = deque()
        self._inflight: deque[PendingEmit] = deque()  # published, awaiting an ack; deadlines ascend
        self._waiting = 0  # published and not yet acknowledged, plus those waiting to be retried
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Emits accepted and not yet finished."""
        return len(self._queue) + self._waiting

    def submit(self, subject: str, payload: bytes, event: Event, *, confirm: bool,
               headers: dict[str, str] | None) -> asyncio.Future[Event]:
        if len(self) >= self._limit:
            raise emit_backlog(len(self))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Event] = loop.create_future()
        self._queue.append(PendingEmit(subject, payload, event, confirm, headers, future))
        self._idle.clear()
        self._wake.set()
        if self._writer is None:
            self._writer = loop.create_task(self._write(), name="raaf-events-outbox")
        return future

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until every accepted emit has finished; fail what is left; stop the writer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for item in (*self._queue, *self._inflight):
            if not item.future.done():
                item.future.set_exception(ConnectionError("the event emitter closed before the emit finished"))
                self._counters.emit_failures += 1
        self._queue.clear()
        self._inflight.clear()

    async def _write(self) -> None:
        while True:
            self._expire()
            if not self._queue:
                if self._waiting == 0:
                    self._idle.set()
                self._wake.clear()
                delay = self._inflight[0].deadline - time.monotonic() if self._inflight else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), None if delay is None else max(0.0, delay))
                continue
            item = self._queue.popleft()
            if item.future.done():  # cancelled by its caller
                continue
            try:
                await self._publish(item)
            except PUBLISH_ERRORS as exc:
                self._fail(item, ConnectionError(f"cannot emit {item.event.event!r}: {exc!r}"))

    async def _publish(self, item: PendingEmit) -> None:
        if not item.confirm or self._js is None:
            await self._nc.publish(item.subject, item.payload, headers=item.headers)
            self._counters.emitted += 1
            item.future.set_result(item.event)
            return
        item.tries += 1
        item.acked = False
        self._waiting += 1
        try:
            item.ack = await self._js.publish_async(item.subject, item.payload, headers=item.headers)
        except BaseException:
            self._waiting -= 1
            raise
        item.deadline = time.monotonic() + self._timeout
        self._inflight.append(item)
        item.ack.add_done_callback(partial(self._acknowledged, item, time.perf_counter()))

    def _acknowledged(self, item: PendingEmit, started: float, ack: asyncio.Future[PubAck]) -> None:
        if ack.cancelled() or item.acked:
            return  # we gave up on this try (timeout) and retried or failed it already
        item.acked = True
        self._waiting -= 1
        exc = ack.exception()
        if exc is None:
            self._metrics.ack_seconds.observe(time.perf_counter() - started)
            if ack.result().duplicate:
                self._counters.duplicates += 1
            self._counters.emitted += 1
            if not item.future.done():
                item.future.set_result(item.event)
        elif isinstance(exc, _RETRYABLE):
            self._retry(item, f"{type(exc).__name__} on try {item.tries} of {self._retries + 1}")
        elif isinstance(exc, nats.js.errors.APIError):
            self._fail(item, emit_failed(item.event.event, item.event.id, f"JetStream refused it: {exc.description}"))
        else:
            self._fail(item, emit_failed(item.event.event, item.event.id, repr(exc)))
        self._wake.set()

    def _expire(self) -> None:
        """Give up waiting on tries past their deadline (retry them); forget acknowledged ones at the head."""
        inflight = self._inflight
        now = time.monotonic()
        while inflight and (inflight[0].acked or inflight[0].deadline <= now):
            item = inflight.popleft()
            if item.acked:
                continue
            item.acked = True
            self._waiting -= 1
            if item.ack is not None:
                item.ack.cancel()
            self._retry(item, f"no acknowledgement within {self._timeout:g}s on try {item.tries} of "
                              f"{self._retries + 1}")

    def _retry(self, item: PendingEmit, reason: str) -> None:
        if item.tries > self._retries or item.future.done():
            self._fail(item, emit_failed(item.event.event, item.event.id, reason))
            return
        # Back off a little: a stream that did not answer (restarting, electing a leader) needs a moment.
        self._counters.retries += 1
        self._waiting += 1
        asyncio.get_running_loop().call_later(min(2.0, 0.05 * 2 ** (item.tries - 1)), self._requeue, item)

    def _requeue(self, item: PendingEmit) -> None:
        self._waiting -= 1
        self._queue.appendleft(item)
        self._wake.set()

    def _fail(self, item: PendingEmit, error: Exception) -> None:
        self._counters.emit_failures += 1
        if not item.future.done():
            item.future.set_exception(error)
