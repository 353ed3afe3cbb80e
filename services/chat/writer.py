"""Writes that keep the stream the single source of truth: decide on the fold, append only if nobody else did."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from proto.subjects import Subjects
from services.chat.room import ChatState, Room
from services.chat.store import Appended, ChatStore, Follower, StoredEvent, WrongLastSequence
from shared.chat.errors import concurrent_update

log = logging.getLogger("raaf.chat.writer")


@dataclass(frozen=True, slots=True)
class Planned:
    """One event to append; ``seen`` reads the fold's last sequence of its subject (the expected one)."""

    stream: str
    subject: str
    event: StoredEvent
    seen: Callable[[], int] | None = None
    msg_id: str | None = None
    rollup: bool = False
    trace: dict[str, str] | None = None  # trace context headers stored with the event (None: none)


@dataclass(frozen=True, slots=True)
class Written:
    event: StoredEvent
    seq: int
    duplicate: bool


Plan = Callable[[], Planned | None]


class RoomWriter:
    """Serialises one replica's writes per room and retries a plan whose subject moved under it.

    ``Nats-Expected-Last-Subject-Sequence`` makes JetStream refuse an append decided on a stale fold (another
    replica wrote first); the writer then waits for its fold to see that write and asks the plan again, which
    may now decide differently (or raise a typed error).
    """

    def __init__(self, store: ChatStore, state: ChatState, follower: Follower, subjects: Subjects, *,
                 attempts: int = 8, catch_up_timeout: float = 2.0,
                 on_conflict: Callable[[], None] | None = None) -> None:
        self.store = store
        self.state = state
        self.follower = follower
        self.subjects = subjects
        self.attempts = attempts
        self.catch_up_timeout = catch_up_timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self.on_conflict = on_conflict

    def lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def forget(self, key: str) -> None:
        self._locks.pop(key, None)

    async def write(self, key: str, plan: Plan) -> Written | None:
        """Append what ``plan`` decides (None: nothing to write) and fold it in; ``key`` serialises a room."""
        async with self.lock(key):
            return await self.write_locked(key, plan)

    async def write_locked(self, key: str, plan: Plan) -> Written | None:
        for _ in range(self.attempts):
            planned = plan()
            if planned is None:
                return None
            expected = planned.seen() if planned.seen is not None else None
            try:
                appended: Appended = await self.store.append(planned.subject, planned.event, expected=expected,
                                                             msg_id=planned.msg_id, rollup=planned.rollup,
                                                             trace=planned.trace)
            except WrongLastSequence:
                if self.on_conflict is not None:
                    self.on_conflict()
                await self._catch_up(planned)
                continue
            if not appended.duplicate:
                self.state.apply(planned.event, appended.seq)
            return Written(event=planned.event, seq=appended.seq, duplicate=appended.duplicate)
        raise concurrent_update(key)

    async def _catch_up(self, planned: Planned) -> None:
        """Wait until the fold has the subject's newest event, which another writer appended."""
        seen = planned.seen
        if seen is None:
            return
        newest = await self.store.last_seq(planned.stream, planned.subject)
        caught = await self.follower.wait_until(lambda: seen() >= newest, self.catch_up_timeout)
        if not caught:
            log.warning("fold did not reach seq %d of %s in time", newest, planned.subject)

    # ---- plans for the room's subjects ---------------------------------------------------------------------

    def to_directory(self, event: StoredEvent) -> Planned:
        return Planned(stream=self.store.log_stream, subject=self.subjects.chat_directory, event=event,
                       seen=lambda: self.state.dir_seq)

    def to_log(self, room: Room, event: StoredEvent, *, rollup: bool = False) -> Planned:
        room_id = room.id
        return Planned(stream=self.store.log_stream, subject=self.subjects.chat_room_log(room_id), event=event,
                       seen=lambda: self._seq(room_id, "log"), rollup=rollup)

    def to_messages(self, room: Room, event: StoredEvent, *, msg_id: str | None = None,
                    trace: dict[str, str] | None = None) -> Planned:
        room_id = room.id
        return Planned(stream=self.store.feed_stream, subject=self.subjects.chat_feed_messages(room_id),
                       event=event, seen=lambda: self._seq(room_id, "msg"), msg_id=msg_id, trace=trace)

    def to_answers(self, room: Room, event: StoredEvent, *, msg_id: str | None = None, guarded: bool = True
                   ) -> Planned:
        room_id = room.id
        return Planned(stream=self.store.feed_stream, subject=self.subjects.chat_feed_answers(room_id),
                       event=event, seen=(lambda: self._seq(room_id, "answer")) if guarded else None,
                       msg_id=msg_id)

    def _seq(self, room_id: str, subject: str) -> int:
        room = self.state.rooms.get(room_id)
        if room is None:
            return 0
        return {"log": room.log_seq, "msg": room.msg_seq, "answer": room.answer_seq}[subject]
