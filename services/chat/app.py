"""The chat service: event-sourced rooms, participants, typing, agents and handoffs, over NATS request/reply."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import StreamConfig

from proto.chat import ChatCommand, ChatReply, chat_command_decoder, chat_encoder
from proto.errors import Error, ErrorCode
from services.chat.answers import AnswerRelay
from services.chat.commands import Commands
from services.chat.metrics import ChatMetrics
from services.chat.presence import PresenceReaper
from services.chat.room import ChatState
from services.chat.settings import ChatSettings
from services.chat.store import ChatStore, Follower, chat_streams
from services.chat.traces import MessageTraces
from services.chat.typing import TypingTracker
from services.chat.writer import RoomWriter
from shared.chat.errors import (
    chat_overloaded,
    chat_unavailable,
    command_too_large,
    invalid_command,
)
from shared.errors import StreamingError
from shared.nats.conn import barrier
from shared.service.app import App
from shared.tracing import server_span

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
        self._commands_impl: Commands | None = None

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
        traces = MessageTraces()  # filled by the fold from the stored messages, before any answer is resumed
        self._follower = Follower(self.js, self.subjects, self.store, self.state.apply, traces.note)
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
                                  self.chat_metrics, self.spawn, traces)
        await self._relay.recover()
        self.spawn(self._relay.adopt_stalled(), name="relay-adoption")
        self._commands_impl = Commands(settings=s, subjects=self.subjects, nc=self.nc, state=self.state,
                                       store=self.store, writer=self.writer, typing=self._typing, relay=self._relay,
                                       metrics=self.chat_metrics, spawn=self.spawn)
        self._observe()
        # Commands over the in-flight limit are answered ``overloaded`` at once; the pending buffer only has to
        # hold a burst until then (a message NATS drops here would leave its requester to time out).
        self._commands = await self.nc.subscribe(self.subjects.chat_commands, queue="chat", cb=self._on_command,
                                                 pending_msgs_limit=max(65_536, s.max_inflight_commands * 16))
        await barrier(self.nc)  # the server routes commands to us before we report ready
        if s.presence_check_interval > 0:
            self._reaper = PresenceReaper(self.nc, self.subjects, self.state, interval=s.presence_check_interval,
                                          leave=self._commands_impl.reap)
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
            await self._respond(msg, command_too_large(len(msg.data), s.max_command_bytes).to_wire(), "?", None)
            return
        if len(self._in_flight) >= s.max_inflight_commands:
            await self._respond(msg, chat_overloaded(s.max_inflight_commands).to_wire(), "?", None)
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
            with server_span("raaf.chat", f"chat {name}", msg.headers):
                reply = await self.execute(command)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            reply = invalid_command(str(exc)).to_wire()
        except StreamingError as exc:
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
        """Handle one command (also callable in-process); raises :class:`StreamingError` for a typed refusal."""
        if not self._rebuilt or self._commands_impl is None:
            raise chat_unavailable("rebuilding rooms from the event store")
        return await self._commands_impl.execute(command)
