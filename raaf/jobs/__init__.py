"""Durable background jobs in Redis: the seed's ``BackgroundProcessor`` and ``MessageQueue``, and their parts."""

from proto.jobs import JobInfo, JobStatus, Priority, RecurringJob
from raaf.jobs.client import JobsClient
from raaf.jobs.errors import (
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
from raaf.jobs.message_queue import MessageQueue
from raaf.jobs.model import JobLimits, RetryPolicy
from raaf.jobs.processor import BackgroundProcessor
from raaf.jobs.queue import JobQueue
from raaf.jobs.store import JobStore
from raaf.jobs.worker import JobContext, current_job

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
