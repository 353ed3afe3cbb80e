"""The chat's event store in JetStream: two streams, appends guarded by the subject's last sequence, replay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from proto.chat import (
    AgentHandoff,
    AgentMessage,
    FeedEvent,
    FeedMessage,
    RoomLogEvent,
    UserMessage,
    chat_encoder,
    feed_decoder,
    room_log_decoder,
)
from proto.subjects import Subjects
from shared.chat.errors import chat_unavailable

log = logging.getLogger("raaf.chat.store")

WRONG_LAST_SEQUENCE: Final = 10071
DUPLICATE_WINDOW: Final = 120.0  # seconds JetStream remembers Nats-Msg-Id values
_HEARTBEAT: Final = 1.0  # seconds between idle heartbeats of the fold's consumers

StoredEvent = RoomLogEvent | FeedEvent
Apply = Callable[[StoredEvent, int], object]
# Told each stored event whose message carries headers (the trace context a posted message was stored with).
NoteHeaders = Callable[[StoredEvent, Mapping[str, str]], None]
_CONVERSATION: Final = (UserMessage, AgentMessage, AgentHandoff)


class WrongLastSequence(Exception):
    """Another writer appended to the subject since the fold last saw it."""


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    duplicate: bool


def chat_streams(subjects: Subjects, *, history_size: int, replicas: int = 1) -> list[StreamConfig]:
    """The room log (directory and per-room logs, compacted by snapshots) and the feed, whose subjects keep
    the last CHAT_MESSAGE_HISTORY_SIZE events per room."""
    s = subjects
    return [
        StreamConfig(name=s.stream_name("chat"), subjects=[s.chat_directory, s.chat_room_logs_all],
                     storage=StorageType.FILE, num_replicas=replicas, discard=DiscardPolicy.OLD,
                     allow_rollup_hdrs=True, duplicate_window=DUPLICATE_WINDOW, allow_direct=True),
        StreamConfig(name=s.stream_name("chat_feed"), subjects=[s.chat_feed_all], storage=StorageType.FILE,
                     num_replicas=replicas, discard=DiscardPolicy.OLD, max_msgs_per_subject=history_size,
                     duplicate_window=DUPLICATE_WINDOW, allow_direct=True),
    ]


class ChatStore:
    """Appends events and replays them; it knows subjects and streams, not what the events mean."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, *, timeout: float = 5.0) -> None:
        self.js = js
        self.subjects = subjects
        self.timeout = timeout
        self.log_stream = subjects.stream_name("chat")
        self.feed_stream = subjects.stream_name("chat_feed")

    # ---- writing -------------------------------------------------------------------------------------------

    async def append(self, subject: str, event: StoredEvent, *, expected: int | None = None,
                     msg_id: str | None = None, rollup: bool = False, trace: Mapping[str, str] | None = None
                     ) -> Appended:
        """Store ``event`` (``trace``: the trace context headers stored with it, e.g. a posted message's)."""
        headers: dict[str, str] = {} if trace is None else dict(trace)
        if expected is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        if rollup:
            headers["Nats-Rollup"] = "sub"
        try:
            ack = await self.js.publish(subject, chat_encoder.encode(event), timeout=self.timeout,
                                        headers=headers or None)
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise WrongLastSequence(subject) from None
            raise chat_unavailable(f"event store refused the write: {exc.description}") from exc
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
                NoStreamResponseError) as exc:
            # NoStreamResponseError: an empty reply, which a stream electing a new leader can give.
            raise chat_unavailable(f"event store unreachable ({type(exc).__name__})") from exc
        return Appended(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def last_seq(self, stream: str, subject: str) -> int:
        """The stream sequence of the subject's newest message, 0 if it has none."""
        try:
            msg = await self.js.get_last_msg(stream, subject, direct=True)
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def purge_room(self, room_id: str) -> None:
        """Empty a deleted room's subjects; its log keeps its last event (``room_closed``) for late readers."""
        with contextlib.suppress(NotFoundError):
            await self.js.purge_stream(self.log_stream, subject=self.subjects.chat_room_log(room_id), keep=1)
        with contextlib.suppress(NotFoundError):
            await self.js.purge_stream(self.feed_stream, subject=self.subjects.chat_feed(room_id))

    # ---- reading -------------------------------------------------------------------------------------------

    async def read_messages(self, room_id: str, from_seq: int, *, limit: int, before_seq: int | None = None
                            ) -> list[FeedMessage]:
        """Up to ``limit`` conversation messages of the room from feed sequence ``from_seq`` on."""
        if limit <= 0 or from_seq <= 0:
            return []
        out: list[FeedMessage] = []
        sub = await self.js.subscribe(self.subjects.chat_feed_messages(room_id), stream=self.feed_stream,
                                      ordered_consumer=True, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                      config=_start_at(from_seq))
        try:
            while len(out) < limit:
                try:
                    msg = await sub.next_msg(timeout=self.timeout)
                except nats.errors.TimeoutError:
                    break
                seq = msg.metadata.sequence.stream
                if before_seq is not None and seq >= before_seq:
                    break
                event = _decode_feed(msg)
                if isinstance(event, _CONVERSATION):
                    out.append(event)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out


def _start_at(seq: int) -> nats.js.api.ConsumerConfig:
    return nats.js.api.ConsumerConfig(opt_start_seq=seq)


def _decode_feed(msg: Msg) -> FeedEvent | None:
    try:
        return feed_decoder.decode(msg.data)
    except msgspec.DecodeError:
        log.warning("undecodable feed event on %s", msg.subject)
        return None


class Follower:
    """Folds both streams into the state from their first message, then live; ``caught_up`` once replayed."""

    def __init__(self, js: JetStreamContext, subjects: Subjects, store: ChatStore, apply: Apply,
                 note_headers: NoteHeaders | None = None) -> None:
        self.js = js
        self.subjects = subjects
        self.store = store
        self.apply = apply
        self.note_headers = note_headers
        self.changed = asyncio.Condition()
        self._subs: list[nats.js.JetStreamContext.PushSubscription] = []
        self._caught_up: dict[str, asyncio.Event] = {}

    async def start(self, spawn: Callable[..., asyncio.Task[None]]) -> None:
        decoders: list[tuple[str, Callable[[bytes], StoredEvent]]] = [
            (self.store.log_stream, room_log_decoder.decode), (self.store.feed_stream, feed_decoder.decode)]
        for stream, decode in decoders:
            info = await self.js.stream_info(stream)
            done = asyncio.Event()
            if info.state.messages == 0:
                done.set()
            self._caught_up[stream] = done
            # Heartbeats every second: a consumer lost with a restarted server is recreated (from the last
            # sequence applied) after two missed beats, so replicas keep folding each other's writes.
            sub = await self.js.subscribe(f"{self.subjects.prefix}.chat.>", stream=stream, ordered_consumer=True,
                                          deliver_policy=DeliverPolicy.ALL, idle_heartbeat=_HEARTBEAT,
                                          pending_msgs_limit=-1, pending_bytes_limit=-1)
            self._subs.append(sub)
            spawn(self._run(sub, stream, decode, done), name=f"follow-{stream}")

    async def caught_up(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._caught_up.values())), timeout)

    async def _run(self, sub: nats.js.JetStreamContext.PushSubscription, stream: str,
                   decode: Callable[[bytes], StoredEvent], done: asyncio.Event) -> None:
        while True:
            try:
                msg = await sub.next_msg(timeout=None)
            except nats.errors.TimeoutError:
                continue
            try:
                event = decode(msg.data)
            except msgspec.DecodeError:
                log.warning("undecodable event on %s (seq %s)", msg.subject, msg.metadata.sequence.stream)
            else:
                self.apply(event, msg.metadata.sequence.stream)
                if self.note_headers is not None and msg.headers:
                    self.note_headers(event, msg.headers)
            if msg.metadata.num_pending == 0:
                done.set()
            async with self.changed:
                self.changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

