"""RAAF Streaming: the public Python API (import everything from here)."""

from shared.app import VERSION as __version__

__all__ = ["__version__"]

# Statistics and health of the running cluster (the seed's Streaming.stats), typed errors.
from raaf.errors import ConnectionError, StreamingError, TimeoutError
from raaf.stats import health, stats

__all__ += ["ConnectionError", "StreamingError", "TimeoutError", "health", "stats"]

# Agent runs (streamed, async, sessions), tools, and the run errors.
from raaf.agent import Agent
from raaf.async_runner import AsyncRunner
from raaf.chunks import RunChunk, RunResult, ToolCallInfo
from raaf.errors import (
    BadRequestError,
    ConflictError,
    MaxTurnsExceededError,
    NotFoundError,
    OperationCancelledError,
    OverloadedError,
    ProviderError,
    TooLargeError,
    ToolError,
    UnavailableError,
)
from raaf.runner import Runner
from raaf.session import StreamingSession
from raaf.tools import Tool, function_tool, tool

__all__ += [
    "Agent", "AsyncRunner", "BadRequestError", "ConflictError", "MaxTurnsExceededError", "NotFoundError",
    "OperationCancelledError", "OverloadedError", "ProviderError", "RunChunk", "RunResult", "Runner",
    "StreamingSession", "TooLargeError", "Tool", "ToolCallInfo", "ToolError", "UnavailableError", "function_tool",
    "tool",
]

# The gateway's client and embeddable server, and the API's typed errors.
from raaf.client import WebSocketClient
from raaf.errors import (
    AuthenticationError,
    ConnectionClosedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    error_from_wire,
)
from raaf.server import WebSocketServer

__all__ += [
    "AuthenticationError",
    "ConnectionClosedError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitedError",
    "WebSocketClient",
    "WebSocketServer",
    "error_from_wire",
]

# Real-time chat: rooms, agents and handoffs (the seed's RealTimeChat).
from raaf.chat import ChatConfig, ChatParticipant, ChatRoom, RealTimeChat

__all__ += ["ChatConfig", "ChatParticipant", "ChatRoom", "RealTimeChat"]
