"""A room is the fold of its events: replays, duplicates and snapshots all give the same room."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.chat import (
    AgentHandoff,
    AgentMessage,
    AnswerDelta,
    AnswerStarted,
    BusyPolicy,
    CreateRoom,
    JoinRoom,
    ParticipantJoined,
    ParticipantLeft,
    PostMessage,
    RoomConfig,
    RoomCreated,
    RoomDeleted,
    RoomLogEvent,
    UserMessage,
)
from proto.runs import AgentSpec
from services.chat import decide
from services.chat.room import ChatState
from services.chat.settings import ChatSettings
from shared.chat.errors import (
    AgentBusy,
    EmptyMessage,
    InvalidAgent,
    InvalidCommand,
    InvalidRoomName,
    MessageTooLong,
    NotAParticipant,
    QueueFull,
    RateLimited,
    RoomExists,
    RoomFull,
    RoomRestricted,
    TooManyRooms,
)
from shared.service.settings import RuntimeSettings

SETTINGS = ChatSettings(runtime=RuntimeSettings(), max_rooms=3, rate_limit=3, max_queued_messages=2)
ROOM = "r1"


def created(policy: BusyPolicy = BusyPolicy.ENQUEUE, *, max_participants: int = 2, history: int = 5,
            restricted: bool = False) -> RoomCreated:
    config = RoomConfig(max_participants=max_participants, message_history=history, restricted=restricted,
                        allowed=["vip"], busy_policy=policy)
    return RoomCreated(room_id=ROOM, name="General", config=config, agent="support",
                       agents=[AgentSpec(name="support", instructions="help"), AgentSpec(name="tech")], at=1.0)


def fresh(policy: BusyPolicy = BusyPolicy.ENQUEUE, **kw: object) -> ChatState:
    state = ChatState(keep_recent=10)
    state.apply(created(policy, **kw), 1)  # type: ignore[arg-type]
    return state


def joined(user: str, session: str = "s", at: float = 2.0) -> ParticipantJoined:
    return ParticipantJoined(room_id=ROOM, user=user, session=session, at=at)


def message(count: int, user: str = "alice", at: float = 10.0) -> UserMessage:
    return UserMessage(id=f"{ROOM}-{count}", room_id=ROOM, user=user, text=f"m{count}", agent="support",
                       count=count, at=at)


def test_joins_and_leaves_fold_into_participants_with_sessions() -> None:
    state = fresh()
    state.apply(joined("alice", "a1"), 2)
    state.apply(joined("alice", "a2"), 3)
    state.apply(joined("bob", "b1"), 4)
    room = state.rooms[ROOM]
    assert [(p.user, p.sessions) for p in room.participants()] == [("alice", 2), ("bob", 1)]
    state.apply(ParticipantLeft(room_id=ROOM, user="alice", session="a1", at=5.0), 5)
    assert [(p.user, p.sessions) for p in room.participants()] == [("alice", 1), ("bob", 1)]
    assert room.log_seq == 5


def test_an_event_delivered_twice_is_folded_once() -> None:
    state = fresh()
    state.apply(joined("alice"), 2)
    state.apply(message(1), 1)
    assert state.apply(message(1), 1) is None
    assert state.apply(joined("alice"), 2) is None
    room = state.rooms[ROOM]
    assert room.messages == 1 and len(room.unanswered) == 1 and len(state.posts["alice"]) == 1


def test_answers_settle_waiting_messages_and_handoffs_move_the_agent() -> None:
    state = fresh()
    for count in (1, 2):
        state.apply(message(count), count)
    room = state.rooms[ROOM]
    assert room.next_to_answer() is not None and room.next_to_answer().id == f"{ROOM}-1"  # type: ignore[union-attr]
    state.apply(AnswerStarted(room_id=ROOM, run_id="run1", agent="support", in_reply_to=f"{ROOM}-1",
                              in_reply_seq=1, at=11.0), 1)
    assert room.answer is not None and room.next_to_answer() is None and room.busy
    state.apply(AnswerDelta(room_id=ROOM, run_id="run1", agent="support", seq=2, delta="he"), 2)
    assert room.answer.relayed_seq == 2
    state.apply(AgentHandoff(room_id=ROOM, from_agent="support", to_agent="tech", by="agent", count=2, at=12.0), 3)
    assert room.current_agent == "tech"
    state.apply(AgentMessage(id="run1", room_id=ROOM, agent="tech", text="hello", in_reply_to=f"{ROOM}-1",
                             count=3, at=13.0), 4)
    assert room.answer is None and room.messages == 3 and room.current_agent == "tech"
    assert [p.id for p in room.unanswered] == [f"{ROOM}-2"]


def test_interrupt_answers_the_newest_message_and_skips_the_ones_before() -> None:
    state = fresh(BusyPolicy.INTERRUPT)
    for count in (1, 2, 3):
        state.apply(message(count), count)
    room = state.rooms[ROOM]
    newest = room.next_to_answer()
    assert newest is not None and newest.id == f"{ROOM}-3"
    state.apply(AnswerStarted(room_id=ROOM, run_id="run3", agent="support", in_reply_to=newest.id,
                              in_reply_seq=3, at=11.0), 1)
    assert room.unanswered == []


def test_history_window_is_the_newest_message_history_messages() -> None:
    state = fresh(history=3)
    for count in range(1, 8):
        state.apply(message(count), count * 10)
    room = state.rooms[ROOM]
    assert room.history_from(3) == 50
    assert room.history_from(100) == room.recent[0]
    assert room.history_from(0) == 0
    assert room.live_from() == 71


def test_deleting_a_room_frees_its_name_and_ignores_its_late_events() -> None:
    state = fresh()
    state.apply(RoomDeleted(room_id=ROOM, name="General", at=3.0), 2)
    assert state.room_named("General") is None
    assert state.apply(joined("alice"), 5) is None


def test_decide_enforces_room_limits_and_restrictions() -> None:
    state = fresh(max_participants=1, restricted=True)
    room = state.rooms[ROOM]
    with pytest.raises(RoomRestricted) as refused:
        decide.join(room, JoinRoom(room="General", user="mallory", session="m"), SETTINGS, 3.0)
    assert refused.value.user == "mallory" and refused.value.code == "forbidden"
    event = decide.join(room, JoinRoom(room="General", user="vip", session="v"), SETTINGS, 3.0)
    assert event is not None and event.first_session
    state.apply(event, 2)
    assert decide.join(room, JoinRoom(room="General", user="vip", session="v"), SETTINGS, 3.0) is None
    with pytest.raises(RoomFull) as full:
        decide.join(room, JoinRoom(room="General", user="granted", session="g", granted=True), SETTINGS, 3.0)
    assert full.value.limit == 1 and full.value.code == "limit_exceeded"


def test_decide_refuses_bad_posts_with_typed_errors() -> None:
    state = fresh(BusyPolicy.REJECT)
    state.apply(joined("alice"), 2)
    room = state.rooms[ROOM]

    def post(text: str, session: str = "s", now: float = 100.0) -> decide.Post:
        return decide.post(state, room, PostMessage(room="General", user="alice", session=session, text=text),
                           SETTINGS, now)

    with pytest.raises(NotAParticipant):
        post("hi", session="other")
    with pytest.raises(EmptyMessage):
        post("   ")
    with pytest.raises(MessageTooLong) as long:
        post("x" * 2001)
    assert (long.value.length, long.value.limit) == (2001, 2000)
    first = post("hi")
    assert first.message is not None
    state.apply(first.message, 1)
    with pytest.raises(AgentBusy):
        post("again")


def test_decide_rate_limits_per_user_over_a_sliding_minute() -> None:
    state = fresh()
    state.apply(joined("alice"), 2)
    room = state.rooms[ROOM]
    for i, at in enumerate((100.0, 101.0, 102.0)):
        state.apply(message(i + 1, at=at), i + 1)
        room.unanswered.clear()  # answered, for this test
    with pytest.raises(RateLimited) as limited:
        decide.post(state, room, PostMessage(room="General", user="alice", session="s", text="x"), SETTINGS, 130.0)
    assert limited.value.limit == 3 and limited.value.retry_after == pytest.approx(30.0)
    ok = decide.post(state, room, PostMessage(room="General", user="alice", session="s", text="x"), SETTINGS, 160.5)
    assert ok.message is not None


def test_decide_caps_the_queue_of_waiting_messages() -> None:
    state = fresh()
    state.apply(joined("alice"), 2)
    room = state.rooms[ROOM]
    for count in (1, 2):
        state.apply(message(count, at=float(count)), count)
    with pytest.raises(QueueFull) as full:
        decide.post(state, room, PostMessage(room="General", user="alice", session="s", text="x"), SETTINGS, 5.0)
    assert full.value.code == "overloaded"


def test_decide_validates_new_rooms() -> None:
    state = fresh()
    with pytest.raises(RoomExists):
        decide.create_room(state, CreateRoom(name="General"), SETTINGS, room_id="x", now=1.0)
    assert decide.create_room(state, CreateRoom(name="General", exist_ok=True), SETTINGS, room_id="x",
                              now=1.0) is state.rooms[ROOM]
    for bad in ("", "  ", "a\x00b", "x" * 101):
        with pytest.raises(InvalidRoomName):
            decide.create_room(state, CreateRoom(name=bad), SETTINGS, room_id="x", now=1.0)
    with pytest.raises(InvalidAgent):
        decide.create_room(state, CreateRoom(name="n", agents=[AgentSpec(name="bad name")]), SETTINGS,
                           room_id="x", now=1.0)
    with pytest.raises(InvalidCommand):
        decide.create_room(state, CreateRoom(name="n", max_participants=51), SETTINGS, room_id="x", now=1.0)
    for i in range(2):
        state.apply(decide.create_room(state, CreateRoom(name=f"n{i}"), SETTINGS, room_id=f"id{i}",  # type: ignore[arg-type]
                                       now=1.0), 2 + i)
    with pytest.raises(TooManyRooms):
        decide.create_room(state, CreateRoom(name="one more"), SETTINGS, room_id="x", now=1.0)


sessions = st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.sampled_from(["s1", "s2"]),
                              st.booleans()), max_size=40)


@settings(max_examples=60, deadline=None)
@given(sessions, st.integers(min_value=1, max_value=40))
def test_a_snapshot_then_the_rest_folds_to_the_same_room_as_the_whole_log(
    steps: list[tuple[str, str, bool]], cut: int
) -> None:
    events: list[RoomLogEvent] = []
    for user, session, joining in steps:
        if joining:
            events.append(joined(user, session))
        else:
            events.append(ParticipantLeft(room_id=ROOM, user=user, session=session, at=3.0))
    whole = fresh()
    for seq, event in enumerate(events, start=2):
        whole.apply(event, seq)
    cut = min(cut, len(events))
    head = fresh()
    for seq, event in enumerate(events[:cut], start=2):
        head.apply(event, seq)
    snapshot = head.rooms[ROOM].snapshot(at=9.0)
    compacted = fresh()
    compacted.apply(snapshot, cut + 1)
    for seq, event in enumerate(events[cut:], start=cut + 2):
        compacted.apply(event, seq)
    a, b = whole.rooms[ROOM], compacted.rooms[ROOM]
    assert set(a.sessions) == set(b.sessions)
    assert {u: sorted(s) for u, s in a.users.items()} == {u: sorted(s) for u, s in b.users.items()}
