"""Event patterns this gateway's clients subscribed to: one emitter listener per pattern, fanned out locally.

Each event is encoded once per pattern and the same frame written to every subscribed connection. A
connection that asked for history first gets a replay; live events that arrive meanwhile wait in a bounded
buffer and follow the replay, minus any it already contained, so nothing is missed or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from proto.events import Event, event_encoder
from proto.gateway import CloseCode
from services.gateway.connection import Connection
from services.gateway.errors import gateway_unavailable
from services.gateway.frames import Outgoing
from shared.events.emitter import EventEmitter

_encode = event_encoder.encode


@dataclass(eq=False)
class EventFanout:
    """The connections on one pattern (keyed by its NATS subject), each live (None) or replaying (a buffer)."""

    subject: str
    pattern: str
    buffer_limit: int
    members: dict[Connection, list[Event] | None] = field(default_factory=dict)
    listener_id: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None

    def deliver(self, event: Event) -> None:
        """The emitter's listener for this pattern: one encode, then the same frame to every live member."""
        members = self.members
        if not members:
            return
        out = Outgoing(_encode(event), "event")
        for conn, buffered in members.items():
            if buffered is None:
                conn.deliver(out)
            elif len(buffered) < self.buffer_limit:
                buffered.append(event)
            else:
                conn.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: too many events during replay")


class EventHub:
    def __init__(self, buffer_limit: int) -> None:
        self.buffer_limit = buffer_limit
        self.fanouts: dict[str, EventFanout] = {}
        self.by_connection: dict[Connection, set[str]] = {}
        self._emitter: EventEmitter | None = None

    @property
    def emitter(self) -> EventEmitter:
        if self._emitter is None:
            raise gateway_unavailable("the event bus is not connected")
        return self._emitter

    def attach(self, emitter: EventEmitter) -> None:
        self._emitter = emitter

    def count(self, conn: Connection) -> int:
        return len(self.by_connection.get(conn, ()))

    def is_member(self, conn: Connection, subject: str) -> bool:
        return subject in self.by_connection.get(conn, ())

    @property
    def subscription_count(self) -> int:
        return sum(len(f.members) for f in self.fanouts.values())

    async def join(self, conn: Connection, pattern: str, subject: str, *, replaying: bool) -> None:
        """Add ``conn`` on ``subject`` (``pattern`` checked already); while ``replaying``, buffer its events."""
        fanout = self.fanouts.get(subject)
        if fanout is None:
            fanout = EventFanout(subject, pattern, self.buffer_limit)
            self.fanouts[subject] = fanout
            try:
                fanout.listener_id = await self.emitter.on(pattern, fanout.deliver)
            except BaseException as exc:
                fanout.error = exc
                if self.fanouts.get(subject) is fanout:
                    del self.fanouts[subject]
                raise
            finally:
                fanout.ready.set()
        elif not fanout.ready.is_set():
            await fanout.ready.wait()
            if fanout.error is not None:
                raise gateway_unavailable(f"cannot listen on {pattern!r}: {fanout.error}")
        if not conn.open or self.fanouts.get(subject) is not fanout:
            await self._close_if_empty(fanout)
            return
        fanout.members[conn] = [] if replaying else None
        self.by_connection.setdefault(conn, set()).add(subject)

    def go_live(self, conn: Connection, subject: str, replayed: list[Event]) -> None:
        """End a replay: send the live events that arrived meanwhile (skipping replayed ones), then go live."""
        fanout = self.fanouts.get(subject)
        if fanout is None or conn not in fanout.members:
            return
        buffered = fanout.members[conn] or []
        fanout.members[conn] = None
        seen = {event.id for event in replayed}
        for event in buffered:
            if event.id not in seen:
                conn.deliver(Outgoing(_encode(event), "event"))

    async def leave(self, conn: Connection, subject: str) -> bool:
        subjects = self.by_connection.get(conn)
        if subjects is None or subject not in subjects:
            return False
        subjects.discard(subject)
        if not subjects:
            del self.by_connection[conn]
        fanout = self.fanouts.get(subject)
        if fanout is not None:
            fanout.members.pop(conn, None)
            await self._close_if_empty(fanout)
        return True

    async def leave_all(self, conn: Connection) -> None:
        for subject in list(self.by_connection.get(conn, ())):
            await self.leave(conn, subject)

    async def _close_if_empty(self, fanout: EventFanout) -> None:
        if fanout.members or not fanout.ready.is_set():
            return
        if self.fanouts.get(fanout.subject) is fanout:
            del self.fanouts[fanout.subject]
        if fanout.listener_id is not None and self._emitter is not None:
            with contextlib.suppress(Exception):
                await self._emitter.off(fanout.listener_id)

    async def close(self) -> None:
        for fanout in list(self.fanouts.values()):
            fanout.members.clear()
            await self._close_if_empty(fanout)
        self.by_connection.clear()
