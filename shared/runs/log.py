"""The run event log: run events in JetStream, written once per ``seq`` and read live or from any ``seq``."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, get_args

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from proto.errors import ErrorCode
from proto.runs import TERMINAL_EVENTS, RunEvent, RunFailed, event_type, run_event_decoder, runs_encoder
from proto.subjects import Subjects
from shared.errors import run_id_taken
from shared.nats.conn import barrier
from shared.nats.jsacks import AckInbox
from shared.tracing import TRACING

log = logging.getLogger("raaf.runlog")

MSG_ID: Final = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE: Final = 10071  # JetStream's error code when that expectation fails
_direct_get_encoder: Final = msgspec.json.Encoder()
# Pending live events a follower may buffer before NATS drops them (the store then fills the gap).
_LIVE_PENDING: Final = 65_536

# What a store read raises while JetStream has no leader for the stream or the connection is moving servers.
_STORE_AWAY: Final = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
                      nats.js.errors.ServiceUnavailableError, TimeoutError)
# Called when a followed run has been quiet for a while; it may end the run (e.g. fail an orphan).
IdleCheck = Callable[[str], Awaitable[None]]


class _Envelope(msgspec.Struct):
    """What every run event has, whatever its type: read when the type is not one of ``RunEvent``'s."""

    type: str = ""
    seq: int = 0


_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
KNOWN_EVENT_TYPES: Final = frozenset(str(t.__struct_config__.tag) for t in get_args(RunEvent))


@dataclass(frozen=True)
class Unknown:
    """A stored event of a type this reader does not know (written by a newer runner): skipped, seq kept."""

    seq: int
    type: str


def decode(payload: bytes) -> RunEvent | Unknown:
    """A stored run event; ``Unknown`` for a well-formed event of a type this version does not know.

    The one decoder of the one union decides: only its typed error for the tag sends us to the envelope, and a
    known type that does not decode still raises.
    """
    try:
        return run_event_decoder.decode(payload)
    except msgspec.ValidationError:
        envelope = _envelope_decoder.decode(payload)
        if envelope.type in KNOWN_EVENT_TYPES or envelope.seq < 1:
            raise
        return Unknown(seq=envelope.seq, type=envelope.type)


def stored_type(event: RunEvent | Unknown) -> str:
    """The ``type`` an event is stored with, whether this version knows it or not."""
    return event.type if isinstance(event, Unknown) else event_type(event)


def run_stream_config(
    subjects: Subjects, *, max_age: float, replicas: int = 1, max_bytes: int = -1, max_msg_size: int = -1
) -> StreamConfig:
    """The stream holding every run's events for ``max_age`` seconds (direct gets on, file storage)."""
    return StreamConfig(
        name=subjects.stream_name("runs"),
        subjects=[subjects.run_events_all],
        max_age=max_age,
        max_bytes=max_bytes,
        max_msg_size=max_msg_size,
        storage=StorageType.FILE,
        num_replicas=replicas,
        discard=DiscardPolicy.OLD,
        duplicate_window=min(120.0, max_age),
        allow_direct=True,
    )


def is_terminal(event: RunEvent | Unknown) -> bool:
    return isinstance(event, TERMINAL_EVENTS)


