"""The situations of the chat API: each is the ``shared.errors`` class of its wire code with a ``kind`` and facts,
so ``except raaf.NotFoundError`` catches a missing room and a round trip over NATS keeps the situation."""

from __future__ import annotations

import enum

from shared.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidNameError,
    LimitExceededError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    StreamingError,
    TooLargeError,
    UnavailableError,
)


class ChatErrorKind(enum.StrEnum):
    """The situations of the chat API, sent as ``details["kind"]``."""

    INVALID_COMMAND = "invalid_command"
    COMMAND_TOO_LARGE = "command_too_large"
    INVALID_ROOM_NAME = "invalid_room_name"
    INVALID_AGENT = "invalid_agent"
    ROOM_NOT_FOUND = "room_not_found"
    ROOM_EXISTS = "room_exists"
    TOO_MANY_ROOMS = "too_many_rooms"
    ROOM_FULL = "room_full"
    TOO_MANY_SESSIONS = "too_many_sessions"
    TOO_MANY_AGENTS = "too_many_agents"
    ROOM_RESTRICTED = "room_restricted"
    NOT_A_PARTICIPANT = "not_a_participant"
    FEATURE_DISABLED = "feature_disabled"
    MESSAGE_TOO_LONG = "message_too_long"
    EMPTY_MESSAGE = "empty_message"
    RATE_LIMITED = "rate_limited"
    AGENT_BUSY = "agent_busy"
    QUEUE_FULL = "queue_full"
    UNKNOWN_AGENT = "unknown_agent"
    CONCURRENT_UPDATE = "concurrent_update"
    CHAT_UNAVAILABLE = "chat_unavailable"
    CHAT_OVERLOADED = "chat_overloaded"


# The seed's names: each is the class of its wire code; ``.kind`` tells the situations apart.
ChatError = StreamingError
InvalidCommand = BadRequestError
CommandTooLarge = TooLargeError
InvalidRoomName = InvalidNameError
InvalidAgent = BadRequestError
RoomNotFound = NotFoundError
RoomExists = ConflictError
TooManyRooms = LimitExceededError
RoomFull = LimitExceededError
TooManySessions = LimitExceededError
TooManyAgents = LimitExceededError
RoomRestricted = ForbiddenError
NotAParticipant = ForbiddenError
FeatureDisabled = ForbiddenError
MessageTooLong = TooLargeError
EmptyMessage = BadRequestError
RateLimited = RateLimitError
AgentBusy = ConflictError
QueueFull = OverloadedError
UnknownAgent = NotFoundError
ConcurrentUpdate = ConflictError
ChatUnavailable = UnavailableError
ChatOverloaded = OverloadedError


def invalid_command(reason: str) -> BadRequestError:
    """A command that cannot be decoded or has a bad field."""
    return BadRequestError(reason, kind=ChatErrorKind.INVALID_COMMAND, details={"reason": reason})


def command_too_large(size: int, limit: int) -> TooLargeError:
    """A command payload over CHAT_MAX_COMMAND_BYTES."""
    return TooLargeError(f"command of {size} bytes is over the {limit}-byte limit",
                         kind=ChatErrorKind.COMMAND_TOO_LARGE, details={"size": size, "limit": limit})


def invalid_room_name(name: str, reason: str) -> InvalidNameError:
    """A room name that is empty, too long or has control characters."""
    return InvalidNameError(f"invalid room name {name!r}: {reason}",
                            kind=ChatErrorKind.INVALID_ROOM_NAME, details={"name": name, "reason": reason})


def invalid_agent(agent: str, reason: str) -> BadRequestError:
    """An agent definition the platform cannot run (bad name, duplicate)."""
    return BadRequestError(f"invalid agent {agent!r}: {reason}",
                           kind=ChatErrorKind.INVALID_AGENT, details={"agent": agent, "reason": reason})


def room_not_found(room: str) -> NotFoundError:
    """No room of that name."""
    return NotFoundError(f"no room {room!r}", kind=ChatErrorKind.ROOM_NOT_FOUND, details={"room": room})


def room_exists(room: str) -> ConflictError:
    """A room of that name exists already."""
    return ConflictError(f"room {room!r} exists already", kind=ChatErrorKind.ROOM_EXISTS, details={"room": room})


def too_many_rooms(limit: int) -> LimitExceededError:
    """CHAT_MAX_ROOMS rooms exist already."""
    return LimitExceededError(f"the chat has its maximum of {limit} rooms",
                              kind=ChatErrorKind.TOO_MANY_ROOMS, details={"limit": limit})


