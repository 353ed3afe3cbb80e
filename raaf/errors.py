"""Typed errors of the public API (the seed's names), one class per wire ``ErrorCode``, so an error raised in
another service arrives as the same exception type."""

from __future__ import annotations

import builtins
from typing import ClassVar, Final

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises; ``code`` is the wire code it travels as."""

    default_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, code: ErrorCode | None = None, ref: str | None = None) -> None:
        self.code = code or self.default_code
        self.message = message or self.code.value
        super().__init__(self.message)
        self.ref = ref  # the client message, run or request the error is about, when there is one

    def to_wire(self) -> Error:
        return Error(code=self.code, message=self.message, ref=self.ref)


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name, shadowing the builtin on purpose
    """NATS (or another server the call needs) could not be reached."""

    default_code = ErrorCode.CONNECTION_ERROR


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name, shadowing the builtin on purpose
    """An answer did not come in time."""

    default_code = ErrorCode.TIMEOUT


class UnavailableError(ConnectionError):
    """No service could take the request (none running, draining), or the runner owning a run went away."""

    default_code = ErrorCode.UNAVAILABLE


class BadRequestError(StreamingError):
    """The request is malformed or inconsistent (bad JSON, wrong field types, unknown message type ...)."""

    default_code = ErrorCode.BAD_REQUEST


class ProtocolError(StreamingError):
    """A message out of place in the protocol (e.g. a session used before ``start()``)."""

    default_code = ErrorCode.PROTOCOL_ERROR


class InvalidNameError(StreamingError):
    """A channel, room or event name that cannot be a subject."""

    default_code = ErrorCode.INVALID_NAME


class AuthenticationError(StreamingError):
    """No credentials, or bad ones."""

    default_code = ErrorCode.UNAUTHORIZED


class ForbiddenError(StreamingError):
    """The credentials are fine but do not allow this channel, run, room or job."""

    default_code = ErrorCode.FORBIDDEN


class NotFoundError(StreamingError):
    """No such agent, run, room or job."""

    default_code = ErrorCode.NOT_FOUND


class ConflictError(StreamingError):
    """The id is taken, or the thing already exists."""

    default_code = ErrorCode.CONFLICT


class TooLargeError(StreamingError):
    """A message, input or frame over its configured limit."""

    default_code = ErrorCode.TOO_LARGE


class RateLimitError(StreamingError):
    """Too many messages in the window; slow down."""

    default_code = ErrorCode.RATE_LIMITED


class LimitExceededError(StreamingError):
    """A count limit was reached: connections, subscriptions, listeners, participants, rooms."""

    default_code = ErrorCode.LIMIT_EXCEEDED


class OverloadedError(StreamingError):
    """Every pool slot and queue place is taken: try again later."""

    default_code = ErrorCode.OVERLOADED


class CancelledError(StreamingError):
    """The run was cancelled."""

    default_code = ErrorCode.CANCELLED


class ProviderError(StreamingError):
    """The model endpoint failed (after the retries allowed before the first token)."""

    default_code = ErrorCode.PROVIDER_ERROR


class ToolError(StreamingError):
    """A tool could not run (bad arguments, or it raised)."""

    default_code = ErrorCode.TOOL_ERROR


class MaxTurnsError(StreamingError):
    """The agents did not reach a final answer within the allowed turns."""

    default_code = ErrorCode.MAX_TURNS


class InternalError(StreamingError):
    """A bug or an unexpected failure inside a service."""

    default_code = ErrorCode.INTERNAL


class ConfigurationError(BadRequestError):
    """An unknown configuration key or a value that cannot be used (raised locally)."""


ERROR_CLASSES: Final[dict[ErrorCode, type[StreamingError]]] = {
    cls.default_code: cls
    for cls in (
        ConnectionError, TimeoutError, UnavailableError, BadRequestError, ProtocolError, InvalidNameError,
        AuthenticationError, ForbiddenError, NotFoundError, ConflictError, TooLargeError, RateLimitError,
        LimitExceededError, OverloadedError, CancelledError, ProviderError, ToolError, MaxTurnsError, InternalError,
    )
}


def error_for(code: ErrorCode | str, message: str, *, ref: str | None = None) -> StreamingError:
    """The exception for a wire error code (an unknown code from a newer peer becomes ``InternalError``)."""
    try:
        known = ErrorCode(code)
    except ValueError:
        return InternalError(f"{code}: {message}", ref=ref)
    return ERROR_CLASSES[known](message, code=known, ref=ref)


def error_from_wire(error: Error) -> StreamingError:
    """The exception for a typed error received on the wire."""
    return error_for(error.code, error.message, ref=error.ref)


from_wire = error_from_wire
