"""What a command does to a room: checks against the fold and the limits, and the event to store (no I/O)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from proto.chat import (
    AddAgent,
    AgentAdded,
    AgentHandoff,
    BusyPolicy,
    CreateRoom,
    JoinRoom,
    LeaveRoom,
    ParticipantJoined,
    ParticipantLeft,
    PostMessage,
    RequestHandoff,
    RoomConfig,
    RoomCreated,
    UserMessage,
)
from proto.runs import AgentSpec, is_agent_name
from services.chat.room import RATE_WINDOW, ChatState, Room
from services.chat.settings import ChatSettings
from shared.chat.errors import (
    agent_busy,
    empty_message,
    feature_disabled,
    invalid_agent,
    invalid_command,
    invalid_room_name,
    message_too_long,
    not_a_participant,
    queue_full,
    rate_limited,
    room_exists,
    room_full,
    room_restricted,
    too_many_agents,
    too_many_rooms,
    too_many_sessions,
    unknown_agent,
)

MAX_ID_LENGTH = 200  # users, sessions, client ids


def check_room_name(name: str, limit: int) -> str:
    if not name or not name.strip():
        raise invalid_room_name(name, "empty")
    if len(name) > limit:
        raise invalid_room_name(name[:limit] + "...", f"longer than {limit} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise invalid_room_name(name, "contains control characters")
    return name


def check_id(what: str, value: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH:
        raise invalid_command(f"{what} must be 1-{MAX_ID_LENGTH} characters")
    return value


def check_agent(agent: AgentSpec) -> AgentSpec:
    if not is_agent_name(agent.name):
        raise invalid_agent(agent.name, "names are 1-48 letters, digits, '_' or '-'")
    return agent


def is_reference(agent: AgentSpec) -> bool:
    """A spec with nothing but a name refers to an agent the runners serve; it is not sent with runs."""
    return agent == AgentSpec(name=agent.name)


def may_enter(room: Room, user: str, granted: bool) -> None:
    """A restricted room admits identities the gateway granted it to, or those on its ``allowed`` list."""
    if room.config.restricted and not granted and user not in room.config.allowed:
        raise room_restricted(room.name, user)


def require_participant(room: Room, user: str, session: str) -> None:
    if not room.has_session(user, session):
        raise not_a_participant(room.name, user)


def _bounded(what: str, value: int | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not low <= value <= high:
        raise invalid_command(f"{what} must be between {low} and {high}")
    return value


def resolve_config(cmd: CreateRoom, s: ChatSettings) -> RoomConfig:
    return RoomConfig(
        max_participants=_bounded("max_participants", cmd.max_participants, s.max_participants_per_room, 1,
                                  s.max_participants_per_room),
        message_history=_bounded("message_history", cmd.message_history, s.message_history_size, 0,
                                 s.message_history_size),
        restricted=cmd.restricted,
        allowed=[check_id("allowed user", user) for user in cmd.allowed],
        busy_policy=cmd.busy_policy or s.busy_policy,
        max_message_length=_bounded("max_message_length", cmd.max_message_length, s.max_message_length, 1,
                                    s.max_message_length),
    )


def create_room(state: ChatState, cmd: CreateRoom, s: ChatSettings, *, room_id: str, now: float
                ) -> RoomCreated | Room:
    """The new room's event, or the existing room when ``exist_ok``."""
    check_room_name(cmd.name, s.max_room_name_length)
    existing = state.room_named(cmd.name)
    if existing is not None:
        if cmd.exist_ok:
            return existing
        raise room_exists(cmd.name)
    if len(state.rooms) >= s.max_rooms:
        raise too_many_rooms(s.max_rooms)
    config = resolve_config(cmd, s)
    agents = [check_agent(agent) for agent in cmd.agents]
    names = [agent.name for agent in agents]
    if len(set(names)) != len(names):
        raise invalid_agent(next(n for n in names if names.count(n) > 1), "defined twice")
    primary = cmd.agent or (names[0] if names else s.default_agent)
    if not is_agent_name(primary):
        raise invalid_agent(primary, "names are 1-48 letters, digits, '_' or '-'")
    if len(set(names) | {primary}) > s.max_agents_per_room:
        raise too_many_agents(cmd.name, s.max_agents_per_room)
    return RoomCreated(room_id=room_id, name=cmd.name, config=config, agent=primary, agents=agents,
                       by=cmd.by, at=now)


