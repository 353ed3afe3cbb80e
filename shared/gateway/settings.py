"""The gateway's seed variables (``WEBSOCKET_*``, ``STREAMING_ENABLE_SSE``), shared with ``raaf.configure``."""

from __future__ import annotations

from shared.service.settings import Setting

HOST = Setting("WEBSOCKET_HOST", "0.0.0.0")
PORT = Setting("WEBSOCKET_PORT", 8080, min=0, max=65535)
MAX_CONNECTIONS = Setting("WEBSOCKET_MAX_CONNECTIONS", 5000, min=1)
HEARTBEAT_INTERVAL = Setting("WEBSOCKET_HEARTBEAT_INTERVAL", 30.0, min=0)  # pings to a quiet connection; 0: none
AUTH_TIMEOUT = Setting("WEBSOCKET_AUTH_TIMEOUT", 10.0, min=0.05)  # a new connection's time to authenticate
ENABLE_COMPRESSION = Setting("WEBSOCKET_ENABLE_COMPRESSION", True)
ENABLE_SSE = Setting("STREAMING_ENABLE_SSE", True)
