"""The public API's typed errors: one class per wire ``ErrorCode``, all under ``StreamingError``."""

from __future__ import annotations

import builtins
from typing import ClassVar, Final

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises; ``code`` is the wire error code."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref  # the run id or request id the error is about, when there is one

    def to_wire(self) -> Error:
        return Error(code=self.code, message=self.message, ref=self.ref)


class BadRequestError(StreamingError):
    code = ErrorCode.BAD_REQUEST


class ProtocolError(StreamingError):
    code = ErrorCode.PROTOCOL_ERROR


class InvalidNameError(StreamingError):
    code = ErrorCode.INVALID_NAME


class UnauthorizedError(StreamingError):
    code = ErrorCode.UNAUTHORIZED


class ForbiddenError(StreamingError):
    code = ErrorCode.FORBIDDEN


class NotFoundError(StreamingError):
    code = ErrorCode.NOT_FOUND


class ConflictError(StreamingError):
    code = ErrorCode.CONFLICT


class TooLargeError(StreamingError):
    code = ErrorCode.TOO_LARGE


class RateLimitedError(StreamingError):
    code = ErrorCode.RATE_LIMITED


class LimitExceededError(StreamingError):
    code = ErrorCode.LIMIT_EXCEEDED


class OverloadedError(StreamingError):
    """The pool and its queue are full; try again later."""

    code = ErrorCode.OVERLOADED


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name
    code = ErrorCode.TIMEOUT


class CancelledError(StreamingError):
    code = ErrorCode.CANCELLED


class ProviderError(StreamingError):
    """The LLM endpoint failed (after the retries allowed before the first token)."""

    code = ErrorCode.PROVIDER_ERROR


class ToolError(StreamingError):
    code = ErrorCode.TOOL_ERROR


class MaxTurnsError(StreamingError):
    code = ErrorCode.MAX_TURNS


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name
    code = ErrorCode.CONNECTION_ERROR


class UnavailableError(StreamingError):
    """The service is draining, not ready, or the runner owning a run went away."""

    code = ErrorCode.UNAVAILABLE


class InternalError(StreamingError):
    code = ErrorCode.INTERNAL


_BY_CODE: Final[dict[ErrorCode, type[StreamingError]]] = {
    cls.code: cls
    for cls in (
        BadRequestError, ProtocolError, InvalidNameError, UnauthorizedError, ForbiddenError, NotFoundError,
        ConflictError, TooLargeError, RateLimitedError, LimitExceededError, OverloadedError, TimeoutError,
        CancelledError, ProviderError, ToolError, MaxTurnsError, ConnectionError, UnavailableError,
        InternalError,
    )
}


def error_for(code: ErrorCode, message: str, *, ref: str | None = None) -> StreamingError:
    """The exception for a wire error code."""
    return _BY_CODE.get(code, InternalError)(message, ref=ref)


def from_wire(error: Error) -> StreamingError:
    return error_for(error.code, error.message, ref=error.ref)
