"""Typed errors of the public API (the seed's ``StreamingError`` family); each carries its wire code."""

from __future__ import annotations

import builtins
from typing import ClassVar

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises; ``code`` is the typed code the wire uses for it."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self, ref: str | None = None) -> Error:
        """The error as the wire's :class:`proto.errors.Error`."""
        return Error(code=self.code, message=self.message, ref=ref)


class ConnectionError(StreamingError, builtins.ConnectionError):
    """NATS (or another backend) is unreachable, or the object is not connected / already closed."""

    code: ClassVar[ErrorCode] = ErrorCode.CONNECTION_ERROR


class TimeoutError(StreamingError, builtins.TimeoutError):
    """Something did not happen within ``timeout`` seconds."""

    code: ClassVar[ErrorCode] = ErrorCode.TIMEOUT

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class InvalidEventNameError(StreamingError, ValueError):
    """An event name or listener pattern that cannot be a subject (or a wildcard while wildcards are off)."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID_NAME

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid event name or pattern {name!r}: {reason}")
        self.name = name
        self.reason = reason


class InvalidEventDataError(StreamingError, TypeError):
    """Event data that cannot be encoded as JSON."""

    code: ClassVar[ErrorCode] = ErrorCode.BAD_REQUEST

    def __init__(self, event: str, reason: str) -> None:
        super().__init__(f"data of event {event!r} cannot be encoded as JSON: {reason}")
        self.event = event
        self.reason = reason


class EventTooLargeError(StreamingError, ValueError):
    """An encoded event over the size limit (``EVENTS_MAX_EVENT_SIZE`` or the server's max payload)."""

    code: ClassVar[ErrorCode] = ErrorCode.TOO_LARGE

    def __init__(self, event: str, size: int, limit: int) -> None:
        super().__init__(f"event {event!r} is {size} bytes encoded; the limit is {limit}")
        self.event = event
        self.size = size
        self.limit = limit


class ListenerLimitError(StreamingError):
    """``max_listeners`` listeners on one pattern (or ``max_patterns`` patterns) already."""

    code: ClassVar[ErrorCode] = ErrorCode.LIMIT_EXCEEDED

    def __init__(self, pattern: str, limit: int, what: str = "listeners on this pattern") -> None:
        super().__init__(f"cannot add a listener for {pattern!r}: already {limit} {what} (the limit)")
        self.pattern = pattern
        self.limit = limit


class EventTimeoutError(TimeoutError):
    """``wait_for_event`` saw no matching event within ``timeout`` seconds."""

    def __init__(self, pattern: str, timeout: float) -> None:
        super().__init__(f"no event matching {pattern!r} within {timeout:g}s", timeout=timeout)
        self.pattern = pattern


class HistoryUnavailableError(StreamingError):
    """History was asked for while it is disabled, or its JetStream stream does not exist."""

    code: ClassVar[ErrorCode] = ErrorCode.UNAVAILABLE


class EmitError(StreamingError):
    """An emit that was not confirmed stored after its retries (the same id is safe to emit again)."""

    code: ClassVar[ErrorCode] = ErrorCode.CONNECTION_ERROR

    def __init__(self, event: str, event_id: str, reason: str) -> None:
        super().__init__(f"event {event!r} (id {event_id}) was not confirmed stored: {reason}")
        self.event = event
        self.event_id = event_id
        self.reason = reason


class EmitBacklogError(StreamingError):
    """``emit_async`` while ``EVENTS_MAX_PENDING_EMITS`` emits are still in flight: await some first."""

    code: ClassVar[ErrorCode] = ErrorCode.OVERLOADED

    def __init__(self, pending: int) -> None:
        super().__init__(f"{pending} emits are in flight (the limit); await some before starting more")
        self.pending = pending
