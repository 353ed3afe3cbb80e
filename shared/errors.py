"""Typed errors of the public API (the seed's names), one class per wire ``ErrorCode``, so an error raised in
another service arrives as the same exception type."""

from __future__ import annotations

import builtins
import enum
from typing import Any, Final, Generic, TypeVar, overload

import msgspec

from proto.errors import Error, ErrorCode, http_status

T = TypeVar("T")


class Fact(Generic[T]):
    """One typed fact of an error, read from its ``details`` by the attribute's name; ``None`` where the situation
    has no such fact (a number arrives from JSON as ``int`` where a ``float`` is meant, hence the widening)."""

    def __init__(self, type_: type[T]) -> None:
        self.type = type_
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Fact[T]: ...
    @overload
    def __get__(self, obj: StreamingError, owner: type | None = None) -> T | None: ...

    def __get__(self, obj: StreamingError | None, owner: type | None = None) -> Fact[T] | T | None:
        if obj is None:
            return self
        value = obj.details.get(self.name)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        return value if isinstance(value, self.type) else None


class StreamingError(Exception):
    """Base of every error the ``raaf`` API raises; ``code`` is the wire code it travels as, ``ref`` the client
    message, run or request it answers, ``details`` the typed facts (limits, names, close codes ...), and ``kind``
    (``details["kind"]``) the situation within the code, where one must be told apart: a new situation is a
    ``kind``, never a new class."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, code: ErrorCode | None = None, ref: str | None = None,
                 details: dict[str, Any] | None = None, kind: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message or self.code.value
        super().__init__(self.message)
        self.ref = ref
        self.details: dict[str, Any] = {"kind": str(kind), **(details or {})} if kind is not None else details or {}

    @property
    def kind(self) -> str | None:
        """The situation within the wire code (``details["kind"]``), or ``None`` for a plain one."""
        value = self.details.get("kind")
        return value if isinstance(value, str) else None

    def attributes(self) -> dict[str, Any]:
        """The typed facts without the kind."""
        return {k: v for k, v in self.details.items() if k != "kind"}

    def to_wire(self, ref: str | None = None) -> Error:
        """The wire error (``ref`` answers a request when the exception does not carry its own)."""
        raw = {k: msgspec.Raw(msgspec.json.encode(v)) for k, v in self.details.items()} or None
        return Error(code=self.code, message=self.message, ref=self.ref if ref is None else ref, details=raw)

    @staticmethod
    def from_wire(error: Error | dict[str, Any]) -> StreamingError:
        """The exception for a wire ``error``: the class of its code, with its kind and facts."""
        return error_from_wire(error)

    @property
    def http_status(self) -> int:
        """The HTTP status of this error's wire code (:data:`proto.errors.HTTP_STATUS`)."""
        return http_status(self.code)

    # The facts the situations carry, each read from ``details`` under its own name.
    after_first_token = Fact(bool)
    agent = Fact(str)
    attempts = Fact(int)
    channel = Fact(str)
    close_code = Fact(int)
    confirmed = Fact(int)
    error = Fact(str)
    event = Fact(str)
    event_id = Fact(str)
    feature = Fact(str)
    job_id = Fact(str)
    job_type = Fact(str)
    length = Fact(int)
    limit = Fact(int)
    message_type = Fact(str)
    name = Fact(str)
    now = Fact(float)
    origin = Fact(str)
    pattern = Fact(str)
    pending = Fact(int)
    priority = Fact(str)
    queue = Fact(str)
    reason = Fact(str)
    retry_after = Fact(float)
    room = Fact(str)
    run_at = Fact(float)
    run_id = Fact(str)
    seq = Fact(int)
    setting = Fact(str)
    size = Fact(int)
    status = Fact(str)
    timeout = Fact(float)
    upstream_status = Fact(int)
    user = Fact(str)
    value = Fact(str)
    variable = Fact(str)
    wanted = Fact(int)
    what = Fact(str)


class ProtocolError(StreamingError):
    """A message out of place in the protocol (e.g. a session used before ``start()``)."""

    code = ErrorCode.PROTOCOL_ERROR


class BadRequestError(ProtocolError):
    """The request is malformed or inconsistent (bad JSON, wrong field types, unknown message type ...)."""

    code = ErrorCode.BAD_REQUEST


class ConnectionError(StreamingError, builtins.ConnectionError):  # the seed's name, shadowing the builtin on purpose
    """The connection is down or could not be made; NATS, Redis or an upstream is unreachable."""

    code = ErrorCode.CONNECTION_ERROR


class UnavailableError(ConnectionError):
    """No service could take the request (none running, draining), or the runner owning a run went away."""

    code = ErrorCode.UNAVAILABLE


class RestartsExhaustedError(UnavailableError):
    """The run's agent-runner died, the run was restarted on another ``RUN_MAX_RESTARTS`` times, and died again."""

    code = ErrorCode.RESTARTS_EXHAUSTED


class TimeoutError(StreamingError, builtins.TimeoutError):  # the seed's name, shadowing the builtin on purpose
    """An answer did not come in time."""

    code = ErrorCode.TIMEOUT


class InvalidNameError(StreamingError, ValueError):
    """A channel, room, event or job name that cannot be a subject (a ``ValueError`` too, as the seed's event
    name errors were)."""

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


