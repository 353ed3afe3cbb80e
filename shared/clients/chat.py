"""A client of the chat service over NATS: typed commands, and readers of a room's feed, log and typing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy

from proto.chat import (
    Ack,
    AddAgent,
    AgentAdded,
    AgentHandoff,
    AgentMessage,
    BusyPolicy,
    ChatCommand,
    ChatReply,
    CreateRoom,
    DeleteRoom,
    FeedEvent,
    FeedMessage,
    GetHistory,
    GetRoom,
    GetStats,
    History,
    JoinRoom,
    LeaveRoom,
    ListRooms,
    MessageAccepted,
    ParticipantJoined,
    ParticipantLeft,
    PostMessage,
    RequestHandoff,
    RoomClosed,
    RoomInfo,
    RoomJoined,
    RoomList,
    RoomLogEvent,
    RoomSummary,
    SetTyping,
    TypingEvent,
    UserMessage,
    chat_encoder,
    chat_reply_decoder,
    feed_decoder,
    room_log_decoder,
    typing_decoder,
)
from proto.chat_ws import ChatEventBody
from proto.errors import Error
from proto.runs import AgentSpec
from proto.stats import ChatSystemStats
from proto.subjects import DEFAULT_PREFIX, Subjects
from shared.chat.errors import chat_unavailable
from shared.errors import InternalError, from_wire
from shared.tracing import inject

T = TypeVar("T")
R = TypeVar("R")
_CONVERSATION = (UserMessage, AgentMessage, AgentHandoff)
_PRESENCE = (ParticipantJoined, ParticipantLeft, AgentAdded, RoomClosed)


class ChatClient:
    """Sends commands to any chat replica (a queue group) and raises the typed error a refusal stands for."""

    def __init__(self, nc: NATS, *, prefix: str = DEFAULT_PREFIX, timeout: float = 5.0) -> None:
        self.nc = nc
        self.subjects = Subjects(prefix)
        self.timeout = timeout

    async def request(self, command: ChatCommand, *, timeout: float | None = None) -> ChatReply:
        try:
            msg = await self.nc.request(self.subjects.chat_commands, chat_encoder.encode(command),
                                        timeout=timeout or self.timeout, headers=inject())
        except nats.errors.NoRespondersError:
            raise chat_unavailable("no chat service is running") from None
        except nats.errors.TimeoutError:
            raise chat_unavailable("the chat service did not answer in time") from None
        reply = chat_reply_decoder.decode(msg.data)
        if isinstance(reply, Error):
            raise from_wire(reply)
        return reply

    async def _expect(self, command: ChatCommand, kind: type[R]) -> R:
        reply = await self.request(command)
        if not isinstance(reply, kind):
            raise InternalError(f"unexpected reply {type(reply).__name__} to {type(command).__name__}")
        return reply

    # ---- rooms -----------------------------------------------------------------------------------------------

    async def create_room(self, name: str, *, agent: str | None = None, agents: list[AgentSpec] | None = None,
                          max_participants: int | None = None, message_history: int | None = None,
                          restricted: bool = False, allowed: list[str] | None = None,
                          busy_policy: BusyPolicy | str | None = None, max_message_length: int | None = None,
                          by: str = "", exist_ok: bool = False) -> RoomInfo:
        command = CreateRoom(name=name, agent=agent, agents=agents or [], max_participants=max_participants,
                             message_history=message_history, restricted=restricted, allowed=allowed or [],
                             busy_policy=BusyPolicy(busy_policy) if busy_policy is not None else None,
                             max_message_length=max_message_length, by=by, exist_ok=exist_ok)
        return await self._expect(command, RoomInfo)

    async def delete_room(self, room: str, *, by: str = "") -> None:
        await self._expect(DeleteRoom(room=room, by=by), Ack)

    async def room(self, room: str) -> RoomInfo:
        return await self._expect(GetRoom(room=room), RoomInfo)

    async def rooms(self) -> list[RoomSummary]:
        return (await self._expect(ListRooms(), RoomList)).rooms

    async def add_agent(self, room: str, agent: AgentSpec, *, by: str = "") -> RoomInfo:
        return await self._expect(AddAgent(room=room, agent=agent, by=by), RoomInfo)

    async def stats(self) -> ChatSystemStats:
        return await self._expect(GetStats(), ChatSystemStats)

    # ---- participants ------------------------------------------------------------------------------------

    async def join(self, room: str, user: str, session: str, *, granted: bool = False, owner: str = ""
                   ) -> RoomJoined:
        return await self._expect(JoinRoom(room=room, user=user, session=session, granted=granted, owner=owner),
                                  RoomJoined)

    async def leave(self, room: str, user: str, session: str, *, reason: str = "left") -> None:
        await self._expect(LeaveRoom(room=room, user=user, session=session, reason=reason), Ack)

    async def post(self, room: str, user: str, session: str, text: str, *, client_id: str | None = None
                   ) -> MessageAccepted:
        return await self._expect(PostMessage(room=room, user=user, session=session, text=text,
                                              client_id=client_id), MessageAccepted)

    async def typing(self, room: str, user: str, session: str, typing: bool = True) -> None:
        await self._expect(SetTyping(room=room, user=user, session=session, typing=typing), Ack)

    async def handoff(self, room: str, user: str, session: str, agent: str, *, reason: str = "") -> RoomInfo:
        return await self._expect(RequestHandoff(room=room, user=user, session=session, agent=agent,
                                                 reason=reason), RoomInfo)

    async def history(self, room: str, user: str, *, granted: bool = False, limit: int | None = None
                      ) -> list[FeedMessage]:
        return (await self._expect(GetHistory(room=room, user=user, granted=granted, limit=limit),
                                   History)).messages

    # ---- readers -----------------------------------------------------------------------------------------

    async def feed(self, joined: RoomJoined) -> Reader[FeedItem]:
        """The room's feed from a join: history (conversation only) before ``live_from``, then everything."""
        live_from = joined.live_from

        def item(seq: int, data: bytes) -> FeedItem | None:
            event = feed_decoder.decode(data)
            history = seq < live_from
            if history and not isinstance(event, _CONVERSATION):
                return None  # pieces of answers that ended before the join: their agent_message follows
            return FeedItem(seq=seq, event=event, history=history)

        return await self._ordered(self.subjects.chat_feed(joined.room.id), self.subjects.stream_name("chat_feed"),
                                   joined.history_from, item)

    async def room_log(self, room_id: str, after_seq: int) -> Reader[tuple[int, RoomLogEvent]]:
        """The room's log after ``after_seq`` (a join's ``log_seq``): presence, agents added, the room closing."""
        return await self._ordered(self.subjects.chat_room_log(room_id), self.subjects.stream_name("chat"),
                                   after_seq + 1, lambda seq, data: (seq, room_log_decoder.decode(data)))

    async def follow_room(self, joined: RoomJoined, on_event: OnRoomEvent) -> list[Subscription]:
        """Call ``on_event`` for the room's feed from the join (history first), its log after the join, and its
        typing notices; the caller unsubscribes the three subscriptions returned when done."""
        room_id, live_from = joined.room.id, joined.live_from

        async def feed(seq: int, event: FeedEvent) -> None:
            history = seq < live_from
            if not history or isinstance(event, _CONVERSATION):
                await on_event(RoomEvent(room_id=room_id, event=event, seq=seq, history=history))

        async def room_log(seq: int, event: RoomLogEvent) -> None:
            if isinstance(event, _PRESENCE):  # not snapshots: they restate what readers have seen
                await on_event(RoomEvent(room_id=room_id, event=event, seq=seq))

        async def typing(event: TypingEvent) -> None:
            await on_event(RoomEvent(room_id=room_id, event=event))

        return await self.subscribe_room(room_id, feed_from=joined.history_from, log_after=joined.log_seq,
                                         on_feed=feed, on_log=room_log, on_typing=typing)

    async def subscribe_room(self, room_id: str, *, feed_from: int, log_after: int,
                             on_feed: Callable[[int, FeedEvent], Awaitable[None]],
                             on_log: Callable[[int, RoomLogEvent], Awaitable[None]],
                             on_typing: Callable[[TypingEvent], Awaitable[None]]) -> list[Subscription]:
        """The room's feed from sequence ``feed_from`` and its log after ``log_after`` (JetStream ordered
        consumers, each event with its stream sequence; undecodable ones skipped) and its typing notices (core
        NATS): three subscriptions, which the caller unsubscribes when done."""
        js = self.nc.jetstream()

        async def feed(msg: Msg) -> None:
            event = _decode(feed_decoder, msg)
            if event is not None:
                await on_feed(msg.metadata.sequence.stream, event)

        async def room_log(msg: Msg) -> None:
            event = _decode(room_log_decoder, msg)
            if event is not None:
                await on_log(msg.metadata.sequence.stream, event)

        async def typing(msg: Msg) -> None:
            event = _decode(typing_decoder, msg)
            if event is not None:
                await on_typing(event)

        subs: list[Subscription] = []
        try:
            subs.append(await js.subscribe(
                self.subjects.chat_feed(room_id), stream=self.subjects.stream_name("chat_feed"), cb=feed,
                ordered_consumer=True, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                config=ConsumerConfig(opt_start_seq=max(1, feed_from))))
            subs.append(await js.subscribe(
                self.subjects.chat_room_log(room_id), stream=self.subjects.stream_name("chat"), cb=room_log,
                ordered_consumer=True, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                config=ConsumerConfig(opt_start_seq=log_after + 1)))
            subs.append(await self.nc.subscribe(self.subjects.chat_room_events(room_id), cb=typing))
        except BaseException:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            raise
        return subs

    async def read_feed(self, room_id: str, first: int, last: int) -> list[tuple[int, FeedEvent]]:
        """The room's feed events from sequence ``first`` through ``last`` that the stream still holds."""
        return await self._read(self.subjects.chat_feed(room_id), self.subjects.stream_name("chat_feed"),
                                first, last, feed_decoder)

    async def read_log(self, room_id: str, first: int, last: int) -> list[tuple[int, RoomLogEvent]]:
        """The room's log events from sequence ``first`` through ``last`` that the stream still holds."""
        return await self._read(self.subjects.chat_room_log(room_id), self.subjects.stream_name("chat"),
                                first, last, room_log_decoder)

    async def _read(self, subject: str, stream: str, first: int, last: int, decoder: msgspec.json.Decoder[T]
                    ) -> list[tuple[int, T]]:
        out: list[tuple[int, T]] = []
        if last < max(1, first):
            return out
        sub = await self.nc.jetstream().subscribe(
            subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=max(1, first)))
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=self.timeout)
                except nats.errors.TimeoutError:
                    break  # nothing at or after ``first`` any more: the room's subjects were purged
                seq = msg.metadata.sequence.stream
                if seq > last:
                    break
                event = _decode(decoder, msg)
                if event is not None:
                    out.append((seq, event))
                if seq == last or msg.metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out

    async def typing_notices(self, room_id: str) -> Reader[TypingEvent]:
        sub = await self.nc.subscribe(self.subjects.chat_room_events(room_id))
        return Reader(sub, lambda msg: typing_decoder.decode(msg.data))

    async def _ordered(self, subject: str, stream: str, start: int, convert: Callable[[int, bytes], T | None]
                       ) -> Reader[T]:
        sub = await self.nc.jetstream().subscribe(
            subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=max(1, start)))
        return Reader(sub, lambda msg: convert(msg.metadata.sequence.stream, msg.data))


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One event of a followed room: ``seq`` is its stream sequence (None for typing notices)."""

    room_id: str
    event: ChatEventBody
    seq: int | None = None
    history: bool = False


OnRoomEvent = Callable[[RoomEvent], Awaitable[None]]


def _decode(decoder: msgspec.json.Decoder[T], msg: Msg) -> T | None:
    try:
        return decoder.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True, slots=True)
class FeedItem:
    seq: int
    event: FeedEvent
    history: bool


class Reader(Generic[T]):
    """Items from a subscription, in order; undecodable ones are skipped. ``close()`` when done."""

    def __init__(self, sub: Subscription, convert: Callable[[Any], T | None]) -> None:
        self.sub = sub
        self.convert = convert

    async def next(self, timeout: float | None = None) -> T:
        """The next item; raises ``TimeoutError`` if none arrives within ``timeout`` seconds."""
        while True:
            try:
                msg = await self.sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError:
                raise TimeoutError from None
            try:
                item = self.convert(msg)
            except msgspec.DecodeError:
                continue
            if item is not None:
                return item

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            yield await self.next(None)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()
