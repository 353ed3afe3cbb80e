"""Typed errors of the public API (the seed's names); each carries its wire ``ErrorCode``."""

from __future__ import annotations

import builtins
from typing import ClassVar, Final

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises."""

    default_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None, ref: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.ref = ref  # the run (or request) the error is about, when there is one

    def to_wire(self) -> Error:
        return Error(code=self.code, message=self.message, ref=self.ref)


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name, shadowing the builtin on purpose
    """NATS (or another server the call needs) could not be reached."""

    default_code: ClassVar[ErrorCode] = ErrorCode.CONNECTION_ERROR


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name, shadowing the builtin on purpose
    """An answer did not come in time."""

    default_code: ClassVar[ErrorCode] = ErrorCode.TIMEOUT


class UnavailableError(ConnectionError):
    """No service could take the request (none running, draining), or the runner owning a run went away."""

    default_code: ClassVar[ErrorCode] = ErrorCode.UNAVAILABLE


class BadRequestError(StreamingError):
    """The request is malformed or inconsistent (unknown tool, bad limits, ...)."""

    default_code: ClassVar[ErrorCode] = ErrorCode.BAD_REQUEST


class NotFoundError(StreamingError):
    """No such agent or run."""

    default_code: ClassVar[ErrorCode] = ErrorCode.NOT_FOUND


class ConflictError(StreamingError):
    """The id is taken (a run id used before)."""

    default_code: ClassVar[ErrorCode] = ErrorCode.CONFLICT


class TooLargeError(StreamingError):
    """An input over its configured limit."""

    default_code: ClassVar[ErrorCode] = ErrorCode.TOO_LARGE


class OverloadedError(StreamingError):
    """Every pool slot and queue place is taken: try again later."""

    default_code: ClassVar[ErrorCode] = ErrorCode.OVERLOADED


class CancelledError(StreamingError):
    """The run was cancelled."""

    default_code: ClassVar[ErrorCode] = ErrorCode.CANCELLED


class ProviderError(StreamingError):
    """The model endpoint failed (after the retries allowed before the first token)."""

    default_code: ClassVar[ErrorCode] = ErrorCode.PROVIDER_ERROR


class ToolError(StreamingError):
    """A tool could not run (bad arguments, or it raised)."""

    default_code: ClassVar[ErrorCode] = ErrorCode.TOOL_ERROR


class MaxTurnsError(StreamingError):
    """The agents did not reach a final answer within the allowed turns."""

    default_code: ClassVar[ErrorCode] = ErrorCode.MAX_TURNS


_BY_CODE: Final[dict[ErrorCode, type[StreamingError]]] = {
    cls.default_code: cls
    for cls in (ConnectionError, TimeoutError, UnavailableError, BadRequestError, NotFoundError, ConflictError,
                TooLargeError, OverloadedError, CancelledError, ProviderError, ToolError, MaxTurnsError)
}


def error_for(code: ErrorCode, message: str, *, ref: str | None = None) -> StreamingError:
    """The exception for a wire error code (``StreamingError`` itself for codes without a class of their own)."""
    return _BY_CODE.get(code, StreamingError)(message, code=code, ref=ref)


def error_from_wire(error: Error) -> StreamingError:
    """The exception for a typed error received on the wire."""
    return error_for(error.code, error.message, ref=error.ref)