def join(room: Room, cmd: JoinRoom, s: ChatSettings, now: float) -> ParticipantJoined | None:
    """The join event, or None when this session is in the room already."""
    check_id("user", cmd.user)
    check_id("session", cmd.session)
    may_enter(room, cmd.user, cmd.granted)
    if room.has_session(cmd.user, cmd.session):
        return None
    sessions = room.users.get(cmd.user)
    if sessions is None and len(room.users) >= room.config.max_participants:
        raise room_full(room.name, room.config.max_participants)
    if sessions is not None and len(sessions) >= s.max_sessions_per_user:
        raise too_many_sessions(room.name, cmd.user, s.max_sessions_per_user)
    return ParticipantJoined(room_id=room.id, user=cmd.user, session=cmd.session, owner=cmd.owner,
                             first_session=sessions is None, at=now)


def leave(room: Room, cmd: LeaveRoom, now: float) -> ParticipantLeft | None:
    if not room.has_session(cmd.user, cmd.session):
        return None
    last = len(room.users.get(cmd.user, ())) <= 1
    return ParticipantLeft(room_id=room.id, user=cmd.user, session=cmd.session, reason=cmd.reason[:200],
                           last_session=last, at=now)


@dataclass(frozen=True, slots=True)
class Post:
    """A post's outcome: the message to store, or the id of the same message stored before (a retry)."""

    message: UserMessage | None
    duplicate_of: tuple[str, int, int] | None = None  # (message id, feed sequence, count)
    interrupts: str | None = None  # the run this message cancels (busy policy interrupt)


def post(state: ChatState, room: Room, cmd: PostMessage, s: ChatSettings, now: float) -> Post:
    require_participant(room, cmd.user, cmd.session)
    if cmd.client_id is not None:
        check_id("client_id", cmd.client_id)
        stored = room.client_ids.get((cmd.user, cmd.client_id))
        if stored is not None:
            return Post(message=None, duplicate_of=stored)
    if not cmd.text.strip():
        raise empty_message(room.name)
    if len(cmd.text) > room.config.max_message_length:
        raise message_too_long(len(cmd.text), room.config.max_message_length)
    recent = state.posts_within(cmd.user, now)
    if len(recent) >= s.rate_limit:
        raise rate_limited(cmd.user, s.rate_limit, round(max(0.0, recent[0] + RATE_WINDOW - now), 3))
    policy = room.config.busy_policy
    interrupts = None
    if room.busy:
        if policy is BusyPolicy.REJECT:
            raise agent_busy(room.name, room.answer.agent if room.answer else room.current_agent)
        if len(room.unanswered) >= s.max_queued_messages:
            raise queue_full(room.name, s.max_queued_messages)
        if policy is BusyPolicy.INTERRUPT and room.answer is not None:
            interrupts = room.answer.run_id
    count = room.messages + 1
    message = UserMessage(id=f"{room.id}-{count}", room_id=room.id, user=cmd.user, text=cmd.text,
                          agent=room.current_agent, count=count, client_id=cmd.client_id, at=now)
    return Post(message=message, interrupts=interrupts)


def add_agent(room: Room, cmd: AddAgent, s: ChatSettings, now: float) -> AgentAdded | None:
    agent = check_agent(cmd.agent)
    if room.agents.get(agent.name) == agent:
        return None
    if agent.name not in room.agent_names() and len(room.agent_names()) >= s.max_agents_per_room:
        raise too_many_agents(room.name, s.max_agents_per_room)
    return AgentAdded(room_id=room.id, agent=agent, by=cmd.by, at=now)


def handoff(room: Room, cmd: RequestHandoff, s: ChatSettings, now: float) -> AgentHandoff | None:
    """A participant's handoff; None when the room's agent is that one already."""
    if not s.enable_handoffs:
        raise feature_disabled("handoffs")
    require_participant(room, cmd.user, cmd.session)
    if cmd.agent not in room.agent_names():
        raise unknown_agent(room.name, cmd.agent)
    if cmd.agent == room.current_agent:
        return None
    return AgentHandoff(room_id=room.id, from_agent=room.current_agent, to_agent=cmd.agent, by="user",
                        user=cmd.user, reason=cmd.reason[:500], count=room.messages, at=now)
