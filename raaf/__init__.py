"""RAAF Streaming: the public Python API (import everything from here)."""

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

# Statistics and health of the running cluster (the seed's Streaming.stats).
from raaf.stats import health, stats
from shared.app import VERSION as __version__

__all__ = [
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
    "__version__",
    "error_from_wire",
    "health",
    "stats",
]
