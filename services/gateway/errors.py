"""Errors the gateway answers clients with: each carries its wire ``ErrorCode`` and typed attributes."""

from __future__ import annotations

from typing import Any, ClassVar

from proto.errors import ErrorCode


class GatewayError(Exception):
    """Base of every error a client is told about; ``code`` goes on the wire, ``str(exc)`` is the message."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any] | None:
        """The typed attributes (``limit``, ``retry_after``, ``channel`` ...) for the wire ``details``."""
        found = {k: v for k, v in vars(self).items()
                 if k != "message" and isinstance(v, str | int | float | bool)}
        return found or None


class BadMessage(GatewayError):
    """Malformed JSON, a missing or mistyped field."""

    code = ErrorCode.BAD_REQUEST
    http_status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad message: {reason}")
        self.reason = reason


class UnknownMessageType(GatewayError):
    code = ErrorCode.BAD_REQUEST
    http_status = 400

    def __init__(self, message_type: str | None) -> None:
        what = "missing message type" if message_type is None else f"unknown message type {message_type!r}"
        super().__init__(what)
        self.message_type = message_type


class NotAuthenticated(GatewayError):
    code = ErrorCode.UNAUTHORIZED
    http_status = 401

    def __init__(self) -> None:
        super().__init__("authenticate first (send an 'auth' message with a token)")


class AuthenticationFailed(GatewayError):
    code = ErrorCode.UNAUTHORIZED
    http_status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(f"authentication failed: {reason}")
        self.reason = reason


class Forbidden(GatewayError):
    """The identity may not use this resource (a restricted channel, another user's run ...)."""

    code = ErrorCode.FORBIDDEN
    http_status = 403

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"not allowed to use {kind} {name!r}")
        self.kind = kind
        self.name = name


class OriginNotAllowed(GatewayError):
    code = ErrorCode.FORBIDDEN
    http_status = 403

    def __init__(self, origin: str) -> None:
        super().__init__(f"origin {origin!r} is not allowed")
        self.origin = origin


class InvalidChannel(GatewayError):
    code = ErrorCode.INVALID_NAME
    http_status = 400

    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"invalid channel name {channel!r}: {reason}")
        self.channel = channel
        self.reason = reason


class RateLimited(GatewayError):
    code = ErrorCode.RATE_LIMITED
    http_status = 429

    def __init__(self, limit: int, retry_after: float) -> None:
        super().__init__(f"rate limit of {limit} messages per minute exceeded; retry in {retry_after:.1f}s")
        self.limit = limit
        self.retry_after = retry_after


class MessageTooLarge(GatewayError):
    code = ErrorCode.TOO_LARGE
    http_status = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class TooManySubscriptions(GatewayError):
    code = ErrorCode.LIMIT_EXCEEDED
    http_status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} subscriptions per connection")
        self.limit = limit


class TooManyConnections(GatewayError):
    code = ErrorCode.LIMIT_EXCEEDED
    http_status = 503

    def __init__(self, limit: int) -> None:
        super().__init__(f"the gateway is at its limit of {limit} connections; try again later")
        self.limit = limit


class NotSubscribed(GatewayError):
    code = ErrorCode.NOT_FOUND
    http_status = 404

    def __init__(self, channel: str) -> None:
        super().__init__(f"not subscribed to {channel!r}")
        self.channel = channel


class ConnectionNotFound(GatewayError):
    code = ErrorCode.NOT_FOUND
    http_status = 404

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"no connection {connection_id!r} on this gateway")
        self.connection_id = connection_id


class GatewayUnavailable(GatewayError):
    """Draining, or NATS is unreachable: the request was not done and may be retried."""

    code = ErrorCode.UNAVAILABLE
    http_status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(f"gateway unavailable: {reason}")
        self.reason = reason


# ---- events (the event bus extension) --------------------------------------------------------------


class InvalidEventName(GatewayError):
    """An event name or listener pattern that cannot be a subject."""

    code = ErrorCode.INVALID_NAME
    http_status = 400

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid event name or pattern {name!r}: {reason}")
        self.name = name
        self.reason = reason


class TooManyEventPatterns(GatewayError):
    """The gateway already listens on ``EVENTS_MAX_PATTERNS`` distinct event patterns."""

    code = ErrorCode.LIMIT_EXCEEDED
    http_status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(f"this gateway already serves {limit} distinct event patterns (EVENTS_MAX_PATTERNS)")
        self.limit = limit


class NotSubscribedToEvents(GatewayError):
    code = ErrorCode.NOT_FOUND
    http_status = 404

    def __init__(self, pattern: str) -> None:
        super().__init__(f"not subscribed to events {pattern!r}")
        self.pattern = pattern
