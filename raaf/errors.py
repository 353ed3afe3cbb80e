"""The public API's typed errors: one class per wire ``ErrorCode``, all under :class:`StreamingError`."""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

import msgspec

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the API raises; ``code`` is the wire code, ``ref`` the request it answers."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, *, ref: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref
        self.details = details or {}


class ProtocolError(StreamingError):
    """The other side sent (or got) something the protocol does not allow."""

    code = ErrorCode.PROTOCOL_ERROR


class BadRequestError(ProtocolError):
    code = ErrorCode.BAD_REQUEST


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name
    """The connection is down, could not be made, or NATS/Redis/an upstream is unreachable."""

    code = ErrorCode.CONNECTION_ERROR


class ConnectionClosedError(ConnectionError):
    """The server closed the connection; ``close_code`` says why (4008 slow consumer, 1013 full ...)."""

    def __init__(self, message: str, *, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(message, details={"close_code": close_code, "reason": reason})
        self.close_code = close_code
        self.reason = reason


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name
    code = ErrorCode.TIMEOUT


class AuthenticationError(StreamingError):
    code = ErrorCode.UNAUTHORIZED


class PermissionDeniedError(StreamingError):
    code = ErrorCode.FORBIDDEN


class InvalidNameError(StreamingError):
    """A channel, room or event name that cannot be used."""

    code = ErrorCode.INVALID_NAME


class NotFoundError(StreamingError):
    code = ErrorCode.NOT_FOUND


class ConflictError(StreamingError):
    code = ErrorCode.CONFLICT


class TooLargeError(StreamingError):
    code = ErrorCode.TOO_LARGE


class RateLimitedError(StreamingError):
    code = ErrorCode.RATE_LIMITED

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class LimitExceededError(StreamingError):
    code = ErrorCode.LIMIT_EXCEEDED


class OverloadedError(StreamingError):
    code = ErrorCode.OVERLOADED


class OperationCancelledError(StreamingError):
    code = ErrorCode.CANCELLED


class ProviderError(StreamingError):
    code = ErrorCode.PROVIDER_ERROR


class ToolError(StreamingError):
    code = ErrorCode.TOOL_ERROR


class MaxTurnsExceededError(StreamingError):
    code = ErrorCode.MAX_TURNS


class UnavailableError(StreamingError):
    code = ErrorCode.UNAVAILABLE


class InternalError(StreamingError):
    code = ErrorCode.INTERNAL


ERROR_CLASSES: dict[ErrorCode, type[StreamingError]] = {
    cls.code: cls
    for cls in (BadRequestError, ProtocolError, ConnectionError, TimeoutError, AuthenticationError,
                PermissionDeniedError, InvalidNameError, NotFoundError, ConflictError, TooLargeError,
                RateLimitedError, LimitExceededError, OverloadedError, OperationCancelledError, ProviderError,
                ToolError, MaxTurnsExceededError, UnavailableError, InternalError)
}


def error_from_wire(error: Error | dict[str, Any]) -> StreamingError:
    """The exception for a wire ``error`` (a decoded :class:`proto.errors.Error` or its JSON object)."""
    if isinstance(error, Error):
        details = {k: msgspec.json.decode(v) for k, v in (error.details or {}).items()}
        code, message, ref = error.code, error.message, error.ref
    else:
        details = error.get("details") or {}
        message, ref = str(error.get("message", "")), error.get("ref")
        try:
            code = ErrorCode(str(error.get("code")))
        except ValueError:
            code = ErrorCode.INTERNAL
    return ERROR_CLASSES.get(code, StreamingError)(message, ref=ref, details=details)


# ---- the event system (issue #5) ---------------------------------------------------------------------


class InvalidEventNameError(InvalidNameError, ValueError):
    """An event name or listener pattern that cannot be a subject (or a wildcard while wildcards are off)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid event name or pattern {name!r}: {reason}", details={"name": name,
                                                                                       "reason": reason})
        self.name = name
        self.reason = reason


class InvalidEventDataError(BadRequestError, TypeError):
    """Event data that cannot be encoded as JSON."""

    def __init__(self, event: str, reason: str) -> None:
        super().__init__(f"data of event {event!r} cannot be encoded as JSON: {reason}", details={"event": event})
        self.event = event
        self.reason = reason


class EventTooLargeError(TooLargeError, ValueError):
    """An encoded event over the size limit (``EVENTS_MAX_EVENT_SIZE`` or the server's max payload)."""

    def __init__(self, event: str, size: int, limit: int) -> None:
        super().__init__(f"event {event!r} is {size} bytes encoded; the limit is {limit}",
                         details={"size": size, "limit": limit})
        self.event = event
        self.size = size
        self.limit = limit


class ListenerLimitError(LimitExceededError):
    """``max_listeners`` listeners on one pattern (or ``EVENTS_MAX_PATTERNS`` patterns) already."""

    def __init__(self, pattern: str, limit: int, what: str = "listeners on this pattern") -> None:
        super().__init__(f"cannot add a listener for {pattern!r}: already {limit} {what} (the limit)",
                         details={"pattern": pattern, "limit": limit})
        self.pattern = pattern
        self.limit = limit


class EventTimeoutError(TimeoutError):
    """``wait_for_event`` saw no matching event within ``timeout`` seconds."""

    def __init__(self, pattern: str, timeout: float) -> None:
        super().__init__(f"no event matching {pattern!r} within {timeout:g}s",
                         details={"pattern": pattern, "timeout": timeout})
        self.pattern = pattern
        self.timeout = timeout


class HistoryUnavailableError(UnavailableError):
    """History was asked for while it is disabled, or its JetStream stream does not exist or cannot be made."""


class EmitError(ConnectionError):
    """An emit that was not confirmed stored after its retries (the same id is safe to emit again)."""

    def __init__(self, event: str, event_id: str, reason: str) -> None:
        super().__init__(f"event {event!r} (id {event_id}) was not confirmed stored: {reason}",
                         details={"event": event, "event_id": event_id})
        self.event = event
        self.event_id = event_id
        self.reason = reason


class EmitBacklogError(OverloadedError):
    """``emit_async`` while ``EVENTS_MAX_PENDING_EMITS`` emits are still in flight: await some first."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"{pending} emits are in flight (the limit); await some before starting more",
                         details={"pending": pending})
        self.pending = pending
