"""Typed errors of the public API (the seed's names); each carries its wire ``ErrorCode``."""

from __future__ import annotations

import builtins
from typing import ClassVar

from proto.errors import Error, ErrorCode


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises."""

    default_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name, shadowing the builtin on purpose
    """NATS (or another server the call needs) could not be reached."""

    default_code: ClassVar[ErrorCode] = ErrorCode.CONNECTION_ERROR


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name, shadowing the builtin on purpose
    """An answer did not come in time."""

    default_code: ClassVar[ErrorCode] = ErrorCode.TIMEOUT


def error_from_wire(error: Error) -> StreamingError:
    """The exception for a typed error received on the wire."""
    match error.code:
        case ErrorCode.CONNECTION_ERROR | ErrorCode.UNAVAILABLE:
            return ConnectionError(error.message, code=error.code)
        case ErrorCode.TIMEOUT:
            return TimeoutError(error.message, code=error.code)
        case _:
            return StreamingError(error.message, code=error.code)
