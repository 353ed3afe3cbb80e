"""Durable background jobs in Redis: the seed's ``BackgroundProcessor`` and ``MessageQueue``, and their parts."""

from proto.jobs import JobInfo, JobStatus, Priority, RecurringJob
from shared.clients.jobs import JobsClient
from shared.jobs.errors import (
    InvalidJobDataError,
    InvalidJobIdError,
    InvalidJobTypeError,
    InvalidPriorityError,
    InvalidRetryPolicyError,
    InvalidScheduleError,
    JobError,
    JobFailedError,
    JobNotCancellableError,
    JobNotFoundError,
    JobNotReplicatedError,
    JobStoreUnavailableError,
    JobTimeoutError,
    PayloadTooLargeError,
    PermanentJobError,
    QueueFullError,
    RecurringJobNotFoundError,
    RemoteJobError,
    ScheduleInPastError,
    SchedulerOverloadedError,
    SchedulerUnavailableError,
    UnknownJobTypeError,
    UnknownQueueError,
)
from shared.jobs.handler import JobContext, current_job
from shared.jobs.message_queue import MessageQueue
from shared.jobs.model import JobLimits, RetryPolicy
from shared.jobs.processor import BackgroundProcessor
from shared.jobs.queue import JobQueue
from shared.jobs.store import JobStore

__all__ = [
    "BackgroundProcessor",
    "InvalidJobDataError",
    "InvalidJobIdError",
    "InvalidJobTypeError",
    "InvalidPriorityError",
    "InvalidRetryPolicyError",
    "InvalidScheduleError",
    "JobContext",
    "JobError",
    "JobFailedError",
    "JobInfo",
    "JobLimits",
    "JobNotCancellableError",
    "JobNotFoundError",
    "JobNotReplicatedError",
    "JobQueue",
    "JobStatus",
    "JobStore",
    "JobStoreUnavailableError",
    "JobTimeoutError",
    "JobsClient",
    "MessageQueue",
    "PayloadTooLargeError",
    "PermanentJobError",
    "Priority",
    "QueueFullError",
    "RecurringJob",
    "RecurringJobNotFoundError",
    "RemoteJobError",
    "RetryPolicy",
    "ScheduleInPastError",
    "SchedulerOverloadedError",
    "SchedulerUnavailableError",
    "UnknownJobTypeError",
    "UnknownQueueError",
    "current_job",
]
