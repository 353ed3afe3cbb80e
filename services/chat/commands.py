"""What each chat command does: decide on the fold, append through the writer, answer with a reply."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client as NATS

from proto.chat import (
    Ack,
    AddAgent,
    ChatCommand,
    ChatReply,
    CreateRoom,
    DeleteRoom,
    GetHistory,
    GetRoom,
    GetStats,
    History,
    JoinRoom,
    LeaveRoom,
    ListRooms,
    MessageAccepted,
    PostMessage,
    RequestHandoff,
    RoomClosed,
    RoomDeleted,
    RoomInfo,
    RoomJoined,
    RoomList,
    SetTyping,
    chat_encoder,
)
from proto.subjects import Subjects
from services.chat import decide
from services.chat.answers import AnswerRelay
from services.chat.metrics import ChatMetrics
from services.chat.room import ChatState, Room
from services.chat.settings import ChatSettings
from services.chat.store import ChatStore
from services.chat.typing import TypingTracker
from services.chat.writer import Planned, RoomWriter
from shared.chat.errors import (
    feature_disabled,
    invalid_command,
    room_not_found,
)
from shared.errors import StreamingError
from shared.tracing import inject

_DIRECTORY = "directory"  # the writer's key for creating and deleting rooms

class Commands:
    """The chat's command handlers over one replica's fold, store, writer, typing tracker and answer relay."""

    def __init__(self, *, settings: ChatSettings, subjects: Subjects, nc: NATS, state: ChatState, store: ChatStore,
                 writer: RoomWriter, typing: TypingTracker, relay: AnswerRelay, metrics: ChatMetrics,
                 spawn: Callable[..., Any]) -> None:
        self.settings = settings
        self.subjects = subjects
        self.nc = nc
        self.state = state
        self.store = store
        self.writer = writer
        self.typing = typing
        self.relay = relay
        self.metrics = metrics
        self._spawn = spawn

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        self._spawn(coro, name=name)

    async def execute(self, command: ChatCommand) -> ChatReply:
        """Handle one command; raises :class:`StreamingError` for a typed refusal."""
        match command:
            case CreateRoom():
                return await self._create(command)
            case DeleteRoom():
                return await self._delete(command)
            case GetRoom(room=name):
                return self._room(name).info()
            case ListRooms():
                return RoomList(rooms=[room.summary() for room in sorted(self.state.rooms.values(),
                                                                          key=lambda r: r.name)])
            case JoinRoom():
                return await self._join(command)
            case LeaveRoom():
                return await self._leave(command)
            case PostMessage():
                return await self._post(command)
            case SetTyping():
                return await self._set_typing(command)
            case AddAgent():
                return await self._add_agent(command)
            case RequestHandoff():
                return await self._handoff(command)
            case GetHistory():
                return await self._history(command)
            case GetStats():
                return self.state.stats()

    def _room(self, name: str) -> Room:
        room = self.state.room_named(name)
        if room is None:
            raise room_not_found(name[:200])
        return room

    def _same_room(self, room_id: str, name: str) -> Room:
        """The room again, inside a plan: it may have been deleted (or replaced) since."""
        room = self.state.rooms.get(room_id)
        if room is None:
            raise room_not_found(name[:200])
        return room

    async def _create(self, cmd: CreateRoom) -> RoomInfo:
        room_id = uuid.uuid4().hex[:16]
        existing: Room | None = None

        def plan() -> Planned | None:
            nonlocal existing
            result = decide.create_room(self.state, cmd, self.settings, room_id=room_id, now=time.time())
            if isinstance(result, Room):
                existing = result
                return None
            return self.writer.to_directory(result)

        await self.writer.write(_DIRECTORY, plan)
        if existing is not None:
            return existing.info()
        return self._same_room(room_id, cmd.name).info()

    async def _delete(self, cmd: DeleteRoom) -> Ack:
        room = self._room(cmd.room)
        room_id = room.id

        def plan() -> Planned | None:
            current = self._same_room(room_id, cmd.room)
            return self.writer.to_directory(RoomDeleted(room_id=current.id, name=current.name, by=cmd.by,
                                                        at=time.time()))

        await self.writer.write(_DIRECTORY, plan)
        # Readers following the room's log learn it is gone; then its subjects are emptied.
        with contextlib.suppress(StreamingError):
            await self.store.append(self.subjects.chat_room_log(room_id),
                                    RoomClosed(room_id=room_id, name=room.name, at=time.time()))
        await self.store.purge_room(room_id)
        self.typing.forget_room(room_id)
        self.writer.forget(room_id)
        return Ack(room_id=room_id)

    async def _join(self, cmd: JoinRoom) -> RoomJoined:
        room_id = self._room(cmd.room).id
        first = True

        def plan() -> Planned | None:
            nonlocal first
            room = self._same_room(room_id, cmd.room)
            event = decide.join(room, cmd, self.settings, time.time())
            if event is None:
                first = False
                return None
            first = event.first_session
            return self.writer.to_log(room, event)

        await self.writer.write(room_id, plan)
        await self._snapshot_if_due(room_id)
        room = self._same_room(room_id, cmd.room)
        history = room.config.message_history if self.settings.enable_message_history else 0
        return RoomJoined(room=room.info(), history_from=room.history_from(history) or room.live_from(),
                          live_from=room.live_from(), log_seq=room.log_seq, typing=self.typing.typing_in(room_id),
                          first_session=first)

    async def _leave(self, cmd: LeaveRoom) -> Ack:
        room_id = self._room(cmd.room).id
        written = await self.writer.write(room_id, lambda: self._plan_leave(room_id, cmd))
        if written is not None and written.event.last_session:  # type: ignore[union-attr]
            await self.typing.stopped(room_id, cmd.user, "left")
        await self._snapshot_if_due(room_id)
        return Ack(room_id=room_id)

    def _plan_leave(self, room_id: str, cmd: LeaveRoom) -> Planned | None:
        room = self._same_room(room_id, cmd.room)
        event = decide.leave(room, cmd, time.time())
        return None if event is None else self.writer.to_log(room, event)

    async def reap(self, room_id: str, user: str, session: str) -> None:
        """Take a session of a vanished gateway out of its room."""
        room = self.state.rooms.get(room_id)
        if room is None:
            return
        with contextlib.suppress(StreamingError):
            await self._leave(LeaveRoom(room=room.name, user=user, session=session, reason="gateway gone"))
            self.metrics.sessions_reaped.inc()

    async def _post(self, cmd: PostMessage) -> MessageAccepted:
        room_id = self._room(cmd.room).id
        outcome: decide.Post | None = None

        def plan() -> Planned | None:
            nonlocal outcome
            room = self._same_room(room_id, cmd.room)
            outcome = decide.post(self.state, room, cmd, self.settings, time.time())
            # The message is stored with this command's trace context: its answer links to it on any replica.
            return None if outcome.message is None else self.writer.to_messages(room, outcome.message,
                                                                                 trace=inject())

        written = await self.writer.write(room_id, plan)
        assert outcome is not None
        if outcome.duplicate_of is not None:
            message_id, seq, count = outcome.duplicate_of
            return MessageAccepted(room_id=room_id, message_id=message_id, count=count, seq=seq, duplicate=True)
        assert written is not None and outcome.message is not None
        self.relay.remember(outcome.message.id)  # its answer's span links to this command's
        self.metrics.messages.inc()
        await self.typing.stopped(room_id, cmd.user, "sent")
        room = self._same_room(room_id, cmd.room)
        nxt = room.next_to_answer()
        queued = room.answer is not None or (nxt is not None and nxt.id != outcome.message.id)
        if outcome.interrupts is not None:
            self.spawn(self.relay.cancel(outcome.interrupts, "interrupted by a newer message"),
                       name=f"interrupt-{outcome.interrupts}")
        self.spawn(self.relay.begin(room_id), name=f"begin-{room_id}")
        return MessageAccepted(room_id=room_id, message_id=outcome.message.id, count=outcome.message.count,
                               seq=written.seq, queued=queued, interrupted=outcome.interrupts)

    async def _set_typing(self, cmd: SetTyping) -> Ack:
        if not self.settings.enable_typing_indicators:
            raise feature_disabled("typing indicators")
        room = self._room(cmd.room)
        decide.require_participant(room, cmd.user, cmd.session)
        if cmd.typing:
            await self.typing.started(room.id, cmd.user)
        else:
            await self.typing.stopped(room.id, cmd.user)
        return Ack(room_id=room.id)

    async def _add_agent(self, cmd: AddAgent) -> RoomInfo:
        room_id = self._room(cmd.room).id

        def plan() -> Planned | None:
            room = self._same_room(room_id, cmd.room)
            event = decide.add_agent(room, cmd, self.settings, time.time())
            return None if event is None else self.writer.to_log(room, event)

        await self.writer.write(room_id, plan)
        await self._snapshot_if_due(room_id)
        return self._same_room(room_id, cmd.room).info()

    async def _handoff(self, cmd: RequestHandoff) -> RoomInfo:
        room_id = self._room(cmd.room).id

        def plan() -> Planned | None:
            room = self._same_room(room_id, cmd.room)
            event = decide.handoff(room, cmd, self.settings, time.time())
            return None if event is None else self.writer.to_messages(room, event)

        if await self.writer.write(room_id, plan) is not None:
            self.metrics.handoffs.labels(by="user").inc()
        return self._same_room(room_id, cmd.room).info()

    async def _history(self, cmd: GetHistory) -> History:
        room = self._room(cmd.room)
        decide.may_enter(room, cmd.user, cmd.granted)
        if not self.settings.enable_message_history:
            raise feature_disabled("message history")
        if cmd.limit is not None and cmd.limit < 0:
            raise invalid_command("limit must not be negative")
        limit = min(cmd.limit if cmd.limit is not None else room.config.message_history,
                    room.config.message_history)
        messages = await self.store.read_messages(room.id, room.history_from(limit), limit=limit,
                                                  before_seq=room.live_from())
        # A reply must fit in one NATS message: drop the oldest until it does.
        budget = int(self.nc.max_payload * 0.9)
        reply = History(room_id=room.id, messages=messages)
        while messages and len(chat_encoder.encode(reply)) > budget:
            messages = messages[max(1, len(messages) // 10):]
            reply = History(room_id=room.id, messages=messages)
        return reply

    async def _snapshot_if_due(self, room_id: str) -> None:
        """Compact a room's log: a snapshot with ``Nats-Rollup: sub`` replaces every event before it."""
        every = self.settings.snapshot_every

        def plan() -> Planned | None:
            room = self.state.rooms.get(room_id)
            if room is None or room.log_events < every:
                return None
            return self.writer.to_log(room, room.snapshot(time.time()), rollup=True)

        room = self.state.rooms.get(room_id)
        if room is not None and room.log_events >= every:
            with contextlib.suppress(StreamingError):
                await self.writer.write(room_id, plan)
