"""RAAF Streaming: the public Python API (import everything from here)."""

from raaf.agent import Agent
from raaf.async_runner import AsyncRunner
from raaf.chunks import RunChunk, RunResult, ToolCallInfo
from raaf.config import Config, configuration, configure
from raaf.errors import (
    AuthenticationError,
    BadRequestError,
    CancelledError,
    ConfigurationError,
    ConflictError,
    ConnectionError,
    ForbiddenError,
    InternalError,
    InvalidNameError,
    LimitExceededError,
    MaxTurnsError,
    NotFoundError,
    OverloadedError,
    ProtocolError,
    ProviderError,
    RateLimitError,
    StreamingError,
    TimeoutError,
    TooLargeError,
    ToolError,
    UnavailableError,
)
from raaf.runner import Runner
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
    "ConnectionError",
    "ForbiddenError",
    "InternalError",
    "InvalidNameError",
    "LimitExceededError",
    "MaxTurnsError",
    "NotFoundError",
    "OverloadedError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
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
    "__version__",
    "configuration",
    "configure",
    "function_tool",
    "health",
    "stats",
    "tool",
]
