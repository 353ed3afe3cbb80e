"""RAAF Streaming: the public Python API (import everything from here)."""

import importlib
from typing import TYPE_CHECKING, Any

from raaf.agent import Agent
from raaf.async_runner import AsyncRunner
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
    EmitBacklogError,
    EmitError,
    EventTimeoutError,
    EventTooLargeError,
    ForbiddenError,
    HistoryUnavailableError,
    InternalError,
    InvalidEventDataError,
    InvalidEventNameError,
    InvalidNameError,
    LimitExceededError,
    ListenerLimitError,
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
from raaf.events import Event, EventEmitter
from raaf.jobs import (
    BackgroundProcessor,
    JobContext,
    JobError,
    JobFailedError,
    JobInfo,
    JobLimits,
    JobNotCancellableError,
    JobNotFoundError,
    JobsClient,
    JobStatus,
    JobStoreUnavailableError,
    JobTimeoutError,
    MessageQueue,
    PermanentJobError,
    Priority,
    QueueFullError,
    RecurringJob,
    ScheduleInPastError,
    UnknownJobTypeError,
    current_job,
)
from raaf.runner import Runner
from raaf.session import StreamingSession
from raaf.stats import health, stats
from shared.events.settings import EventSettings
from shared.runs.chunks import RunChunk, RunResult, ToolCallInfo
from shared.runs.stream_processor import StreamProcessor
from shared.runs.tools import Tool, function_tool, tool
from shared.version import VERSION as __version__

if TYPE_CHECKING:
    from raaf.chat import ChatConfig, ChatParticipant, ChatRoom, RealTimeChat
    from raaf.server import WebSocketServer
    from raaf.testing.providers import MockProvider, StreamingProvider

# Names that run a service in this process: imported on first use, so ``import raaf`` (the client API) loads
# no service code.
_EMBEDDING = {
    "ChatConfig": "raaf.chat",
    "ChatParticipant": "raaf.chat",
    "ChatRoom": "raaf.chat",
    "RealTimeChat": "raaf.chat",
    "WebSocketServer": "raaf.server",
    "MockProvider": "raaf.testing.providers",
    "StreamingProvider": "raaf.testing.providers",
}


_SUBMODULES = frozenset({"chat", "server", "testing"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"raaf.{name}")
    module = _EMBEDDING.get(name)
    if module is None:
        raise AttributeError(f"module 'raaf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "AsyncRunner",
    "AuthenticationError",
    "BackgroundProcessor",
    "BadRequestError",
    "CancelledError",
    "ChatConfig",
    "ChatParticipant",
    "ChatRoom",
    "Config",
    "ConfigurationError",
    "ConflictError",
    "ConnectionClosedError",
    "ConnectionError",
    "EmitBacklogError",
    "EmitError",
    "Event",
    "EventEmitter",
    "EventSettings",
    "EventTimeoutError",
    "EventTooLargeError",
    "ForbiddenError",
    "HistoryUnavailableError",
    "InternalError",
    "InvalidEventDataError",
    "InvalidEventNameError",
    "InvalidNameError",
    "JobContext",
    "JobError",
    "JobFailedError",
    "JobInfo",
    "JobLimits",
    "JobNotCancellableError",
    "JobNotFoundError",
    "JobStatus",
    "JobStoreUnavailableError",
    "JobTimeoutError",
    "JobsClient",
    "LimitExceededError",
    "ListenerLimitError",
    "MaxTurnsError",
    "MaxTurnsExceededError",
    "MessageQueue",
    "MockProvider",
    "NotFoundError",
    "OperationCancelledError",
    "OverloadedError",
    "PermanentJobError",
    "PermissionDeniedError",
    "Priority",
    "ProtocolError",
    "ProviderError",
    "QueueFullError",
    "RateLimitError",
    "RateLimitedError",
    "RealTimeChat",
    "RecurringJob",
    "RunChunk",
    "RunResult",
    "Runner",
    "ScheduleInPastError",
    "StreamProcessor",
    "StreamingError",
    "StreamingProvider",
    "StreamingSession",
    "TimeoutError",
    "TooLargeError",
    "Tool",
    "ToolCallInfo",
    "ToolError",
    "UnavailableError",
    "UnknownJobTypeError",
    "WebSocketClient",
    "WebSocketServer",
    "__version__",
    "configuration",
    "configure",
    "current_job",
    "error_from_wire",
    "function_tool",
    "health",
    "stats",
    "tool",
]
