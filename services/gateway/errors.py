"""The situations the gateway answers clients with: each is the ``shared.errors`` class of its wire code."""

from __future__ import annotations

import enum

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


class GatewayErrorKind(enum.StrEnum):
    """The gateway's situations that code tells apart from others of their wire code (the rest are told apart by
    code and message alone, and carry only their facts in ``details``)."""

    UNAVAILABLE = "gateway_unavailable"


# The names the gateway's errors had: each is the class of its wire code. ``code``, ``message`` and ``details``
# go on the wire as they are; the HTTP status comes from :data:`proto.errors.HTTP_STATUS`.
GatewayError = StreamingError
BadMessage = BadRequestError
UnknownMessageType = BadRequestError
NotAuthenticated = AuthenticationError
AuthenticationFailed = AuthenticationError
Forbidden = ForbiddenError
OriginNotAllowed = ForbiddenError
InvalidChannel = InvalidNameError
RateLimited = RateLimitError
IdentityRateLimited = RateLimitError
MessageTooLarge = TooLargeError
LimitReached = LimitExceededError
NotSubscribed = NotFoundError
NotSubscribedToEvents = NotFoundError
GatewayUnavailable = UnavailableError
InvalidEventName = InvalidNameError


def bad_message(reason: str) -> BadRequestError:
    """Malformed JSON, a missing or mistyped field."""
    return BadRequestError(f"bad message: {reason}", details={"reason": reason})


def unknown_message_type(message_type: str | None) -> BadRequestError:
    what = "missing message type" if message_type is None else f"unknown message type {message_type!r}"
    return BadRequestError(what, details=None if message_type is None else {"message_type": message_type})


def not_authenticated() -> AuthenticationError:
    return AuthenticationError("authenticate first (send an 'auth' message with a token)")


def authentication_failed(reason: str) -> AuthenticationError:
    return AuthenticationError(f"authentication failed: {reason}", details={"reason": reason})


def forbidden(resource: str, name: str) -> ForbiddenError:
    """The identity may not use this resource (a restricted channel, another user's run ...); its ``kind`` names
    the resource: channel, run, event, room, message."""
    return ForbiddenError(f"not allowed to use {resource} {name!r}", kind=resource, details={"name": name})


def origin_not_allowed(origin: str) -> ForbiddenError:
    return ForbiddenError(f"origin {origin!r} is not allowed", details={"origin": origin})


def invalid_channel(channel: str, reason: str) -> InvalidNameError:
    return InvalidNameError(f"invalid channel name {channel!r}: {reason}",
                            details={"channel": channel, "reason": reason})


def rate_limited(limit: int, retry_after: float) -> RateLimitError:
    """Over ``WEBSOCKET_RATE_LIMIT``; ``retry_after`` (seconds) comes from ``details`` like every rate limit's."""
    return RateLimitError(f"rate limit of {limit} messages per minute exceeded; retry in {retry_after:.1f}s",
                          details={"limit": limit, "retry_after": retry_after})


def identity_rate_limited(what: str, limit: int, setting: str, *, retry_after: float) -> RateLimitError:
    """One identity started more runs (or rooms) per minute than its setting allows, on this gateway."""
    return RateLimitError(f"more than {limit} {what} per minute for this identity ({setting}); retry in "
                          f"{retry_after:.1f}s", details={"limit": limit, "retry_after": retry_after,
                                                           "setting": setting})


def message_too_large(size: int, limit: int) -> TooLargeError:
    return TooLargeError(f"message of {size} bytes is over the limit of {limit} bytes",
                         details={"size": size, "limit": limit})


def limit_reached(message: str, limit: int) -> LimitExceededError:
    """A count limit of the gateway (subscriptions, connections, event patterns, run streams); the message
    names the limit and its setting."""
    return LimitExceededError(message, details={"limit": limit})


def too_many_subscriptions(limit: int) -> LimitExceededError:
    """``WEBSOCKET_MAX_SUBSCRIPTIONS`` on one connection already."""
    return limit_reached(f"at most {limit} subscriptions per connection", limit)


def too_many_connections(limit: int) -> LimitExceededError:
    """``WEBSOCKET_MAX_CONNECTIONS`` connections are open on this gateway."""
    return limit_reached(f"the gateway is at its limit of {limit} connections; try again later", limit)


def too_many_identity_connections(limit: int) -> LimitExceededError:
    """One identity already holds ``GATEWAY_MAX_CONNECTIONS_PER_IDENTITY`` connections on this gateway."""
    return limit_reached(f"this identity already holds {limit} connections to this gateway "
                         "(GATEWAY_MAX_CONNECTIONS_PER_IDENTITY)", limit)


def too_many_address_connections(limit: int) -> LimitExceededError:
    """One client address already holds ``GATEWAY_MAX_CONNECTIONS_PER_ADDRESS`` connections on this gateway."""
    return limit_reached(f"this address already holds {limit} connections to this gateway "
                         "(GATEWAY_MAX_CONNECTIONS_PER_ADDRESS)", limit)


def too_many_event_patterns(limit: int) -> LimitExceededError:
    """The gateway already listens on ``EVENTS_MAX_PATTERNS`` distinct event patterns."""
    return limit_reached(f"this gateway already serves {limit} distinct event patterns (EVENTS_MAX_PATTERNS)",
                         limit)


def too_many_run_streams(limit: int) -> LimitExceededError:
    """The connection follows ``GATEWAY_RUN_MAX_STREAMS_PER_CONNECTION`` runs already."""
    return limit_reached(f"this connection already follows {limit} runs (GATEWAY_RUN_MAX_STREAMS_PER_CONNECTION)",
                         limit)


def not_subscribed(channel: str) -> NotFoundError:
    return NotFoundError(f"not subscribed to {channel!r}", details={"channel": channel})


def not_subscribed_to_events(pattern: str) -> NotFoundError:
    return NotFoundError(f"not subscribed to events {pattern!r}", details={"pattern": pattern})


def gateway_unavailable(reason: str) -> UnavailableError:
    """Draining, or NATS is unreachable: the request was not done and may be retried."""
    return UnavailableError(f"gateway unavailable: {reason}", kind=GatewayErrorKind.UNAVAILABLE,
                            details={"reason": reason})

