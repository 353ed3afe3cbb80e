"""Typed errors of the public API (the seed's names), one class per wire ``ErrorCode``, so an error raised in
another service arrives as the same exception type."""

from __future__ import annotations

import builtins
from typing import Any, Final

import msgspec

from proto.errors import Error, ErrorCode, http_status


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises; ``code`` is the wire code it travels as, ``ref`` the client
    message, run or request it answers, ``details`` the typed facts (limits, names, close codes ...)."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, code: ErrorCode | None = None, ref: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.value
        super().__init__(self.message)
        self.ref = ref
        self.details: dict[str, Any] = details or {}

    def to_wire(self, ref: str | None = None) -> Error:
        """The wire error (``ref`` answers a request when the exception does not carry its own)."""
        raw = {k: msgspec.Raw(msgspec.json.encode(v)) for k, v in self.details.items()} or None
        return Error(code=self.code, message=self.message, ref=self.ref if ref is None else ref, details=raw)

    @property
    def http_status(self) -> int:
        """The HTTP status of this error's wire code (:data:`proto.errors.HTTP_STATUS`)."""
        return http_status(self.code)


class ProtocolError(StreamingError):
    """A message out of place in the protocol (e.g. a session used before ``start()``)."""

    code = ErrorCode.PROTOCOL_ERROR


class BadRequestError(ProtocolError):
    """The request is malformed or inconsistent (bad JSON, wrong field types, unknown message type ...)."""

    code = ErrorCode.BAD_REQUEST


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name, shadowing the builtin on purpose
    """The connection is down or could not be made; NATS, Redis or an upstream is unreachable."""

    code = ErrorCode.CONNECTION_ERROR


class ConnectionClosedError(ConnectionError):
    """The server closed the connection; ``close_code`` says why (4008 slow consumer, 1013 full ...)."""

    def __init__(self, message: str, *, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(message, details={"close_code": close_code, "reason": reason})
        self.close_code = close_code
        self.reason = reason


class UnavailableError(ConnectionError):
    """No service could take the request (none running, draining), or the runner owning a run went away."""

    code = ErrorCode.UNAVAILABLE


class RestartsExhaustedError(UnavailableError):
    """The run's agent-runner died, the run was restarted on another ``RUN_MAX_RESTARTS`` times, and died again."""

    code = ErrorCode.RESTARTS_EXHAUSTED


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name, shadowing the builtin on purpose
    """An answer did not come in time."""

    code = ErrorCode.TIMEOUT


class InvalidNameError(StreamingError):
    """A channel, room or event name that cannot be a subject."""

    code = ErrorCode.INVALID_NAME


class AuthenticationError(StreamingError):
    """No credentials, or bad ones."""

    code = ErrorCode.UNAUTHORIZED


class ForbiddenError(StreamingError):
    """The credentials are fine but do not allow this channel, run, event, room or job."""

    code = ErrorCode.FORBIDDEN


class NotFoundError(StreamingError):
    """No such agent, run, room or job."""

    code = ErrorCode.NOT_FOUND


class ConflictError(StreamingError):
    """The id is taken, or the thing already exists."""

    code = ErrorCode.CONFLICT


class TooLargeError(StreamingError):
    """A message, input or frame over its configured limit."""

    code = ErrorCode.TOO_LARGE


class RateLimitError(StreamingError):
    """Too many messages in the window; ``retry_after`` (seconds) says when to try again, when known."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str = "", *, code: ErrorCode | None = None, ref: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code, ref=ref, details=details)
        value = self.details.get("retry_after")
        self.retry_after: float | None = float(value) if isinstance(value, int | float) else None


class LimitExceededError(StreamingError):
    """A count limit was reached: connections, subscriptions, listeners, participants, rooms."""

    code = ErrorCode.LIMIT_EXCEEDED


class OverloadedError(StreamingError):
    """Every pool slot and queue place is taken: try again later."""

    code = ErrorCode.OVERLOADED


class CancelledError(StreamingError):
    """The run (or job) was cancelled."""

    code = ErrorCode.CANCELLED


class ProviderError(StreamingError):
    """The model endpoint failed (after the retries allowed before the first token)."""

    code = ErrorCode.PROVIDER_ERROR


class ToolError(StreamingError):
    """A tool could not run (bad arguments, or it raised)."""

    code = ErrorCode.TOOL_ERROR


class MaxTurnsError(StreamingError):
    """The agents did not reach a final answer within the allowed turns."""

    code = ErrorCode.MAX_TURNS


class InternalError(StreamingError):
    """A bug or an unexpected failure inside a service."""

    code = ErrorCode.INTERNAL


class ConfigurationError(BadRequestError):
    """An unknown configuration key or a value that cannot be used (raised locally)."""


# Other names the API grew under; the same classes.
PermissionDeniedError = ForbiddenError
RateLimitedError = RateLimitError
OperationCancelledError = CancelledError
MaxTurnsExceededError = MaxTurnsError

ERROR_CLASSES: Final[dict[ErrorCode, type[StreamingError]]] = {
    cls.code: cls
    for cls in (
        ProtocolError, BadRequestError, ConnectionError, UnavailableError, RestartsExhaustedError, TimeoutError,
        InvalidNameError,
        AuthenticationError, ForbiddenError, NotFoundError, ConflictError, TooLargeError, RateLimitError,
        LimitExceededError, OverloadedError, CancelledError, ProviderError, ToolError, MaxTurnsError, InternalError,
    )
}


def error_for(code: ErrorCode | str, message: str, *, ref: str | None = None,
              details: dict[str, Any] | None = None) -> StreamingError:
    """The exception for a wire error code (an unknown code from a newer peer becomes ``InternalError``)."""
    try:
        known = ErrorCode(code)
    except ValueError:
        return InternalError(f"{code}: {message}", ref=ref, details=details)
    return ERROR_CLASSES[known](message, code=known, ref=ref, details=details)


def error_from_wire(error: Error | dict[str, Any]) -> StreamingError:
    """The exception for a wire ``error`` (a decoded :class:`proto.errors.Error` or its JSON object)."""
    if isinstance(error, Error):
        details = {k: msgspec.json.decode(v) for k, v in (error.details or {}).items()}
        return error_for(error.code, error.message, ref=error.ref, details=details)
    ref = error.get("ref")
    return error_for(str(error.get("code")), str(error.get("message", "")),
                     ref=ref if isinstance(ref, str) else None, details=error.get("details") or {})


from_wire = error_from_wire


# ---- the event system ---------------------------------------------------------------------------------


class InvalidEventNameError(InvalidNameError, ValueError):
    """An event name or listener pattern that cannot be a subject (or a wildcard while wildcards are off)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid event name or pattern {name!r}: {reason}", details={"name": name,
                                                                                       "reason": reason})
        self.name = name
        self.reason = reason


