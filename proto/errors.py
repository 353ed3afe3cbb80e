"""Wire error codes and the error payload every service answers with."""

from __future__ import annotations

import enum

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
    INTERNAL = "internal"


class Error(Message, frozen=True, kw_only=True, tag="error"):
    """A typed error: ``code`` is machine-readable, ``message`` is for people."""

    code: ErrorCode
    message: str
    ref: str | None = None  # the id of the client message or request it answers
    details: dict[str, msgspec.Raw] | None = None


error_encoder = msgspec.json.Encoder()
error_decoder = msgspec.json.Decoder(Error)
