"""Typed chat errors: each carries its attributes and a wire code, and survives the trip through NATS; each is
also the ``shared.errors`` class of its code, so ``except raaf.NotFoundError`` catches ``RoomNotFound``."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from proto.errors import Error, ErrorCode
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


class ChatError(StreamingError):
    """Base of every chat error; ``kind`` names the subclass on the wire (``details.kind``, ahead of the
    attributes)."""

    code = ErrorCode.INTERNAL
    kind: ClassVar[str] = "chat_error"
    _kinds: ClassVar[dict[str, type[ChatError]]] = {}

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message, details={"kind": self.kind, **attrs})
        self.attrs = attrs
        for name, value in attrs.items():
            setattr(self, name, value)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        ChatError._kinds[cls.kind] = cls

    @classmethod
    def from_wire(cls, error: Error) -> ChatError:
        """The exception an error reply stands for: its own subclass when ``details.kind`` names one."""
        details = {k: msgspec.json.decode(v) for k, v in (error.details or {}).items()}
        kind = details.pop("kind", None)
        klass = ChatError._kinds.get(kind) if isinstance(kind, str) else None
        if klass is None:
            exc = ChatError(error.message, **details)
            exc.code = error.code
            return exc
        exc = klass.__new__(klass)
        ChatError.__init__(exc, error.message, **details)
        return exc


class InvalidCommand(ChatError, BadRequestError):
    """A command that cannot be decoded or has a bad field."""

    code = ErrorCode.BAD_REQUEST
    kind = "invalid_command"
    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason, reason=reason)


class CommandTooLarge(ChatError, TooLargeError):
    """A command payload over CHAT_MAX_COMMAND_BYTES."""

    code = ErrorCode.TOO_LARGE
    kind = "command_too_large"
    size: int
    limit: int

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"command of {size} bytes is over the {limit}-byte limit", size=size, limit=limit)


class InvalidRoomName(ChatError, InvalidNameError):
    """A room name that is empty, too long or has control characters."""

    code = ErrorCode.INVALID_NAME
    kind = "invalid_room_name"
    name: str
    reason: str

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid room name {name!r}: {reason}", name=name, reason=reason)


class InvalidAgent(ChatError, BadRequestError):
    """An agent definition the platform cannot run (bad name, duplicate)."""

    code = ErrorCode.BAD_REQUEST
    kind = "invalid_agent"
    agent: str
    reason: str

    def __init__(self, agent: str, reason: str) -> None:
        super().__init__(f"invalid agent {agent!r}: {reason}", agent=agent, reason=reason)


class RoomNotFound(ChatError, NotFoundError):
    """No room of that name."""

    code = ErrorCode.NOT_FOUND
    kind = "room_not_found"
    room: str

    def __init__(self, room: str) -> None:
        super().__init__(f"no room {room!r}", room=room)


class RoomExists(ChatError, ConflictError):
    """A room of that name exists already."""

    code = ErrorCode.CONFLICT
    kind = "room_exists"
    room: str

    def __init__(self, room: str) -> None:
        super().__init__(f"room {room!r} exists already", room=room)


class TooManyRooms(ChatError, LimitExceededError):
    """CHAT_MAX_ROOMS rooms exist already."""

    code = ErrorCode.LIMIT_EXCEEDED
    kind = "too_many_rooms"
    limit: int

    def __init__(self, limit: int) -> None:
        super().__init__(f"the chat has its maximum of {limit} rooms", limit=limit)


class RoomFull(ChatError, LimitExceededError):
    """The room has its maximum of participants."""

    code = ErrorCode.LIMIT_EXCEEDED
    kind = "room_full"
    room: str
    limit: int

    def __init__(self, room: str, limit: int) -> None:
        super().__init__(f"room {room!r} is full ({limit} participants)", room=room, limit=limit)


class TooManySessions(ChatError, LimitExceededError):
    """A user joined the room from CHAT_MAX_SESSIONS_PER_USER sessions already."""

    code = ErrorCode.LIMIT_EXCEEDED
    kind = "too_many_sessions"
    room: str
    user: str
    limit: int

    def __init__(self, room: str, user: str, limit: int) -> None:
        super().__init__(
            f"{user!r} is in room {room!r} from {limit} sessions already",
            room=room, user=user, limit=limit,
        )


class TooManyAgents(ChatError, LimitExceededError):
    """The room has CHAT_MAX_AGENTS_PER_ROOM agents already."""

    code = ErrorCode.LIMIT_EXCEEDED
    kind = "too_many_agents"
    room: str
    limit: int

    def __init__(self, room: str, limit: int) -> None:
        super().__init__(f"room {room!r} has its maximum of {limit} agents", room=room, limit=limit)


class RoomRestricted(ChatError, ForbiddenError):
    """A restricted room refuses an identity it does not allow."""

    code = ErrorCode.FORBIDDEN
    kind = "room_restricted"
    room: str
    user: str

    def __init__(self, room: str, user: str) -> None:
        super().__init__(f"room {room!r} is restricted and {user!r} is not allowed in it", room=room, user=user)


class NotAParticipant(ChatError, ForbiddenError):
    """Only participants (this session joined) may post, type or ask for a handoff."""

    code = ErrorCode.FORBIDDEN
    kind = "not_a_participant"
    room: str
    user: str

    def __init__(self, room: str, user: str) -> None:
        super().__init__(f"{user!r} has not joined room {room!r} from this session", room=room, user=user)


class FeatureDisabled(ChatError, ForbiddenError):
    """A feature switched off by configuration (handoffs, typing indicators, history)."""

    code = ErrorCode.FORBIDDEN
    kind = "feature_disabled"
    feature: str

    def __init__(self, feature: str) -> None:
        super().__init__(f"{feature} are disabled", feature=feature)


class MessageTooLong(ChatError, TooLargeError):
    """A message over the room's max_message_length."""

    code = ErrorCode.TOO_LARGE
    kind = "message_too_long"
    length: int
    limit: int

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"message of {length} characters is over the {limit}-character limit",
            length=length, limit=limit,
        )


