"""Errors the gateway answers clients with: each is also the ``shared.errors`` class of its wire code."""

from __future__ import annotations

from shared.errors import (
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    InvalidNameError,
    LimitExceededError,
    NotFoundError,
    RateLimitError,
    StreamingError,
    TooLargeError,
    UnavailableError,
)


class GatewayError(StreamingError):
    """Base of every error a client is told about: ``code``, ``message`` and ``details`` go on the wire as they
    are, the HTTP status comes from :data:`proto.errors.HTTP_STATUS`. It sets no code of its own, so each
    subclass takes the code of the ``shared.errors`` class it also derives from."""


class BadMessage(GatewayError, BadRequestError):
    """Malformed JSON, a missing or mistyped field."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad message: {reason}", details={"reason": reason})
        self.reason = reason


class UnknownMessageType(GatewayError, BadRequestError):
    def __init__(self, message_type: str | None) -> None:
        what = "missing message type" if message_type is None else f"unknown message type {message_type!r}"
        super().__init__(what, details=None if message_type is None else {"message_type": message_type})
        self.message_type = message_type


class NotAuthenticated(GatewayError, AuthenticationError):
    def __init__(self) -> None:
        super().__init__("authenticate first (send an 'auth' message with a token)")


class AuthenticationFailed(GatewayError, AuthenticationError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"authentication failed: {reason}", details={"reason": reason})
        self.reason = reason


class Forbidden(GatewayError, ForbiddenError):
    """The identity may not use this resource (a restricted channel, another user's run, an origin ...)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"not allowed to use {kind} {name!r}", details={"kind": kind, "name": name})
        self.kind = kind
        self.name = name


class OriginNotAllowed(GatewayError, ForbiddenError):
    def __init__(self, origin: str) -> None:
        super().__init__(f"origin {origin!r} is not allowed", details={"origin": origin})
        self.origin = origin


class InvalidChannel(GatewayError, InvalidNameError):
    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"invalid channel name {channel!r}: {reason}", details={"channel": channel, "reason": reason})
        self.channel = channel
        self.reason = reason


class RateLimited(GatewayError, RateLimitError):
    """Over ``WEBSOCKET_RATE_LIMIT``; ``retry_after`` (seconds) comes from ``details`` like every rate limit's."""

    def __init__(self, limit: int, retry_after: float) -> None:
        super().__init__(f"rate limit of {limit} messages per minute exceeded; retry in {retry_after:.1f}s",
                         details={"limit": limit, "retry_after": retry_after})
        self.limit = limit


class IdentityRateLimited(GatewayError, RateLimitError):
    """One identity started more runs (or rooms) per minute than its setting allows, on this gateway."""

    def __init__(self, what: str, limit: int, setting: str, *, retry_after: float) -> None:
        super().__init__(f"more than {limit} {what} per minute for this identity ({setting}); retry in "
                         f"{retry_after:.1f}s", details={"limit": limit, "retry_after": retry_after,
                                                          "setting": setting})
        self.limit = limit


class MessageTooLarge(GatewayError, TooLargeError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes is over the limit of {limit} bytes",
                         details={"size": size, "limit": limit})
        self.size = size
        self.limit = limit


class LimitReached(GatewayError, LimitExceededError):
    """A count limit of the gateway (subscriptions, connections, event patterns, run streams); the message
    names the limit and its setting."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message, details={"limit": limit})
        self.limit = limit


def too_many_subscriptions(limit: int) -> LimitReached:
    """``WEBSOCKET_MAX_SUBSCRIPTIONS`` on one connection already."""
    return LimitReached(f"at most {limit} subscriptions per connection", limit)


def too_many_connections(limit: int) -> LimitReached:
    """``WEBSOCKET_MAX_CONNECTIONS`` connections are open on this gateway."""
    return LimitReached(f"the gateway is at its limit of {limit} connections; try again later", limit)


def too_many_identity_connections(limit: int) -> LimitReached:
    """One identity already holds ``GATEWAY_MAX_CONNECTIONS_PER_IDENTITY`` connections on this gateway."""
    return LimitReached(f"this identity already holds {limit} connections to this gateway "
                        "(GATEWAY_MAX_CONNECTIONS_PER_IDENTITY)", limit)


def too_many_address_connections(limit: int) -> LimitReached:
    """One client address already holds ``GATEWAY_MAX_CONNECTIONS_PER_ADDRESS`` connections on this gateway."""
    return LimitReached(f"this address already holds {limit} connections to this gateway "
                        "(GATEWAY_MAX_CONNECTIONS_PER_ADDRESS)", limit)


def too_many_event_patterns(limit: int) -> LimitReached:
    """The gateway already listens on ``EVENTS_MAX_PATTERNS`` distinct event patterns."""
    return LimitReached(f"this gateway already serves {limit} distinct event patterns (EVENTS_MAX_PATTERNS)", limit)


def too_many_run_streams(limit: int) -> LimitReached:
    """The connection follows ``GATEWAY_RUN_MAX_STREAMS_PER_CONNECTION`` runs already."""
    return LimitReached(f"this connection already follows {limit} runs (GATEWAY_RUN_MAX_STREAMS_PER_CONNECTION)",
                        limit)


class NotSubscribed(GatewayError, NotFoundError):
    def __init__(self, channel: str) -> None:
        super().__init__(f"not subscribed to {channel!r}", details={"channel": channel})
        self.channel = channel


class NotSubscribedToEvents(GatewayError, NotFoundError):
    def __init__(self, pattern: str) -> None:
        super().__init__(f"not subscribed to events {pattern!r}", details={"pattern": pattern})
        self.pattern = pattern


class GatewayUnavailable(GatewayError, UnavailableError):
    """Draining, or NATS is unreachable: the request was not done and may be retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"gateway unavailable: {reason}", details={"reason": reason})
        self.reason = reason


class InvalidEventName(GatewayError, InvalidNameError):
    """An event name or listener pattern that cannot be a subject."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid event name or pattern {name!r}: {reason}", details={"name": name, "reason": reason})
        self.name = name
        self.reason = reason
