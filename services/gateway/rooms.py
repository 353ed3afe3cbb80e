"""Chat rooms on one gateway: one set of NATS subscriptions per room, shared by the room's local members.

The first member of a room subscribes to its feed and log (JetStream ordered consumers) and its typing notices;
the last one to leave unsubscribes. Each event is decoded and encoded once, and the same frame is written to
every member that is live. A member that joins later reads what it needs from before the shared readers'
position (its history, and whatever they delivered before it arrived) with a short-lived reader while live
events wait in a bounded buffer; then the buffer follows, minus what the read held, so nothing is missed or
repeated and every member sees the feed in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.subscription import Subscription

from proto.base import Message
from proto.chat import (
    AgentAdded,
    AgentHandoff,
    AgentMessage,
    FeedEvent,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomJoined,
    RoomLogEvent,
    TypingEvent,
    UserMessage,
)
from proto.chat_ws import ChatEvent, ChatEventBody
from proto.gateway import CloseCode, server_encoder
from services.gateway.connection import Connection, fan_out
from services.gateway.errors import GatewayUnavailable
from services.gateway.frames import Outgoing
from shared.clients.chat import ChatClient
from shared.nats.conn import barrier

log = logging.getLogger("raaf.gateway.rooms")

REPLAY_BUFFER = 10_000  # live events one member may have waiting while it reads its history, then it is cut off
_CONVERSATION = (UserMessage, AgentMessage, AgentHandoff)
_PRESENCE = (ParticipantJoined, ParticipantLeft, AgentAdded, RoomClosed)
_FEED, _LOG, _TYPING = 0, 1, 2
_Item = tuple[int, int, ChatEventBody]  # what, seq (0 for typing), event

OnClosed = Callable[[Connection, str, str], None]  # connection, room name, room id


class RoomMember:
    """One connection in a room: where its feed starts and turns live, the log position it joined at, and,
    until it has caught up, the live events waiting for it."""

    __slots__ = ("buffer", "conn", "history_from", "live_from", "log_after")

    def __init__(self, conn: Connection, joined: RoomJoined) -> None:
        self.conn = conn
        self.history_from = joined.history_from
        self.live_from = joined.live_from
        self.log_after = joined.log_seq
        self.buffer: list[_Item] | None = []  # None once its history was sent

    def admits(self, what: int, seq: int, event: ChatEventBody) -> bool:
        if what == _FEED:
            return seq >= self.history_from and (seq >= self.live_from or isinstance(event, _CONVERSATION))
        if what == _LOG:
            return seq > self.log_after and isinstance(event, _PRESENCE)
        return True


class SharedRoom:
    """A room's subscriptions on this gateway, how far they have read, and its members here."""

    __slots__ = ("error", "feed_seq", "live", "log_seq", "members", "name", "ready", "room_id", "subs", "waiting")

    def __init__(self, name: str, room_id: str, feed_seq: int, log_seq: int) -> None:
        self.name = name
        self.room_id = room_id
        self.feed_seq = feed_seq  # the last feed sequence the shared reader delivered (or where it starts, - 1)
        self.log_seq = log_seq
        self.members: dict[Connection, RoomMember] = {}
        self.live: dict[Connection, None] = {}  # caught up: every later event is theirs, in the shared frame
        self.waiting: dict[Connection, RoomMember] = {}  # reading history, or joined ahead of the shared reader
        self.subs: list[Subscription] = []
        self.ready = asyncio.Event()
        self.error: BaseException | None = None

    def frame(self, seq: int | None, event: ChatEventBody, history: bool = False) -> Outgoing:
        message = ChatEvent(room=self.name, room_id=self.room_id, seq=seq, history=history, event=event)
        return Outgoing(server_encoder.encode(message), "chat_event")

    def send(self, member: RoomMember, what: int, seq: int, event: ChatEventBody) -> None:
        """One event to one member, marked as history if it is from before the member joined."""
        history = what == _FEED and seq < member.live_from
        member.conn.deliver(self.frame(seq if what == _FEED else None, event, history))

    def catch_up(self, member: RoomMember) -> None:
        """A member whose history is out goes live once the shared readers are where it joined."""
        if member.buffer is None and self.feed_seq >= member.live_from - 1 and self.log_seq >= member.log_after:
            self.waiting.pop(member.conn, None)
            self.live[member.conn] = None