def room_full(room: str, limit: int) -> LimitExceededError:
    """The room has its maximum of participants."""
    return LimitExceededError(f"room {room!r} is full ({limit} participants)",
                              kind=ChatErrorKind.ROOM_FULL, details={"room": room, "limit": limit})


def too_many_sessions(room: str, user: str, limit: int) -> LimitExceededError:
    """A user joined the room from CHAT_MAX_SESSIONS_PER_USER sessions already."""
    return LimitExceededError(f"{user!r} is in room {room!r} from {limit} sessions already",
                              kind=ChatErrorKind.TOO_MANY_SESSIONS,
                              details={"room": room, "user": user, "limit": limit})


def too_many_agents(room: str, limit: int) -> LimitExceededError:
    """The room has CHAT_MAX_AGENTS_PER_ROOM agents already."""
    return LimitExceededError(f"room {room!r} has its maximum of {limit} agents",
                              kind=ChatErrorKind.TOO_MANY_AGENTS, details={"room": room, "limit": limit})


def room_restricted(room: str, user: str) -> ForbiddenError:
    """A restricted room refuses an identity it does not allow."""
    return ForbiddenError(f"room {room!r} is restricted and {user!r} is not allowed in it",
                          kind=ChatErrorKind.ROOM_RESTRICTED, details={"room": room, "user": user})


def not_a_participant(room: str, user: str) -> ForbiddenError:
    """Only participants (this session joined) may post, type or ask for a handoff."""
    return ForbiddenError(f"{user!r} has not joined room {room!r} from this session",
                          kind=ChatErrorKind.NOT_A_PARTICIPANT, details={"room": room, "user": user})


def feature_disabled(feature: str) -> ForbiddenError:
    """A feature switched off by configuration (handoffs, typing indicators, history)."""
    return ForbiddenError(f"{feature} are disabled", kind=ChatErrorKind.FEATURE_DISABLED, details={"feature": feature})


def message_too_long(length: int, limit: int) -> TooLargeError:
    """A message over the room's max_message_length."""
    return TooLargeError(f"message of {length} characters is over the {limit}-character limit",
                         kind=ChatErrorKind.MESSAGE_TOO_LONG, details={"length": length, "limit": limit})


def empty_message(room: str) -> BadRequestError:
    """A message with no text."""
    return BadRequestError("message text is empty", kind=ChatErrorKind.EMPTY_MESSAGE, details={"room": room})


def rate_limited(user: str, limit: int, retry_after: float) -> RateLimitError:
    """A user posted CHAT_RATE_LIMIT messages in the last minute."""
    return RateLimitError(f"{user!r} may post {limit} messages a minute; retry in {retry_after:.1f}s",
                          kind=ChatErrorKind.RATE_LIMITED,
                          details={"user": user, "limit": limit, "retry_after": retry_after})


def agent_busy(room: str, agent: str) -> ConflictError:
    """The room rejects messages while its agent is answering (busy policy ``reject``)."""
    return ConflictError(f"{agent!r} is still answering in room {room!r}; this room rejects messages until it is done",
                         kind=ChatErrorKind.AGENT_BUSY, details={"room": room, "agent": agent})


def queue_full(room: str, limit: int) -> OverloadedError:
    """CHAT_MAX_QUEUED_MESSAGES messages wait for an answer in the room already."""
    return OverloadedError(f"room {room!r} has {limit} messages waiting for an answer; try later",
                           kind=ChatErrorKind.QUEUE_FULL, details={"room": room, "limit": limit})


def unknown_agent(room: str, agent: str) -> NotFoundError:
    """The room has no agent of that name."""
    return NotFoundError(f"room {room!r} has no agent {agent!r}",
                         kind=ChatErrorKind.UNKNOWN_AGENT, details={"room": room, "agent": agent})


def concurrent_update(room: str) -> ConflictError:
    """The room kept changing under the command (other replicas); the client may retry."""
    return ConflictError(f"room {room!r} changed concurrently; retry",
                         kind=ChatErrorKind.CONCURRENT_UPDATE, details={"room": room})


def chat_unavailable(reason: str) -> UnavailableError:
    """The chat service is draining, rebuilding or cannot reach its store."""
    return UnavailableError(f"chat unavailable: {reason}",
                            kind=ChatErrorKind.CHAT_UNAVAILABLE, details={"reason": reason})


def chat_overloaded(limit: int) -> OverloadedError:
    """CHAT_MAX_INFLIGHT_COMMANDS commands are being handled already."""
    return OverloadedError(f"chat is handling {limit} commands already; try later",
                           kind=ChatErrorKind.CHAT_OVERLOADED, details={"limit": limit})
