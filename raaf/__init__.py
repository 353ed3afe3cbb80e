"""RAAF Streaming: the public Python API (import everything from here)."""

from shared.app import VERSION as __version__

__all__ = ["__version__"]

# Event system (issue #5): the seed's EventEmitter over NATS subjects, with JetStream history.
from raaf.errors import (
    EmitBacklogError,
    EmitError,
    EventTimeoutError,
    EventTooLargeError,
    HistoryUnavailableError,
    InvalidEventDataError,
    InvalidEventNameError,
    ListenerLimitError,
    StreamingError,
)
from raaf.event_settings import EventSettings
from raaf.events import Event, EventEmitter

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
    "StreamingError",
]
