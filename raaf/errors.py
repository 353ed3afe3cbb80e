"""Typed errors of the public API (the seed's names), one class per wire ``ErrorCode``, so an error raised in
another service arrives as the same exception type."""

from __future__ import annotations

import builtins
from typing import Any, Final

import msgspec

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises; ``code`` is the wire code it travels as, ``ref`` the client
    message, run or request it answers, ``details`` the typed facts (limits, names, close codes ...)."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, code: ErrorCode | None = None, ref: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.value
        super().__init__(self.message)
        self.ref = ref
        self.details: dict[str, Any] = details or {}

    @classmethod
    def default_code(cls) -> ErrorCode:
        return cls.code

    def to_wire(self) -> Error:
        raw = {k: msgspec.Raw(msgspec.json.encode(v)) for k, v in self.details.items()} or None
        return Error(code=self.code, message=self.message, ref=self.ref, details=raw)


class ProtocolError(StreamingError):
    """A message out of place in the protocol (e.g. a session used before ``start()``)."""

    code = ErrorCode.PROTOCOL_ERROR


class BadRequestError(ProtocolError):
    """The request is malformed or inconsistent (bad JSON, wrong field types, unknown message type ...)."""

    code = ErrorCode.BAD_REQUEST


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name, shadowing the builtin on purpose
    """The connection is down or could not be made; NATS, Redis or an upstream is unreachable."""

    code = ErrorCode.CONNECTION_ERROR


class ConnectionClosedError(ConnectionError):
    """The server closed the connection; ``close_code`` says why (4008 slow consumer, 1013 full ...)."""

    def __init__(self, message: str, *, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(message, details={"close_code": close_code, "reason": reason})
        self.close_code = close_code
        self.reason = reason


class UnavailableError(ConnectionError):
    """No service could take the request (none running, draining), or the runner owning a run went away."""

    code = ErrorCode.UNAVAILABLE


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name, shadowing the builtin on purpose
    """An answer did not come in time."""

    code = ErrorCode.TIMEOUT


class InvalidNameError(StreamingError):
    """A channel, room or event name that cannot be a subject."""

    code = ErrorCode.INVALID_NAME


class AuthenticationError(StreamingError):
    """No credentials, or bad ones."""

    code = ErrorCode.UNAUTHORIZED


class ForbiddenError(StreamingError):
    """The credentials are fine but do not allow this channel, run, event, room or job."""

    code = ErrorCode.FORBIDDEN


class NotFoundError(StreamingError):
    """No such agent, run, room or job."""

    code = ErrorCode.NOT_FOUND


class ConflictError(StreamingError):
    """The id is taken, or the thing already exists."""

    code = ErrorCode.CONFLICT


class TooLargeError(StreamingError):
    """A message, input or frame over its configured limit."""

    code = ErrorCode.TOO_LARGE


class RateLimitError(StreamingError):
    """Too many messages in the window; ``retry_after`` (seconds) says when to try again, when known."""

    code = ErrorCode.RATE_LIMITED

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retry_after")
        return float(value) if isinstance(value, int | float) else None


class LimitExceededError(StreamingError):
    """A count limit was reached: connections, subscriptions, listeners, participants, rooms."""

    code = ErrorCode.LIMIT_EXCEEDED


class OverloadedError(StreamingError):
    """Every pool slot and queue place is taken: try again later."""

    code = ErrorCode.OVERLOADED


class CancelledError(StreamingError):
    """The run (or job) was cancelled."""

    code = ErrorCode.CANCELLED


class ProviderError(StreamingError):
    """The model endpoint failed (after the retries allowed before the first token)."""

    code = ErrorCode.PROVIDER_ERROR


class ToolError(StreamingError):
    """A tool could not run (bad arguments, or it raised)."""

    code = ErrorCode.TOOL_ERROR


class MaxTurnsError(StreamingError):
    """The agents did not reach a final answer within the allowed turns."""

    code = ErrorCode.MAX_TURNS


class InternalError(StreamingError):
    """A bug or an unexpected failure inside a service."""

    code = ErrorCode.INTERNAL


class ConfigurationError(BadRequestError):
    """An unknown configuration key or a value that cannot be used (raised locally)."""


# Other names the API grew under; the same classes.
PermissionDeniedError = ForbiddenError
RateLimitedError = RateLimitError
OperationCancelledError = CancelledError
MaxTurnsExceededError = MaxTurnsError

ERROR_CLASSES: Final[dict[ErrorCode, type[StreamingError]]] = {
    cls.code: cls
    for cls in (
        ProtocolError, BadRequestError, ConnectionError, UnavailableError, TimeoutError, InvalidNameError,
        AuthenticationError, ForbiddenError, NotFoundError, ConflictError, TooLargeError, RateLimitError,
        LimitExceededError, OverloadedError, CancelledError, ProviderError, ToolError, MaxTurnsError, InternalError,
    )
}


def error_for(code: ErrorCode | str, message: str, *, ref: str | None = None,
              details: dict[str, Any] | None = None) -> StreamingError:
    """The exception for a wire error code (an unknown code from a newer peer becomes ``InternalError``)."""
    try:
        known = ErrorCode(code)
    except ValueError:
        return InternalError(f"{code}: {message}", ref=ref, details=details)
    return ERROR_CLASSES[known](message, code=known, ref=ref, details=details)


def error_from_wire(error: Error | dict[str, Any]) -> StreamingError:
    """The exception for a wire ``error`` (a decoded :class:`proto.errors.Error` or its JSON object)."""
    if isinstance(error, Error):
        details = {k: msgspec.json.decode(v) for k, v in (error.details or {}).items()}
        return error_for(error.code, error.message, ref=error.ref, details=details)
    ref = error.get("ref")
    return error_for(str(error.get("code")), str(error.get("message", "")),
                     ref=ref if isinstance(ref, str) else None, details=error.get("details") or {})


from_wire = error_from_wire
