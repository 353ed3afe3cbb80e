"""RAAF Streaming: the public Python API (import everything from here)."""

from shared.app import VERSION as __version__

__all__ = ["__version__"]

# The gateway's client and embeddable server, and the API's typed errors.
from raaf.client import WebSocketClient
from raaf.errors import (
    AuthenticationError,
    ConnectionClosedError,
    ConnectionError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    StreamingError,
    TimeoutError,
    error_from_wire,
)
from raaf.server import WebSocketServer

__all__ += [
    "AuthenticationError",
    "ConnectionClosedError",
    "ConnectionError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitedError",
    "StreamingError",
    "TimeoutError",
    "WebSocketClient",
    "WebSocketServer",
    "error_from_wire",
]

# Event system (issue #5): the seed's EventEmitter over NATS subjects, with JetStream history.
from raaf.errors import (  # noqa: E402
    EmitBacklogError,
    EmitError,
    EventTimeoutError,
    EventTooLargeError,
    HistoryUnavailableError,
    InvalidEventDataError,
    InvalidEventNameError,
    ListenerLimitError,
)
from raaf.event_settings import EventSettings  # noqa: E402
from raaf.events import Event, EventEmitter  # noqa: E402

__all__ += [
    "EmitBacklogError",
    "EmitError",
    "Event",
    "EventEmitter",
    "EventSettings",
    "EventTimeoutError",
    "EventTooLargeError",
    "HistoryUnavailableError",
    "InvalidEventDataError",
    "InvalidEventNameError",
    "ListenerLimitError",
]