class RunLog:
    """Publishes and reads run events; ``seq`` is the run's own counter and ``Nats-Msg-Id`` is ``run:seq``.

    A second write of the same ``run:seq`` (a reaper racing the runner) is dropped by JetStream, so exactly
    one event holds each ``seq``. Readers follow a run live over core NATS and fill every gap from the store.
    """

    def __init__(self, nc: NATS, js: JetStreamContext, subjects: Subjects, *, acks: AckInbox | None = None) -> None:
        self.nc = nc
        self.js = js
        self.subjects = subjects
        self.stream = subjects.stream_name("runs")
        self.acks = acks  # the writers' pipelined acks (agent-runner); readers publish rarely, with js.publish
        self.unknown_events = 0  # events of a type this version does not know (a newer writer's) it read

    def _decode(self, run_id: str, payload: bytes) -> RunEvent | Unknown:
        event = decode(payload)
        if isinstance(event, Unknown):
            self.unknown_events += 1
            log.debug("run event %s of %s is of a type this version does not know: %r", event.seq, run_id,
                      event.type)
        return event

    # ---- writing ---------------------------------------------------------------------------------------

    async def publish(self, run_id: str, seq: int, payload: bytes, *, timeout: float = 5.0, first: bool = False,
                      trace: Mapping[str, str] | None = None) -> bool:
        """Store one encoded event; False if ``run:seq`` was already taken by another writer.

        ``first``: store only if the run's subject is empty, atomically (``RunIdTaken`` otherwise), so a run id
        is never used twice even long after the duplicate window. ``trace``: the run's trace context headers,
        built once per run by its writer (None while tracing is off: nothing is added).
        """
        headers = {MSG_ID: f"{run_id}:{seq}"}
        if trace is not None:
            headers.update(trace)
        if first:
            headers[EXPECTED_LAST_SUBJECT_SEQ] = "0"
        subject = self.subjects.run_events(run_id)
        try:
            if self.acks is not None:
                return not await self.acks.publish(subject, payload, headers)
            ack = await self.js.publish(subject, payload, timeout=timeout, headers=headers)
        except nats.js.errors.APIError as exc:
            if first and exc.err_code == WRONG_LAST_SEQUENCE:
                raise run_id_taken(run_id) from None
            raise
        return not ack.duplicate

    async def fail(self, run_id: str, code: ErrorCode, message: str) -> RunFailed | None:
        """End a run that is not over yet with ``run_failed`` (the next seq, with the run's trace context if its
        first event has one); None if it already ended."""
        payload = await self.last_payload(run_id)
        last = None if payload is None else self._decode(run_id, payload)
        if last is not None and not isinstance(last, Unknown) and is_terminal(last):
            return None
        event = RunFailed(run_id=run_id, seq=(last.seq + 1) if last else 1, at=time.time(), code=code,
                          message=message)
        # Written by whoever noticed (a follower, a sweep, tracing on or off here), not the run's writer: the
        # run's own trace context, from its first event, so this event is in the run's trace as every other is.
        trace = await self._first_context(run_id) if last is not None else None
        if await self.publish(run_id, event.seq, runs_encoder.encode(event), trace=trace):
            return event
        return None

    async def purge(self, run_id: str) -> None:
        """Delete every stored event of the run (a client deleting what it owns)."""
        await self.js.purge_stream(self.stream, subject=self.subjects.run_events(run_id))

    # ---- reading ---------------------------------------------------------------------------------------

    async def last(self, run_id: str) -> RunEvent | None:
        """The run's newest stored event, or None if it has none (unknown, or expired); the newest one of a type
        this version knows if the newest is of a newer one."""
        payload = await self.last_payload(run_id)
        last = None if payload is None else self._decode(run_id, payload)
        if isinstance(last, Unknown):
            last = None
            async with contextlib.aclosing(self.stored(run_id)) as stored:
                async for event, _ in stored:
                    last = event
        return last

    async def first(self, run_id: str) -> RunEvent | None:
        """The run's first stored event (``run_started`` or ``run_queued``, which name its owner)."""
        try:
            msg = await self.js.get_msg(self.stream, seq=1, subject=self.subjects.run_events(run_id), next=True,
                                        direct=True)
        except NotFoundError:
            return None
        first = self._decode(run_id, msg.data) if msg.data else None
        return None if isinstance(first, Unknown) else first

    async def first_trace(self, run_id: str) -> dict[str, str] | None:
        """The trace context the run's first stored event carries (None: tracing off, none, no event, or the
        store did not answer: tracing never fails what it observes)."""
        if not TRACING.on:
            return None
        return await self._first_context(run_id)

    async def _first_context(self, run_id: str) -> dict[str, str] | None:
        """The ``traceparent`` / ``tracestate`` headers of the run's first stored event, whatever this process's
        tracing (None: none, no event, or no answer)."""
        try:
            msg = await self.js.get_msg(self.stream, seq=1, subject=self.subjects.run_events(run_id), next=True,
                                        direct=True)
        except (NotFoundError, nats.errors.Error, TimeoutError):
            return None
        headers = msg.headers
        if not headers or "traceparent" not in headers:
            return None
        return {key: headers[key] for key in ("traceparent", "tracestate") if key in headers}

    async def last_payload(self, run_id: str) -> bytes | None:
        try:
            msg = await self.js.get_last_msg(self.stream, self.subjects.run_events(run_id), direct=True)
        except NotFoundError:
            return None
        return msg.data or None

    async def stored(self, run_id: str, after_seq: int = 0, *, batch: int = 256, timeout: float = 5.0
                     ) -> AsyncGenerator[tuple[RunEvent, bytes], None]:
        """The run's stored events with ``seq > after_seq``, in order, up to the newest one stored now (those of
        types this version does not know left out).

        Batched direct gets (``next_by_subj``): one round trip per ``batch`` events and no consumer, so
        thousands of followers catching up at once cost the server no consumer state.
        """
        async with contextlib.aclosing(self._stored(run_id, after_seq, batch=batch, timeout=timeout)) as events:
            async for event, raw in events:
                if not isinstance(event, Unknown):
                    yield event, raw

    async def _stored(self, run_id: str, after_seq: int = 0, *, batch: int = 256, timeout: float = 5.0
                      ) -> AsyncGenerator[tuple[RunEvent | Unknown, bytes], None]:
        subject = self.subjects.run_events(run_id)
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        start = 1  # a stream sequence: the server finds the run's next event at or after it
        try:
            while True:
                request = _direct_get_encoder.encode({"seq": start, "next_by_subj": subject, "batch": batch})
                await self.nc.publish(f"$JS.API.DIRECT.GET.{self.stream}", request, reply=inbox)
                got, pending = 0, 0
                while True:
                    try:
                        msg = await sub.next_msg(timeout=timeout)
                    except nats.errors.TimeoutError:
                        return
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "204":  # end of this batch
                        pending = int(headers.get("Nats-Num-Pending", "0"))
                        break
                    if status is not None:  # 404: no (more) events; anything else: nothing we can read
                        return
                    start = int(headers.get("Nats-Sequence", "0")) + 1
                    got += 1
                    event = self._decode(run_id, msg.data)
                    if event.seq > after_seq:
                        yield event, msg.data
                        after_seq = event.seq
                if not got or not pending:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def follow(
        self, run_id: str, after_seq: int = 0, *, idle: float = 2.0, on_idle: IdleCheck | None = None
    ) -> AsyncGenerator[tuple[RunEvent, bytes], None]:
        """Every event with ``seq > after_seq`` exactly once and in order, until the run's terminal event.

        Live events come over a core subscription (no consumer on the hot path); whatever it misses (before
        it existed, dropped as a slow consumer, a terminal event racing the subscription) is read from the
        store, which a quiet run re-checks every ``idle`` seconds before calling ``on_idle``. Events of a type
        this version does not know count for the order and are not yielded.
        """
        async with contextlib.aclosing(self._follow(run_id, after_seq, idle=idle, on_idle=on_idle)) as events:
            async for event, raw in events:
                if not isinstance(event, Unknown):
                    yield event, raw

    def follow_as_stored(
        self, run_id: str, after_seq: int = 0, *, idle: float = 2.0, on_idle: IdleCheck | None = None
    ) -> AsyncGenerator[tuple[RunEvent | Unknown, bytes], None]:
        """``follow``, events of a type this version does not know included (as ``Unknown``, with their stored
        bytes): for forwarders that pass the bytes on unchanged, so their clients get every seq, gap-free."""
        return self._follow(run_id, after_seq, idle=idle, on_idle=on_idle)

    async def _follow(
        self, run_id: str, after_seq: int, *, idle: float, on_idle: IdleCheck | None
    ) -> AsyncGenerator[tuple[RunEvent | Unknown, bytes], None]:
        subject = self.subjects.run_events(run_id)
        sub = await self.nc.subscribe(subject, pending_msgs_limit=_LIVE_PENDING, pending_bytes_limit=-1)
        expected = after_seq + 1
        try:
            await barrier(self.nc)  # the server now routes new events to us: the store has every older one
            payload = await self.last_payload(run_id)
            last = None if payload is None else self._decode(run_id, payload)
            if last is not None and payload is not None and last.seq == expected:
                yield last, payload  # the usual case of a run just started: nothing else to read
                expected += 1
                if is_terminal(last):
                    return
            elif last is not None and last.seq >= expected:
                async with contextlib.aclosing(self._stored(run_id, expected - 1)) as stored:
                    async for event, raw in stored:
                        yield event, raw
                        expected = event.seq + 1
                        if is_terminal(event):
                            return
            elif last is not None and is_terminal(last):
                return  # the caller has seen everything, the end included
            while True:
                try:
                    msg: Msg = await sub.next_msg(timeout=idle)
                except nats.errors.TimeoutError:
                    try:
                        async with contextlib.aclosing(self._catch_up(run_id, expected)) as missed_events:
                            async for event, raw in missed_events:
                                yield event, raw
                                expected = event.seq + 1
                                if is_terminal(event):
                                    return
                        if on_idle is not None:
                            await on_idle(run_id)
                    except _STORE_AWAY as exc:
                        # The stream is electing a leader (or this connection is moving to another server):
                        # keep following live; the next quiet check reads the store again.
                        log.info("run store not answering while following %s: %r", run_id, exc)
                    continue
                try:
                    event = self._decode(run_id, msg.data)
                except msgspec.DecodeError:
                    log.warning("undecodable event on %s", subject)
                    continue
                if event.seq < expected:
                    continue  # already delivered (from the store, or a duplicate write)
                if event.seq > expected:
                    # A gap: events are stored in seq order before the next one is published.
                    async with contextlib.aclosing(self._stored(run_id, expected - 1)) as stored:
                        async for missed, raw in stored:
                            if missed.seq >= event.seq:
                                break
                            yield missed, raw
                            expected = missed.seq + 1
                    if event.seq != expected:
                        continue  # not stored yet: the next quiet check reads it in order
                yield event, msg.data
                expected = event.seq + 1
                if is_terminal(event):
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _catch_up(self, run_id: str, expected: int
                        ) -> AsyncGenerator[tuple[RunEvent | Unknown, bytes], None]:
        payload = await self.last_payload(run_id)
        last = None if payload is None else self._decode(run_id, payload)
        if last is not None and last.seq >= expected:
            async with contextlib.aclosing(self._stored(run_id, expected - 1)) as stored:
                async for event, raw in stored:
                    yield event, raw