class RoomHub:
    """The rooms this gateway's connections joined, by room id."""

    def __init__(self, client: ChatClient, on_closed: OnClosed, *, buffer_limit: int = REPLAY_BUFFER) -> None:
        self.client = client
        self.on_closed = on_closed
        self.buffer_limit = buffer_limit
        self.rooms: dict[str, SharedRoom] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- membership ---------------------------------------------------------------------------

    async def join(self, conn: Connection, name: str, joined: RoomJoined, reply: Message) -> bool:
        """Add ``conn``: send ``reply``, then its history and everything after it; False if the connection
        closed or the room went away meanwhile."""
        room_id = joined.room.id
        room = self.rooms.get(room_id)
        if room is None:
            room = await self._open(name, joined)
        elif not room.ready.is_set():
            await room.ready.wait()
            if room.error is not None:
                raise GatewayUnavailable(f"cannot follow the room: {room.error}")
        if not conn.open or self.rooms.get(room_id) is not room:
            await self._close_if_empty(room)
            return False
        member = RoomMember(conn, joined)
        room.members[conn] = member
        room.waiting[conn] = member
        try:
            feed_end, log_end = room.feed_seq, room.log_seq
            feed, room_log = await asyncio.gather(
                self.client.read_feed(room_id, member.history_from, feed_end),
                self.client.read_log(room_id, member.log_after + 1, log_end))
        except BaseException:
            await self.leave(conn, room_id)
            raise
        if room.members.get(conn) is not member or not conn.open:
            return False
        conn.send_nowait(reply)
        read: list[_Item] = [(_FEED, seq, event) for seq, event in feed]
        read += [(_LOG, seq, event) for seq, event in room_log if isinstance(event, _PRESENCE)]
        self._flush(room, member, read)
        return True

    def _flush(self, room: SharedRoom, member: RoomMember, read: list[_Item]) -> None:
        """Send what was read, then the live events that waited (minus any already sent), in order."""
        buffered, member.buffer = member.buffer or [], None
        sent = {_FEED: 0, _LOG: 0}
        closed = False
        for what, seq, event in read + buffered:
            if what != _TYPING:
                if seq <= sent[what]:
                    continue
                sent[what] = seq
            if member.admits(what, seq, event):
                room.send(member, what, seq, event)
                closed = closed or isinstance(event, RoomClosed)
        if closed:
            self._close_room(room)
        else:
            room.catch_up(member)

    async def leave(self, conn: Connection, room_id: str) -> bool:
        room = self.rooms.get(room_id)
        if room is None or room.members.pop(conn, None) is None:
            return False
        room.live.pop(conn, None)
        room.waiting.pop(conn, None)
        await self._close_if_empty(room)
        return True

    # ---- the shared readers -------------------------------------------------------------------

    async def _open(self, name: str, joined: RoomJoined) -> SharedRoom:
        room_id = joined.room.id
        room = SharedRoom(name, room_id, joined.live_from - 1, joined.log_seq)
        self.rooms[room_id] = room

        async def on_feed(seq: int, event: FeedEvent) -> None:
            self._on_event(room, _FEED, seq, event)

        async def on_log(seq: int, event: RoomLogEvent) -> None:
            if isinstance(event, _PRESENCE):
                self._on_event(room, _LOG, seq, event)
            elif self.rooms.get(room_id) is room:  # a snapshot restates what readers have seen: only its place
                room.log_seq = seq
                self._catch_up_all(room)

        async def on_typing(event: TypingEvent) -> None:
            self._on_event(room, _TYPING, 0, event)

        try:
            room.subs = await self.client.subscribe_room(room_id, feed_from=joined.live_from,
                                                         log_after=joined.log_seq, on_feed=on_feed,
                                                         on_log=on_log, on_typing=on_typing)
            await barrier(self.client.nc)  # typing notices sent from now on reach us
        except BaseException as exc:
            room.error = exc
            self._forget(room)
            raise
        finally:
            room.ready.set()
        return room

    def _on_event(self, room: SharedRoom, what: int, seq: int, event: ChatEventBody) -> None:
        if self.rooms.get(room.room_id) is not room:
            return
        if what == _FEED:
            room.feed_seq = seq
        elif what == _LOG:
            room.log_seq = seq
        try:
            if room.live:
                recipients = tuple(room.live)  # a cut-off connection leaves later, never during the loop
                fan_out(recipients, room.frame(seq if what == _FEED else None, event), recipients[0].ctx)
            for member in tuple(room.waiting.values()):
                if member.buffer is not None:
                    if len(member.buffer) >= self.buffer_limit:
                        member.conn.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: too many room events")
                    else:
                        member.buffer.append((what, seq, event))
                elif member.admits(what, seq, event):
                    room.send(member, what, seq, event)
            if isinstance(event, RoomClosed):
                self._close_room(room)
            else:
                self._catch_up_all(room)
        except Exception:  # nats-py would only hand it to the error callback
            log.exception("fan-out failed in room %s", room.room_id)

    def _catch_up_all(self, room: SharedRoom) -> None:
        for member in tuple(room.waiting.values()):
            room.catch_up(member)

    def _close_room(self, room: SharedRoom) -> None:
        """The room was deleted: its members here forget it, and its subscriptions go."""
        for conn in tuple(room.members):
            if room.members[conn].buffer is None:  # one still reading hears it when its buffer is sent
                room.members.pop(conn)
                room.live.pop(conn, None)
                room.waiting.pop(conn, None)
                self.on_closed(conn, room.name, room.room_id)
        if not room.members and self.rooms.get(room.room_id) is room:
            self._forget(room)
            self._spawn(self._unsubscribe(room), "chat-room-closed")

    async def _close_if_empty(self, room: SharedRoom) -> None:
        if room.members or not room.ready.is_set() or self.rooms.get(room.room_id) is not room:
            return
        self._forget(room)
        await self._unsubscribe(room)

    def _forget(self, room: SharedRoom) -> None:
        if self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]

    @staticmethod
    async def _unsubscribe(room: SharedRoom) -> None:
        subs, room.subs = room.subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Unsubscribe everything (on stop) and wait for unsubscriptions under way."""
        for room in list(self.rooms.values()):
            room.members.clear()
            room.live.clear()
            room.waiting.clear()
            await self._close_if_empty(room)
        if self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)
