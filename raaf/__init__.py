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
