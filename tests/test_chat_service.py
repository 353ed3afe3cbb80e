"""The chat service against a real nats-server: rooms, limits, typing, history, restarts and replicas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import nats
import pytest
from nats.micro import add_service

from proto.chat import (
    AgentMessage,
    CreateRoom,
    JoinRoom,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomInfo,
    RoomJoined,
    TypingStarted,
    TypingStopped,
    UserMessage,
)
from proto.errors import ErrorCode
from proto.runs import AgentSpec
from services.chat import ChatApp, ChatSettings
from shared.chat.errors import (
    ChatError,
    ChatOverloaded,
    CommandTooLarge,
    FeatureDisabled,
    MessageTooLong,
    NotAParticipant,
    RateLimited,
    RoomExists,
    RoomFull,
    RoomNotFound,
    RoomRestricted,
    TooManyAgents,
    TooManyRooms,
    TooManySessions,
    room_full,
)
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.errors import SettingsError
from shared.service.app import App
from tests.support.chat import ChatHarness
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture
async def harness(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
                  ) -> AsyncIterator[ChatHarness]:
    h = ChatHarness(nats_server.url, redis_server.url, start_app)
    yield h
    await h.close()


async def test_rooms_are_created_listed_and_names_are_unique(harness: ChatHarness) -> None:
    await harness.replica()
    chat = await harness.client()
    general = await chat.create_room("General Support", max_participants=50, message_history=100)
    tech = await chat.create_room("Technical Discussion", max_participants=20, message_history=200,
                                  restricted=True)
    assert (general.config.max_participants, general.config.message_history) == (50, 100)
    assert tech.config.restricted and general.agent == "assistant"
    assert [r.name for r in await chat.rooms()] == ["General Support", "Technical Discussion"]
    with pytest.raises(RoomExists):
        await chat.create_room("General Support")
    assert (await chat.create_room("General Support", exist_ok=True)).id == general.id
    with pytest.raises(RoomNotFound) as missing:
        await chat.join("Nowhere", "alice", "a1")
    assert missing.value.code == ErrorCode.NOT_FOUND and missing.value.room == "Nowhere"


async def test_a_full_room_refuses_the_next_joiner_with_a_typed_error(harness: ChatHarness) -> None:
    await harness.replica()
    chat = await harness.client()
    await chat.create_room("Small", max_participants=2)
    await chat.join("Small", "alice", "a1")
    await chat.join("Small", "alice", "a2")  # a second tab of a participant takes no new place
    await chat.join("Small", "bob", "b1")
    with pytest.raises(RoomFull) as full:
        await chat.join("Small", "carol", "c1")
    assert (full.value.code, full.value.room, full.value.limit) == (ErrorCode.LIMIT_EXCEEDED, "Small", 2)
    await chat.leave("Small", "bob", "b1")
    await chat.join("Small", "carol", "c1")
    assert [p.user for p in (await chat.room("Small")).participants] == ["alice", "carol"]


async def test_a_restricted_room_refuses_an_outsider_and_admits_granted_or_allowed_users(harness: ChatHarness) -> None:
    await harness.replica()
    chat = await harness.client()
    await chat.create_room("Staff", restricted=True, allowed=["alice"])
    with pytest.raises(RoomRestricted) as refused:
        await chat.join("Staff", "mallory", "m1")
    assert (refused.value.code, refused.value.user) == (ErrorCode.FORBIDDEN, "mallory")
    with pytest.raises(RoomRestricted):
        await chat.history("Staff", "mallory")
    await chat.join("Staff", "alice", "a1")
    await chat.join("Staff", "bob", "b1", granted=True)  # the gateway's auth grants bob this room
    with pytest.raises(NotAParticipant):
        await chat.post("Staff", "mallory", "m1", "let me in")
    assert {p.user for p in (await chat.room("Staff")).participants} == {"alice", "bob"}


async def test_over_length_and_over_rate_messages_get_typed_errors(harness: ChatHarness) -> None:
    await harness.replica(CHAT_MAX_MESSAGE_LENGTH="20", CHAT_RATE_LIMIT="3", CHAT_MAX_QUEUED_MESSAGES="10")
    chat = await harness.client()
    await chat.create_room("Limits")
    await chat.join("Limits", "alice", "a1")
    await chat.join("Limits", "bob", "b1")
    with pytest.raises(MessageTooLong) as long:
        await chat.post("Limits", "alice", "a1", "x" * 21)
    assert (long.value.code, long.value.length, long.value.limit) == (ErrorCode.TOO_LARGE, 21, 20)
    for i in range(3):
        await chat.post("Limits", "alice", "a1", f"hi {i}")
    with pytest.raises(RateLimited) as limited:
        await chat.post("Limits", "alice", "a1", "one too many")
    assert limited.value.code == ErrorCode.RATE_LIMITED and limited.value.limit == 3
    assert 55 < limited.value.retry_after <= 60
    await chat.post("Limits", "bob", "b1", "bob may post")


async def test_typing_indicators_arrive_stop_and_expire_on_their_own(harness: ChatHarness) -> None:
    await harness.replica(CHAT_TYPING_TIMEOUT="0.3")
    chat = await harness.client()
    room = await chat.create_room("Typing")
    await chat.join("Typing", "alice", "a1")
    await chat.join("Typing", "bob", "b1")
    notices = await chat.typing_notices(room.id)
    try:
        await chat.typing("Typing", "alice", "a1")
        started = await notices.next(2)
        assert isinstance(started, TypingStarted) and started.user == "alice" and started.expires_in == 0.3
        joined = await chat.join("Typing", "carol", "c1")
        assert joined.typing == ["alice"]
        expired = await notices.next(2)
        assert isinstance(expired, TypingStopped) and (expired.user, expired.reason) == ("alice", "expired")

        await chat.typing("Typing", "bob", "b1")
        await notices.next(2)
        await chat.typing("Typing", "bob", "b1", typing=False)
        stopped = await notices.next(2)
        assert isinstance(stopped, TypingStopped) and stopped.reason == "stopped"

        await chat.typing("Typing", "bob", "b1")
        await notices.next(2)
        await chat.post("Typing", "bob", "b1", "done typing")
        sent = await notices.next(2)
        assert isinstance(sent, TypingStopped) and sent.reason == "sent"
        with pytest.raises(TimeoutError):
            await notices.next(0.5)  # nothing left to expire
        with pytest.raises(NotAParticipant):
            await chat.typing("Typing", "mallory", "m1")
    finally:
        await notices.close()


async def test_a_restarted_chat_service_has_its_rooms_participants_history_and_counts(harness: ChatHarness) -> None:
    first = await harness.replica()
    chat = await harness.client()
    await chat.create_room("Durable", max_participants=10, message_history=4)
    for user in ("alice", "bob", "carol"):
        await chat.join("Durable", user, f"{user}-1")
    await chat.leave("Durable", "carol", "carol-1")
    for i in range(6):
        await chat.post("Durable", "alice" if i % 2 else "bob", "alice-1" if i % 2 else "bob-1", f"message {i}")
    await eventually(lambda: not first.state.room_named("Durable").busy)  # type: ignore[union-attr]  # answers done
    before = (await chat.stats(), await chat.room("Durable"), await chat.history("Durable", "alice"))
    await first.stop()
    await harness.replica()
    after = (await chat.stats(), await chat.room("Durable"), await chat.history("Durable", "alice"))
    assert after == before
    stats, room, history = after
    assert [p.user for p in room.participants] == ["alice", "bob"]
    assert stats.rooms["Durable"].participants == 2 and stats.rooms["Durable"].messages == room.messages >= 6
    assert len(history) == 4


async def test_a_late_joiner_reads_the_last_message_history_messages_then_live_ones(harness: ChatHarness) -> None:
    app = await harness.replica()
    chat = await harness.client()
    await chat.create_room("Late", message_history=3)
    await chat.join("Late", "alice", "a1")
    for i in range(5):
        await chat.post("Late", "alice", "a1", f"early {i}")
        await eventually(lambda: not app.state.room_named("Late").busy)  # type: ignore[union-attr]
    joined = await chat.join("Late", "bob", "b1")
    feed = await chat.feed(joined)
    try:
        history = [await feed.next(2) for _ in range(3)]
        # Without an agent runner every message is answered by a failed agent_message: both are history.
        assert all(item.history and isinstance(item.event, UserMessage | AgentMessage) for item in history)
        assert [item.seq for item in history] == sorted(item.seq for item in history)
        assert history[-1].seq == joined.live_from - 1 or history[-1].seq < joined.live_from
        await chat.post("Late", "bob", "b1", "hello, I am new")
        live = await feed.next(2)
        assert not live.history and isinstance(live.event, UserMessage) and live.event.text == "hello, I am new"
    finally:
        await feed.close()
    assert len(await chat.history("Late", "bob")) == 3
    assert len(await chat.history("Late", "bob", limit=2)) == 2


async def test_two_replicas_never_both_admit_the_last_participant(harness: ChatHarness) -> None:
    a = await harness.replica()
    b = await harness.replica()
    chat = await harness.client()
    await chat.create_room("Contended", max_participants=5)
    users = [f"user{i}" for i in range(16)]
    # Commands go to a queue group, so both replicas take some; send each half straight to one replica too.
    results = await asyncio.gather(
        *(chat.join("Contended", user, f"{user}-s") for user in users[:8]),
        *(a.execute(JoinRoom(room="Contended", user=user, session=f"{user}-s")) for user in users[8:12]),
        *(b.execute(JoinRoom(room="Contended", user=user, session=f"{user}-s")) for user in users[12:]),
        return_exceptions=True,
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(admitted) == 5 and all(isinstance(r, RoomFull) for r in refused)
    await eventually(lambda: len(a.state.room_named("Contended").users) == 5  # type: ignore[union-attr]
                     and len(b.state.room_named("Contended").users) == 5)  # type: ignore[union-attr]
    assert a.state.room_named("Contended").users == b.state.room_named("Contended").users  # type: ignore[union-attr]


async def test_room_logs_are_compacted_by_snapshots_and_still_rebuild(harness: ChatHarness) -> None:
    first = await harness.replica(CHAT_SNAPSHOT_EVERY="5")
    chat = await harness.client()
    room = await chat.create_room("Churn")
    for i in range(12):
        await chat.join("Churn", f"u{i}", "s")
        if i % 3:
            await chat.leave("Churn", f"u{i}", "s")
    stored = await first.js.stream_info(first.store.log_stream, subjects_filter=first.subjects.chat_room_log(room.id))
    assert stored.state.subjects is not None
    assert stored.state.subjects[first.subjects.chat_room_log(room.id)] < 8  # 20 events, compacted
    participants = (await chat.room("Churn")).participants
    await first.stop()
    await harness.replica(CHAT_SNAPSHOT_EVERY="5")
    assert (await chat.room("Churn")).participants == participants
    assert [p.user for p in participants] == ["u0", "u3", "u6", "u9"]


async def test_a_retried_post_with_the_same_client_id_is_stored_once(harness: ChatHarness) -> None:
    await harness.replica()
    chat = await harness.client()
    await chat.create_room("Retries")
    await chat.join("Retries", "alice", "a1")
    first = await chat.post("Retries", "alice", "a1", "only once", client_id="c-1")
    again = await chat.post("Retries", "alice", "a1", "only once", client_id="c-1")
    assert again.duplicate and (again.message_id, again.seq, again.count) == (first.message_id, first.seq,
                                                                               first.count)
    texts = [m.text for m in await chat.history("Retries", "alice") if isinstance(m, UserMessage)]
    assert texts == ["only once"]


async def test_malformed_and_oversized_commands_get_typed_errors(harness: ChatHarness) -> None:
    await harness.replica(CHAT_MAX_COMMAND_BYTES="2048")
    chat = await harness.client()
    for payload in (b"not json", b'{"type":"no_such_command"}', b'{"type":"join_room","room":1}'):
        reply = json.loads((await chat.nc.request(chat.subjects.chat_commands, payload, timeout=2)).data)
        assert (reply["type"], reply["code"]) == ("error", "bad_request")
    await chat.create_room("Big")
    await chat.join("Big", "alice", "a1")
    with pytest.raises(CommandTooLarge) as large:
        await chat.post("Big", "alice", "a1", "x" * 4000)
    assert large.value.limit == 2048
    assert (await chat.room("Big")).messages == 0


async def test_sessions_of_a_vanished_gateway_are_reaped(harness: ChatHarness) -> None:
    app = await harness.replica(CHAT_PRESENCE_CHECK_INTERVAL="0.2")
    chat = await harness.client()
    gateway_nc = await nats.connect(harness.nats_url)
    gateway = await add_service(gateway_nc, name=f"{harness.prefix}-gateway", version="0.1.0",
                                metadata={"instance": "gw-1"})
    try:
        await chat.create_room("Presence")
        await chat.join("Presence", "alice", "conn-1", owner="gw-1")
        await chat.join("Presence", "bob", "conn-2", owner="gw-1")
        await chat.join("Presence", "carol", "nats-1")  # no gateway holds it: never reaped
        await asyncio.sleep(1.0)  # several checks while the gateway answers
        assert len((await chat.room("Presence")).participants) == 3
        await gateway.stop()
        await eventually(lambda: len(app.state.room_named("Presence").users) == 1,  # type: ignore[union-attr]
                         timeout=5)
        assert [p.user for p in (await chat.room("Presence")).participants] == ["carol"]
    finally:
        await gateway_nc.close()


async def test_deleting_a_room_frees_its_place_and_tells_those_following_it(harness: ChatHarness) -> None:
    await harness.replica(CHAT_MAX_ROOMS="2")
    chat = await harness.client()
    await chat.create_room("One")
    await chat.create_room("Two")
    with pytest.raises(TooManyRooms):
        await chat.create_room("Three")
    joined = await chat.join("One", "alice", "a1")
    log = await chat.room_log(joined.room.id, joined.log_seq)
    try:
        await chat.delete_room("One")
        _, closed = await log.next(2)
        assert isinstance(closed, RoomClosed) and closed.name == "One"
    finally:
        await log.close()
    await chat.create_room("Three")
    with pytest.raises(RoomNotFound):
        await chat.post("One", "alice", "a1", "anyone?")


async def test_presence_changes_follow_the_room_log_after_a_join(harness: ChatHarness) -> None:
    await harness.replica()
    chat = await harness.client()
    await chat.create_room("Lobby")
    joined = await chat.join("Lobby", "alice", "a1")
    log = await chat.room_log(joined.room.id, joined.log_seq)
    try:
        await chat.join("Lobby", "bob", "b1")
        await chat.join("Lobby", "bob", "b2")
        await chat.leave("Lobby", "bob", "b1")
        await chat.leave("Lobby", "bob", "b2")
        events = [(await log.next(2))[1] for _ in range(4)]
        assert [type(e) for e in events] == [ParticipantJoined, ParticipantJoined, ParticipantLeft, ParticipantLeft]
        assert [getattr(e, "first_session", None) for e in events[:2]] == [True, False]
        assert [getattr(e, "last_session", None) for e in events[2:]] == [False, True]
    finally:
        await log.close()


async def test_stats_have_the_seeds_shape(harness: ChatHarness) -> None:
    await harness.replica()
    chat = await harness.client()
    await chat.create_room("General Support")
    await chat.create_room("Technical Discussion")
    await chat.join("General Support", "alice", "a1")
    await chat.join("Technical Discussion", "alice", "a2")
    await chat.join("Technical Discussion", "bob", "b1")
    stats = await chat.stats()
    assert (stats.connected_clients, stats.active_sessions, stats.available_agents) == (3, 2, 1)
    assert {name: (r.participants, r.messages) for name, r in stats.rooms.items()} == {
        "General Support": (1, 0), "Technical Discussion": (2, 0)}
    assert set(json.loads(msgspec.json.encode(stats))) == {
        "type", "connected_clients", "active_sessions", "active_streams", "available_agents", "total_messages",
        "rooms"}


async def test_without_an_agent_runner_a_message_gets_a_typed_failed_answer(harness: ChatHarness) -> None:
    app = await harness.replica()
    chat = await harness.client()
    await chat.create_room("Alone")
    joined = await chat.join("Alone", "alice", "a1")
    feed = await chat.feed(joined)
    try:
        await chat.post("Alone", "alice", "a1", "is anyone there?")
        events = [(await feed.next(3)).event for _ in range(3)]
        answer = events[-1]
        assert isinstance(answer, AgentMessage) and answer.status == "failed"
        assert answer.error == ErrorCode.UNAVAILABLE
    finally:
        await feed.close()
    # The replica folds its own write when the append's ack returns, which may be after the feed delivered it.
    await eventually(lambda: not app.state.room_named("Alone").busy, 5,  # type: ignore[union-attr]
                     what="the room is free again")


async def test_a_typed_error_survives_the_wire_with_its_attributes() -> None:
    error = room_full("Small", 2).to_wire(ref="r1")
    back = ChatError.from_wire(error)
    assert isinstance(back, RoomFull) and (back.room, back.limit, back.code) == ("Small", 2, ErrorCode.LIMIT_EXCEEDED)


async def test_the_feed_keeps_message_history_size_messages_per_room(harness: ChatHarness) -> None:
    app = await harness.replica(CHAT_MESSAGE_HISTORY_SIZE="5", CHAT_RATE_LIMIT="100")
    chat = await harness.client()
    room = await chat.create_room("Capped")
    await chat.join("Capped", "alice", "a1")
    for i in range(8):
        await chat.post("Capped", "alice", "a1", f"message {i}")
        await eventually(lambda: not app.state.room_named("Capped").busy)  # type: ignore[union-attr]
    subject = app.subjects.chat_feed_messages(room.id)
    info = await app.js.stream_info(app.store.feed_stream, subjects_filter=subject)
    assert info.state.subjects == {subject: 5}
    history = await chat.history("Capped", "alice")
    assert len(history) == 5 and (await chat.room("Capped")).messages == 16
    with pytest.raises(ChatError) as too_big:
        await chat.create_room("Bigger", message_history=6)
    assert too_big.value.code == ErrorCode.BAD_REQUEST


async def test_sessions_agents_and_commands_in_flight_are_bounded(harness: ChatHarness) -> None:
    await harness.replica(CHAT_MAX_SESSIONS_PER_USER="2", CHAT_MAX_AGENTS_PER_ROOM="2",
                          CHAT_MAX_INFLIGHT_COMMANDS="1")
    chat = await harness.client()
    await chat.create_room("Bounded", agents=[AgentSpec(name="support")])
    await chat.join("Bounded", "alice", "tab-1")
    await chat.join("Bounded", "alice", "tab-2")
    with pytest.raises(TooManySessions) as sessions:
        await chat.join("Bounded", "alice", "tab-3")
    assert (sessions.value.code, sessions.value.limit) == (ErrorCode.LIMIT_EXCEEDED, 2)
    await chat.add_agent("Bounded", AgentSpec(name="tech"))
    with pytest.raises(TooManyAgents):
        await chat.add_agent("Bounded", AgentSpec(name="sales"))
    results = await asyncio.gather(*(chat.room("Bounded") for _ in range(20)),
                                   *(chat.join("Bounded", f"u{i}", "s") for i in range(10)),
                                   return_exceptions=True)
    overloaded = [r for r in results if isinstance(r, ChatOverloaded)]
    assert overloaded and all(r.code == ErrorCode.OVERLOADED for r in overloaded)
    assert all(isinstance(r, RoomInfo | RoomJoined | ChatOverloaded) for r in results), results


async def test_switched_off_features_are_refused_with_typed_errors(harness: ChatHarness) -> None:
    await harness.replica(CHAT_ENABLE_TYPING_INDICATORS="false", CHAT_ENABLE_HANDOFFS="false",
                          CHAT_ENABLE_MESSAGE_HISTORY="false")
    chat = await harness.client()
    await chat.create_room("Plain", agents=[AgentSpec(name="a"), AgentSpec(name="b")])
    joined = await chat.join("Plain", "alice", "a1")
    assert joined.history_from == joined.live_from
    for call in (chat.typing("Plain", "alice", "a1"), chat.handoff("Plain", "alice", "a1", "b"),
                 chat.history("Plain", "alice")):
        with pytest.raises(FeatureDisabled) as off:
            await call
        assert off.value.code == ErrorCode.FORBIDDEN


def test_bad_chat_settings_name_their_variable() -> None:
    for name, value in (("CHAT_BUSY_POLICY", "sometimes"), ("CHAT_DEFAULT_AGENT", "not an agent"),
                        ("CHAT_RATE_LIMIT", "0"), ("CHAT_TYPING_TIMEOUT", "soon"), ("CHAT_MESSAGE_HISTORY_SIZE", "0")):
        with pytest.raises(SettingsError) as bad:
            ChatSettings.from_env({name: value})
        assert bad.value.variable == name
    settings = ChatSettings.from_env({"CHAT_BUSY_POLICY": "interrupt", "CHAT_MAX_ROOMS": "7"})
    assert (settings.busy_policy, settings.max_rooms) == ("interrupt", 7)


async def test_replicas_keep_folding_each_others_events_after_nats_restarts(
    private_nats: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    harness = ChatHarness(private_nats.url, redis_server.url, start_app)
    a = await harness.replica()
    b = await harness.replica()
    try:
        await a.execute(CreateRoom(name="Survivor"))
        await eventually(lambda: b.state.room_named("Survivor") is not None)
        private_nats.kill()
        await asyncio.sleep(0.5)  # an outage the replicas notice
        private_nats.start()
        await eventually(lambda: a.nc.is_connected and b.nc.is_connected, timeout=10)
        await eventually(lambda: _joins(a, "after"), timeout=15)
        await eventually(lambda: b.state.room_named("Survivor") is not None
                         and "after" in b.state.room_named("Survivor").users, timeout=15)  # type: ignore[union-attr]
    finally:
        await harness.close()


async def _joins(app: ChatApp, user: str) -> bool:
    try:
        await app.execute(JoinRoom(room="Survivor", user=user, session="s"))
    except ChatError:
        return False
    return True
