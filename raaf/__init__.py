"""RAAF Streaming: the public Python API (import everything from here)."""

from raaf.agent import Agent
from raaf.async_runner import AsyncRunner
from raaf.chunks import RunChunk, RunResult, ToolCallInfo
from raaf.client import WebSocketClient
from raaf.config import Config, configuration, configure
from raaf.errors import (
    AuthenticationError,
    BadRequestError,
    CancelledError,
    ConfigurationError,
    ConflictError,
    ConnectionClosedError,
    ConnectionError,
    ForbiddenError,
    InternalError,
    InvalidNameError,
    LimitExceededError,
    MaxTurnsError,
    MaxTurnsExceededError,
    NotFoundError,
    OperationCancelledError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    ProviderError,
    RateLimitedError,
    RateLimitError,
    StreamingError,
    TimeoutError,
    TooLargeError,
    ToolError,
    UnavailableError,
    error_from_wire,
)
from raaf.runner import Runner
from raaf.server import WebSocketServer
from raaf.session import StreamingSession
from raaf.stats import health, stats
from raaf.tools import Tool, function_tool, tool
from shared.app import VERSION as __version__

__all__ = [
    "Agent",
    "AsyncRunner",
    "AuthenticationError",
    "BadRequestError",
    "CancelledError",
    "Config",
    "ConfigurationError",
    "ConflictError",
    "ConnectionClosedError",
    "ConnectionError",
    "ForbiddenError",
    "InternalError",
    "InvalidNameError",
    "LimitExceededError",
    "MaxTurnsError",
    "MaxTurnsExceededError",
    "NotFoundError",
    "OperationCancelledError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "RateLimitedError",
    "RunChunk",
    "RunResult",
    "Runner",
    "StreamingError",
    "StreamingSession",
    "TimeoutError",
    "TooLargeError",
    "Tool",
    "ToolCallInfo",
    "ToolError",
    "UnavailableError",
    "WebSocketClient",
    "WebSocketServer",
    "__version__",
    "configuration",
    "configure",
    "error_from_wire",
    "function_tool",
    "health",
    "stats",
    "tool",
]

# Real-time chat: rooms, agents and handoffs (the seed's RealTimeChat).
from raaf.chat import ChatConfig, ChatParticipant, ChatRoom, RealTimeChat

__all__ += ["ChatConfig", "ChatParticipant", "ChatRoom", "RealTimeChat"]
