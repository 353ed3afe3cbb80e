"""Typed errors of the public API, one class per wire error code, so errors from other services keep their type."""

from __future__ import annotations

import builtins
from typing import ClassVar

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the platform raises; ``code`` is the wire code it travels as."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, ref: str | None = None) -> None:
        super().__init__(message or self.code.value)
        self.message = message or self.code.value
        self.ref = ref

    def to_wire(self) -> Error:
        return Error(code=self.code, message=self.message, ref=self.ref)


class BadRequestError(StreamingError):
    code = ErrorCode.BAD_REQUEST


class ProtocolError(StreamingError):
    code = ErrorCode.PROTOCOL_ERROR


class InvalidNameError(StreamingError):
    code = ErrorCode.INVALID_NAME


class AuthenticationError(StreamingError):
    code = ErrorCode.UNAUTHORIZED


class ForbiddenError(StreamingError):
    code = ErrorCode.FORBIDDEN


class NotFoundError(StreamingError):
    code = ErrorCode.NOT_FOUND


class ConflictError(StreamingError):
    code = ErrorCode.CONFLICT


class TooLargeError(StreamingError):
    code = ErrorCode.TOO_LARGE


class RateLimitError(StreamingError):
    code = ErrorCode.RATE_LIMITED


class LimitExceededError(StreamingError):
    code = ErrorCode.LIMIT_EXCEEDED


class OverloadedError(StreamingError):
    code = ErrorCode.OVERLOADED


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name; also a builtin subclass
    code = ErrorCode.TIMEOUT


class CancelledError(StreamingError):
    code = ErrorCode.CANCELLED


class ProviderError(StreamingError):
    code = ErrorCode.PROVIDER_ERROR


class ToolError(StreamingError):
    code = ErrorCode.TOOL_ERROR


class MaxTurnsError(StreamingError):
    code = ErrorCode.MAX_TURNS


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name; also a builtin subclass
    code = ErrorCode.CONNECTION_ERROR


class UnavailableError(StreamingError):
    code = ErrorCode.UNAVAILABLE


class InternalError(StreamingError):
    code = ErrorCode.INTERNAL


class ConfigurationError(StreamingError):
    """An unknown configuration key or a value that cannot be used (raised locally, never on the wire)."""

    code = ErrorCode.BAD_REQUEST


ERROR_CLASSES: dict[ErrorCode, type[StreamingError]] = {
    cls.code: cls
    for cls in (
        BadRequestError, ProtocolError, InvalidNameError, AuthenticationError, ForbiddenError, NotFoundError,
        ConflictError, TooLargeError, RateLimitError, LimitExceededError, OverloadedError, TimeoutError,
        CancelledError, ProviderError, ToolError, MaxTurnsError, ConnectionError, UnavailableError, InternalError,
    )
}


def from_wire(error: Error) -> StreamingError:
    """The exception for a wire error, of the class its code names."""
    return ERROR_CLASSES.get(error.code, InternalError)(error.message, ref=error.ref)


def error_for(code: ErrorCode | str, message: str, *, ref: str | None = None) -> StreamingError:
    try:
        code = ErrorCode(code)
    except ValueError:
        return InternalError(f"{code}: {message}", ref=ref)
    return ERROR_CLASSES[code](message, ref=ref)