class EmptyMessage(ChatError, BadRequestError):
    """A message with no text."""

    code = ErrorCode.BAD_REQUEST
    kind = "empty_message"
    room: str

    def __init__(self, room: str) -> None:
        super().__init__("message text is empty", room=room)


class RateLimited(ChatError, RateLimitError):
    """A user posted CHAT_RATE_LIMIT messages in the last minute."""

    code = ErrorCode.RATE_LIMITED
    kind = "rate_limited"
    user: str
    limit: int
    retry_after: float

    def __init__(self, user: str, limit: int, retry_after: float) -> None:
        super().__init__(
            f"{user!r} may post {limit} messages a minute; retry in {retry_after:.1f}s",
            user=user, limit=limit, retry_after=retry_after,
        )


class AgentBusy(ChatError, ConflictError):
    """The room rejects messages while its agent is answering (busy policy ``reject``)."""

    code = ErrorCode.CONFLICT
    kind = "agent_busy"
    room: str
    agent: str

    def __init__(self, room: str, agent: str) -> None:
        super().__init__(
            f"{agent!r} is still answering in room {room!r}; this room rejects messages until it is done",
            room=room, agent=agent,
        )


class QueueFull(ChatError, OverloadedError):
    """CHAT_MAX_QUEUED_MESSAGES messages wait for an answer in the room already."""

    code = ErrorCode.OVERLOADED
    kind = "queue_full"
    room: str
    limit: int

    def __init__(self, room: str, limit: int) -> None:
        super().__init__(f"room {room!r} has {limit} messages waiting for an answer; try later", room=room, limit=limit)


class UnknownAgent(ChatError, NotFoundError):
    """The room has no agent of that name."""

    code = ErrorCode.NOT_FOUND
    kind = "unknown_agent"
    room: str
    agent: str

    def __init__(self, room: str, agent: str) -> None:
        super().__init__(f"room {room!r} has no agent {agent!r}", room=room, agent=agent)


class ConcurrentUpdate(ChatError, ConflictError):
    """The room kept changing under the command (other replicas); the client may retry."""

    code = ErrorCode.CONFLICT
    kind = "concurrent_update"
    room: str

    def __init__(self, room: str) -> None:
        super().__init__(f"room {room!r} changed concurrently; retry", room=room)


class ChatUnavailable(ChatError, UnavailableError):
    """The chat service is draining, rebuilding or cannot reach its store."""

    code = ErrorCode.UNAVAILABLE
    kind = "chat_unavailable"
    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(f"chat unavailable: {reason}", reason=reason)


class ChatOverloaded(ChatError, OverloadedError):
    """CHAT_MAX_INFLIGHT_COMMANDS commands are being handled already."""

    code = ErrorCode.OVERLOADED
    kind = "chat_overloaded"
    limit: int

    def __init__(self, limit: int) -> None:
        super().__init__(f"chat is handling {limit} commands already; try later", limit=limit)
