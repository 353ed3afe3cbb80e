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


def error_for(code: ErrorCode, message: str, *, ref: str | None = None) -> StreamingError:
    """The exception for a wire error code and message."""
    return ERROR_CLASSES.get(code, StreamingError)(message, ref=ref)
