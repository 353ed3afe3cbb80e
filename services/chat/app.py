"""The chat service: event-sourced rooms, participants, typing, agents and handoffs, over NATS request/reply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import StreamConfig

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
    chat_command_decoder,
    chat_encoder,
)
from proto.errors import Error, ErrorCode
from services.chat import decide
from services.chat.answers import AnswerRelay
from services.chat.errors import (
    ChatError,
    ChatOverloaded,
    ChatUnavailable,
    CommandTooLarge,
    FeatureDisabled,
    InvalidCommand,
    RoomNotFound,
)
from services.chat.metrics import ChatMetrics
from services.chat.presence import PresenceReaper
from services.chat.room import ChatState, Room
from services.chat.settings import ChatSettings
from services.chat.store import ChatStore, Follower, chat_streams
from services.chat.typing import TypingTracker
from services.chat.writer import Planned, RoomWriter
from shared.app import App

log = logging.getLogger("raaf.chat")

_DIRECTORY = "directory"  # the writer's key for creating and deleting rooms
_REBUILD_TIMEOUT = 300.0  # seconds the replay of the streams may take at start


class ChatApp(App):
    service: ClassVar[str] = "chat"

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        self.chat_settings = settings
        s = settings
        self.state = ChatState(keep_recent=s.context_messages + s.max_queued_messages + 2)
        self.chat_metrics = ChatMetrics(self.metrics.registry)
        self._rebuilt = False
        self._commands: Subscription | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.health.add_check("rooms", self._rooms_ready)
        self._store: ChatStore | None = None
        self._follower: Follower | None = None
        self._writer: RoomWriter | None = None
        self._typing: TypingTracker | None = None
        self._relay: AnswerRelay | None = None
        self._reaper: PresenceReaper | None = None

    def streams(self) -> list[StreamConfig]:
        return chat_streams(self.subjects, history_size=self.chat_settings.message_history_size,
                            replicas=self.runtime.jetstream_replicas)

    def micro_metadata(self) -> dict[str, str]:
        return {"commands": self.subjects.chat_commands}

    def stats(self) -> dict[str, Any]:
        """The seed's ``chat.stats`` for ``raaf.stats()``: the fold's figures, the same on every replica."""
        return {"chat_system": self.state.stats()} if self._rebuilt else {}

    # ---- parts, available once started -----------------------------------------------------------------

    @property
    def store(self) -> ChatStore:
        assert self._store is not None, "chat not started"
        return self._store

    @property
    def writer(self) -> RoomWriter:
        assert self._writer is not None, "chat not started"
        return self._writer

    @property
    def typing(self) -> TypingTracker:
        assert self._typing is not None, "chat not started"
        return self._typing

    @property
    def relay(self) -> AnswerRelay:
        assert self._relay is not None, "chat not started"
        return self._relay

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def on_start(self) -> None:
        s = self.chat_settings
        self._store = ChatStore(self.js, self.subjects)
        self._follower = Follower(self.js, self.subjects, self.store, self.state.apply)
        await self._follower.start(self.spawn)
        await self._follower.caught_up(_REBUILD_TIMEOUT)
        self._writer = RoomWriter(self.store, self.state, self._follower, self.subjects,
                                  on_conflict=self.chat_metrics.write_conflicts.inc)
        self._typing = TypingTracker(self.nc, self.subjects, instance=self.runtime.instance_id,
                                     timeout=s.typing_timeout)
        self._typing.on_expired = self.chat_metrics.typing_expired.inc
        await self._typing.start()
        self.spawn(self._typing.run(), name="typing-expiry")
        self._relay = AnswerRelay(self.nc, self.js, self.subjects, s, self.state, self.store, self.writer,
                                  self.chat_metrics, self.spawn)
        await self._relay.recover()
        self._observe()
        # Commands over the in-flight limit are answered ``overloaded`` at once; the pending buffer only has to
        # hold a burst until then (a message NATS drops here would leave its requester to time out).
        self._commands = await self.nc.subscribe(self.subjects.chat_commands, queue="chat", cb=self._on_command,
                                                 pending_msgs_limit=max(65_536, s.max_inflight_commands * 16))
        if s.presence_check_interval > 0:
            self._reaper = PresenceReaper(self.nc, self.subjects, self.state, interval=s.presence_check_interval,
                                          leave=self._reap)
            self.spawn(self._reaper.run(), name="presence-reaper")
        self._rebuilt = True
        self.log.info("rooms rebuilt", extra={"rooms": len(self.state.rooms)})

    async def on_stop(self) -> None:
        # Stop taking commands, finish those in flight, then hand the answers back: they go on in the runners
        # and whichever replica starts next resumes relaying them from the stored run events.
        if self._commands is not None:
            with contextlib.suppress(Exception):
                await self._commands.unsubscribe()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._relay is not None:
            await self._relay.stop()
        if self._typing is not None:
            await self._typing.stop()
        if self._follower is not None:
            await self._follower.stop()

    async def _rooms_ready(self) -> bool:
        return self._rebuilt

    def _observe(self) -> None:
        state = self.state
        self.chat_metrics.observe(
            rooms=lambda: len(state.rooms),
            participants=lambda: sum(len(r.users) for r in state.rooms.values()),
            sessions=lambda: sum(len(r.sessions) for r in state.rooms.values()),
            active_answers=lambda: sum(1 for r in state.rooms.values() if r.answer is not None),
            queued=lambda: sum(len(r.unanswered) for r in state.rooms.values()),
            typing=lambda: self.typing.active,
        )

    # ---- commands ------------------------------------------------------------------------------------------

    async def _on_command(self, msg: Msg) -> None:
        if not msg.reply:
            return  # commands are requests; a bare publish has nobody to answer
        s = self.chat_settings
        if len(msg.data) > s.max_command_bytes:
            await self._respond(msg, CommandTooLarge(len(msg.data), s.max_command_bytes).to_wire(), "?", None)
            return
        if len(self._in_flight) >= s.max_inflight_commands:
            await self._respond(msg, ChatOverloaded(s.max_inflight_commands).to_wire(), "?", None)
            return
        task = self.spawn(self._handle(msg), name="command")
        self._in_flight.add(task)
        self.chat_metrics.commands_in_flight.inc()
        task.add_done_callback(self._command_done)

    def _command_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self.chat_metrics.commands_in_flight.dec()
        if not task.cancelled() and task.exception() is not None:
            self.log.error("command handler crashed", exc_info=task.exception())

    async def _handle(self, msg: Msg) -> None:
        started = time.monotonic()
        name = "unknown"
        reply: ChatReply
        try:
            command = chat_command_decoder.decode(msg.data)
            name = str(command.__struct_config__.tag)
            reply = await self.execute(command)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            reply = InvalidCommand(str(exc)).to_wire()
        except ChatError as exc:
            reply = exc.to_wire()
        except Exception as exc:
            self.log.exception("command %s failed", name)
            reply = Error(code=ErrorCode.INTERNAL, message=f"internal error: {type(exc).__name__}")
        await self._respond(msg, reply, name, started)

    async def _respond(self, msg: Msg, reply: ChatReply, name: str, started: float | None) -> None:
        outcome = reply.code.value if isinstance(reply, Error) else "ok"
        self.chat_metrics.commands.labels(command=name, outcome=outcome).inc()
        if started is not None:
            self.chat_metrics.command_seconds.labels(command=name).observe(time.monotonic() - started)
        try:
            await msg.respond(chat_encoder.encode(reply))
        except Exception as exc:  # the requester is gone, or NATS is reconnecting: it will time out and retry
            self.log.debug("reply not sent: %s", exc)

    async def execute(self, command: ChatCommand) -> ChatReply:
        """Handle one command (also callable in-process); raises :class:`ChatError` for a typed refusal."""
        if not self._rebuilt:
            raise ChatUnavailable("rebuilding rooms from the event store")
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
            raise RoomNotFound(name[:200])
        return room

    def _same_room(self, room_id: str, name: str) -> Room:
        """The room again, inside a plan: it may have been deleted (or replaced) since."""
        room = self.state.rooms.get(room_id)
        if room is None:
            raise RoomNotFound(name[:200])
        return room

    async def _create(self, cmd: CreateRoom) -> RoomInfo:
        room_id = uuid.uuid4().hex[:16]
        existing: Room | None = None

        def plan() -> Planned | None:
            nonlocal existing
            result = decide.create_room(self.state, cmd, self.chat_settings, room_id=room_id, now=time.time())
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
        with contextlib.suppress(ChatError):
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
            event = decide.join(room, cmd, self.chat_settings, time.time())
            if event is None:
                first = False
                return None
            first = event.first_session
            return self.writer.to_log(room, event)

        await self.writer.write(room_id, plan)
        await self._snapshot_if_due(room_id)
        room = self._same_room(room_id, cmd.room)
        history = room.config.message_history if self.chat_settings.enable_message_history else 0
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

    async def _reap(self, room_id: str, user: str, session: str) -> None:
        """Take a session of a vanished gateway out of its room."""
        room = self.state.rooms.get(room_id)
        if room is None:
            return
        with contextlib.suppress(ChatError):
            await self._leave(LeaveRoom(room=room.name, user=user, session=session, reason="gateway gone"))
            self.chat_metrics.sessions_reaped.inc()

    async def _post(self, cmd: PostMessage) -> MessageAccepted:
        room_id = self._room(cmd.room).id
        outcome: decide.Post | None = None

        def plan() -> Planned | None:
            nonlocal outcome
            room = self._same_room(room_id, cmd.room)
            outcome = decide.post(self.state, room, cmd, self.chat_settings, time.time())
            return None if outcome.message is None else self.writer.to_messages(room, outcome.message)

        written = await self.writer.write(room_id, plan)
        assert outcome is not None
        if outcome.duplicate_of is not None:
            message_id, seq, count = outcome.duplicate_of
            return MessageAccepted(room_id=room_id, message_id=message_id, count=count, seq=seq, duplicate=True)
        assert written is not None and outcome.message is not None
        self.chat_metrics.messages.inc()
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
        if not self.chat_settings.enable_typing_indicators:
            raise FeatureDisabled("typing indicators")
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
            event = decide.add_agent(room, cmd, self.chat_settings, time.time())
            return None if event is None else self.writer.to_log(room, event)

        await self.writer.write(room_id, plan)
        await self._snapshot_if_due(room_id)
        return self._same_room(room_id, cmd.room).info()

    async def _handoff(self, cmd: RequestHandoff) -> RoomInfo:
        room_id = self._room(cmd.room).id

        def plan() -> Planned | None:
            room = self._same_room(room_id, cmd.room)
            event = decide.handoff(room, cmd, self.chat_settings, time.time())
            return None if event is None else self.writer.to_messages(room, event)

        if await self.writer.write(room_id, plan) is not None:
            self.chat_metrics.handoffs.inc()
        return self._same_room(room_id, cmd.room).info()

    async def _history(self, cmd: GetHistory) -> History:
        room = self._room(cmd.room)
        decide.may_enter(room, cmd.user, cmd.granted)
        if not self.chat_settings.enable_message_history:
            raise FeatureDisabled("message history")
        if cmd.limit is not None and cmd.limit < 0:
            raise InvalidCommand("limit must not be negative")
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
        every = self.chat_settings.snapshot_every

        def plan() -> Planned | None:
            room = self.state.rooms.get(room_id)
            if room is None or room.log_events < every:
                return None
            return self.writer.to_log(room, room.snapshot(time.time()), rollup=True)

        room = self.state.rooms.get(room_id)
        if room is not None and room.log_events >= every:
            with contextlib.suppress(ChatError):
                await self.writer.write(room_id, plan)