class TooLargeError(StreamingError, ValueError):
    """A message, input, event or frame over its configured limit (a ``ValueError`` too, as the seed's
    ``EventTooLargeError`` was)."""

    code = ErrorCode.TOO_LARGE


class RateLimitError(StreamingError):
    """Too many messages in the window; ``retry_after`` (seconds) says when to try again, when known."""

    code = ErrorCode.RATE_LIMITED


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


# Other names the API grew under; the same classes. Each situation they named is told apart by ``kind`` (where
# code must tell it apart) and carries its facts in ``details``; the functions below build them.
PermissionDeniedError = ForbiddenError
RateLimitedError = RateLimitError
OperationCancelledError = CancelledError
MaxTurnsExceededError = MaxTurnsError
ConfigurationError = BadRequestError  # an unknown configuration key or a value that cannot be used
ConnectionClosedError = ConnectionError  # ``close_code`` says why (4008 slow consumer, 1013 full ...)
InvalidEventNameError = InvalidNameError
InvalidEventDataError = BadRequestError
EventTooLargeError = TooLargeError
ListenerLimitError = LimitExceededError
EventTimeoutError = TimeoutError
HistoryUnavailableError = UnavailableError  # history disabled, or its stream missing and not creatable
EmitError = ConnectionError
EmitBacklogError = OverloadedError
SettingsError = InternalError
RunIdTaken = InternalError
StackError = InternalError  # a local nats-server or valkey-server could not be found or started
EventLoopUnavailable = InternalError

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


class ErrorKind(enum.StrEnum):
    """The situations of the shared engines that code tells apart from others of their wire code."""

    INVALID_SETTING = "invalid_setting"
    RUN_ID_TAKEN = "run_id_taken"
    EVENT_LOOP_UNAVAILABLE = "event_loop_unavailable"


# ---- the connection and the event system ----------------------------------------------------------------


def connection_closed(message: str, *, close_code: int | None = None, reason: str = "") -> ConnectionError:
    """The server closed the connection; ``close_code`` says why (4008 slow consumer, 1013 full ...)."""
    return ConnectionError(message, details={"close_code": close_code, "reason": reason})


def invalid_event_name(name: str, reason: str) -> InvalidNameError:
    """An event name or listener pattern that cannot be a subject (or a wildcard while wildcards are off)."""
    return InvalidNameError(f"invalid event name or pattern {name!r}: {reason}",
                            details={"name": name, "reason": reason})


def invalid_event_data(event: str, reason: str) -> BadRequestError:
    """Event data that cannot be encoded as JSON."""
    return BadRequestError(f"data of event {event!r} cannot be encoded as JSON: {reason}",
                           details={"event": event, "reason": reason})


def event_too_large(event: str, size: int, limit: int) -> TooLargeError:
    """An encoded event over the size limit (``EVENTS_MAX_EVENT_SIZE`` or the server's max payload)."""
    return TooLargeError(f"event {event!r} is {size} bytes encoded; the limit is {limit}",
                         details={"event": event, "size": size, "limit": limit})


def listener_limit(pattern: str, limit: int, what: str = "listeners on this pattern") -> LimitExceededError:
    """``max_listeners`` listeners on one pattern (or ``EVENTS_MAX_PATTERNS`` patterns) already."""
    return LimitExceededError(f"cannot add a listener for {pattern!r}: already {limit} {what} (the limit)",
                              details={"pattern": pattern, "limit": limit})


def event_timeout(pattern: str, timeout: float) -> TimeoutError:
    """``wait_for_event`` saw no matching event within ``timeout`` seconds."""
    return TimeoutError(f"no event matching {pattern!r} within {timeout:g}s",
                        details={"pattern": pattern, "timeout": timeout})


def emit_failed(event: str, event_id: str, reason: str) -> ConnectionError:
    """An emit that was not confirmed stored after its retries (the same id is safe to emit again)."""
    return ConnectionError(f"event {event!r} (id {event_id}) was not confirmed stored: {reason}",
                           details={"event": event, "event_id": event_id, "reason": reason})


def emit_backlog(pending: int) -> OverloadedError:
    """``emit_async`` while ``EVENTS_MAX_PENDING_EMITS`` emits are still in flight: await some first."""
    return OverloadedError(f"{pending} emits are in flight (the limit); await some before starting more",
                           details={"pending": pending})


# ---- errors of the service runtime (never on the wire, hence ``internal``) ------------------------


def invalid_setting(variable: str, value: str, reason: str) -> InternalError:
    """An environment variable holds a value the service cannot use."""
    return InternalError(f"invalid {variable}={value!r}: {reason}", kind=ErrorKind.INVALID_SETTING,
                         details={"variable": variable, "value": value, "reason": reason})


def run_id_taken(run_id: str) -> InternalError:
    """A run's first event could not be stored: its subject already holds events (the id was used before)."""
    return InternalError(f"run id {run_id!r} was used before", kind=ErrorKind.RUN_ID_TAKEN,
                         details={"run_id": run_id})


def event_loop_unavailable(name: str, reason: str) -> InternalError:
    """The event loop a setting names cannot be used in this process (``RAAF_EVENT_LOOP``)."""
    return InternalError(f"event loop {name!r}: {reason}", kind=ErrorKind.EVENT_LOOP_UNAVAILABLE,
                         details={"name": name, "reason": reason})
