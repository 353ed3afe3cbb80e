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

# Background jobs (the seed's BackgroundProcessor and MessageQueue) and their typed errors.
from raaf.jobs import (  # noqa: E402 (appended block)
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

__all__ += [
    "BackgroundProcessor",
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
    "MessageQueue",
    "PermanentJobError",
    "Priority",
    "QueueFullError",
    "RecurringJob",
    "ScheduleInPastError",
    "UnknownJobTypeError",
    "current_job",
]