class InvalidEventDataError(BadRequestError, TypeError):
    """Event data that cannot be encoded as JSON."""

    def __init__(self, event: str, reason: str) -> None:
        super().__init__(f"data of event {event!r} cannot be encoded as JSON: {reason}", details={"event": event})
        self.event = event
        self.reason = reason


class EventTooLargeError(TooLargeError, ValueError):
    """An encoded event over the size limit (``EVENTS_MAX_EVENT_SIZE`` or the server's max payload)."""

    def __init__(self, event: str, size: int, limit: int) -> None:
        super().__init__(f"event {event!r} is {size} bytes encoded; the limit is {limit}",
                         details={"size": size, "limit": limit})
        self.event = event
        self.size = size
        self.limit = limit


class ListenerLimitError(LimitExceededError):
    """``max_listeners`` listeners on one pattern (or ``EVENTS_MAX_PATTERNS`` patterns) already."""

    def __init__(self, pattern: str, limit: int, what: str = "listeners on this pattern") -> None:
        super().__init__(f"cannot add a listener for {pattern!r}: already {limit} {what} (the limit)",
                         details={"pattern": pattern, "limit": limit})
        self.pattern = pattern
        self.limit = limit


class EventTimeoutError(TimeoutError):
    """``wait_for_event`` saw no matching event within ``timeout`` seconds."""

    def __init__(self, pattern: str, timeout: float) -> None:
        super().__init__(f"no event matching {pattern!r} within {timeout:g}s",
                         details={"pattern": pattern, "timeout": timeout})
        self.pattern = pattern
        self.timeout = timeout


class HistoryUnavailableError(UnavailableError):
    """History was asked for while it is disabled, or its JetStream stream does not exist or cannot be made."""


class EmitError(ConnectionError):
    """An emit that was not confirmed stored after its retries (the same id is safe to emit again)."""

    def __init__(self, event: str, event_id: str, reason: str) -> None:
        super().__init__(f"event {event!r} (id {event_id}) was not confirmed stored: {reason}",
                         details={"event": event, "event_id": event_id})
        self.event = event
        self.event_id = event_id
        self.reason = reason


class EmitBacklogError(OverloadedError):
    """``emit_async`` while ``EVENTS_MAX_PENDING_EMITS`` emits are still in flight: await some first."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"{pending} emits are in flight (the limit); await some before starting more",
                         details={"pending": pending})
        self.pending = pending


# ---- errors of the service runtime (never on the wire, hence ``internal``) ------------------------

class SettingsError(InternalError):
    """An environment variable holds a value the service cannot use."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f"invalid {variable}={value!r}: {reason}")
        self.variable = variable
        self.value = value
        self.reason = reason


class RunIdTaken(InternalError):
    """A run's first event could not be stored: its subject already holds events (the id was used before)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run id {run_id!r} was used before")
        self.run_id = run_id


class StackError(InternalError):
    """A local server (nats-server, valkey-server) could not be found or started."""


class EventLoopUnavailable(InternalError):
    """The event loop a setting names cannot be used in this process (``RAAF_EVENT_LOOP``)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"event loop {name!r}: {reason}")
        self.name = name
        self.reason = reason
