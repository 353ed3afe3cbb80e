"""Wire error codes and the error payload every service answers with."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec

from proto.base import Message


class ErrorCode(enum.StrEnum):
    """Every typed error on the wire; the public API maps each to one exception class."""

    BAD_REQUEST = "bad_request"  # malformed JSON, wrong field types, unknown message type
    PROTOCOL_ERROR = "protocol_error"  # a message out of place in the protocol
    INVALID_NAME = "invalid_name"  # a channel / room / event name that cannot be a subject
    UNAUTHORIZED = "unauthorized"  # no or bad credentials
    FORBIDDEN = "forbidden"  # credentials fine, not allowed here
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # duplicate id, already exists
    TOO_LARGE = "too_large"  # message, input or frame over its limit
    RATE_LIMITED = "rate_limited"
    LIMIT_EXCEEDED = "limit_exceeded"  # connections, subscriptions, listeners, participants
    OVERLOADED = "overloaded"  # pool and queue full: try later
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    PROVIDER_ERROR = "provider_error"  # the LLM endpoint failed
    TOOL_ERROR = "tool_error"
    MAX_TURNS = "max_turns"
    CONNECTION_ERROR = "connection_error"  # NATS / Redis / upstream unreachable
    UNAVAILABLE = "unavailable"  # service draining or not ready
    RESTARTS_EXHAUSTED = "restarts_exhausted"  # a run's runners died more often than RUN_MAX_RESTARTS allows
    INTERNAL = "internal"


HTTP_STATUS: Final[Mapping[ErrorCode, int]] = MappingProxyType({
    ErrorCode.BAD_REQUEST: 400, ErrorCode.PROTOCOL_ERROR: 400, ErrorCode.INVALID_NAME: 400,
    ErrorCode.UNAUTHORIZED: 401, ErrorCode.FORBIDDEN: 403, ErrorCode.NOT_FOUND: 404, ErrorCode.CONFLICT: 409,
    ErrorCode.TOO_LARGE: 413, ErrorCode.RATE_LIMITED: 429, ErrorCode.LIMIT_EXCEEDED: 429,
    ErrorCode.OVERLOADED: 503, ErrorCode.TIMEOUT: 504, ErrorCode.CANCELLED: 409, ErrorCode.PROVIDER_ERROR: 502,
    ErrorCode.TOOL_ERROR: 500, ErrorCode.MAX_TURNS: 500, ErrorCode.CONNECTION_ERROR: 503,
    ErrorCode.UNAVAILABLE: 503, ErrorCode.RESTARTS_EXHAUSTED: 503, ErrorCode.INTERNAL: 500,
})
"""The HTTP status every REST answer carries for a wire code (the only such table)."""


def http_status(code: ErrorCode | str) -> int:
    """The HTTP status for a wire code; 500 for a code this version does not know (a newer peer's)."""
    try:
        return HTTP_STATUS[ErrorCode(code)]
    except ValueError:
        return 500


class Error(Message, frozen=True, kw_only=True, tag="error"):
    """A typed error: ``code`` is machine-readable, ``message`` is for people."""

    code: ErrorCode
    message: str
    ref: str | None = None  # the id of the client message or request it answers
    details: dict[str, msgspec.Raw] | None = None


error_encoder = msgspec.json.Encoder()
error_decoder = msgspec.json.Decoder(Error)
