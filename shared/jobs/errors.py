"""The situations of the jobs API: each is the ``shared.errors`` class of its wire code with a ``kind`` and facts."""

from __future__ import annotations

import enum
from typing import Final

from shared.errors import (
    BadRequestError,
    ConflictError,
    ConnectionError,
    InvalidNameError,
    NotFoundError,
    OverloadedError,
    StreamingError,
    TimeoutError,
    TooLargeError,
    UnavailableError,
)


class JobErrorKind(enum.StrEnum):
    """The situations of the jobs API, sent as ``details["kind"]``, so a round trip keeps them."""

    INVALID_JOB_TYPE = "invalid_job_type"
    UNKNOWN_JOB_TYPE = "unknown_job_type"
    INVALID_JOB_ID = "invalid_job_id"
    INVALID_JOB_DATA = "invalid_job_data"
    INVALID_PRIORITY = "invalid_priority"
    INVALID_SCHEDULE = "invalid_schedule"
    SCHEDULE_IN_PAST = "schedule_in_past"
    INVALID_RETRY_POLICY = "invalid_retry_policy"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    QUEUE_FULL = "queue_full"
    JOB_NOT_FOUND = "job_not_found"
    JOB_NOT_CANCELLABLE = "job_not_cancellable"
    RECURRING_JOB_NOT_FOUND = "recurring_job_not_found"
    UNKNOWN_QUEUE = "unknown_queue"
    JOB_FAILED = "job_failed"
    JOB_TIMEOUT = "job_timeout"
    SCHEDULER_OVERLOADED = "scheduler_overloaded"
    SCHEDULER_UNAVAILABLE = "scheduler_unavailable"
    JOB_STORE_UNAVAILABLE = "job_store_unavailable"
    JOB_NOT_REPLICATED = "job_not_replicated"


_KINDS: Final = frozenset(JobErrorKind)

# The seed's names: each is the class of its wire code, so ``except JobNotFoundError`` catches any not-found error;
# ``.kind`` tells the situations apart.
JobError = StreamingError
RemoteJobError = StreamingError  # a wire error that is no jobs situation arrives as the class of its code
InvalidJobTypeError = InvalidNameError
UnknownJobTypeError = BadRequestError
InvalidJobIdError = InvalidNameError
InvalidJobDataError = BadRequestError
InvalidPriorityError = BadRequestError
InvalidScheduleError = BadRequestError
ScheduleInPastError = BadRequestError
InvalidRetryPolicyError = BadRequestError
PayloadTooLargeError = TooLargeError
QueueFullError = OverloadedError
JobNotFoundError = NotFoundError
JobNotCancellableError = ConflictError
RecurringJobNotFoundError = NotFoundError
UnknownQueueError = NotFoundError
JobFailedError = ConflictError
JobTimeoutError = TimeoutError
SchedulerOverloadedError = OverloadedError
SchedulerUnavailableError = UnavailableError
JobStoreUnavailableError = ConnectionError
JobNotReplicatedError = ConnectionError
PermanentJobError = BadRequestError  # raised by a handler to fail its job at once: no retry, straight to dead


def is_jobs_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the jobs API's situations."""
    return isinstance(exc, StreamingError) and exc.kind in _KINDS


def is_permanent(exc: BaseException) -> bool:
    """Whether a handler's exception fails its job without a retry: a ``PermanentJobError`` (any bad request, a
    result that is not JSON among them) or a jobs situation; retrying either cannot help."""
    return isinstance(exc, BadRequestError) or is_jobs_error(exc)


def invalid_job_type(job_type: str, reason: str) -> InvalidNameError:
    return InvalidNameError(f"invalid job type {job_type!r}: {reason}", kind=JobErrorKind.INVALID_JOB_TYPE,
                            details={"job_type": job_type, "reason": reason})


def unknown_job_type(job_type: str) -> BadRequestError:
    """No worker has registered a handler for this type (and the queue requires known types)."""
    return BadRequestError(f"unknown job type {job_type!r}: no worker handles it", kind=JobErrorKind.UNKNOWN_JOB_TYPE,
                           details={"job_type": job_type})


def invalid_job_id(job_id: str, reason: str) -> InvalidNameError:
    return InvalidNameError(f"invalid job id {job_id!r}: {reason}", kind=JobErrorKind.INVALID_JOB_ID,
                            details={"job_id": job_id, "reason": reason})


def invalid_job_data(reason: str) -> BadRequestError:
    """Job data (or a handler's result) that cannot be encoded as JSON."""
    return BadRequestError(f"job data is not JSON: {reason}", kind=JobErrorKind.INVALID_JOB_DATA,
                           details={"reason": reason})


def invalid_priority(priority: str) -> BadRequestError:
    return BadRequestError(f"invalid priority {priority!r}: expected high, normal or low",
                           kind=JobErrorKind.INVALID_PRIORITY, details={"priority": priority})


def invalid_schedule(reason: str) -> BadRequestError:
    """A run time or cron expression that cannot be used."""
    return BadRequestError(f"invalid schedule: {reason}", kind=JobErrorKind.INVALID_SCHEDULE,
                           details={"reason": reason})


def schedule_in_past(run_at: float, now: float) -> BadRequestError:
    reason = f"run_at {run_at:.3f} is {now - run_at:.3f}s in the past"
    return BadRequestError(f"invalid schedule: {reason}", kind=JobErrorKind.SCHEDULE_IN_PAST,
                           details={"reason": reason, "run_at": run_at, "now": now})


def invalid_retry_policy(reason: str) -> BadRequestError:
    return BadRequestError(f"invalid retry policy: {reason}", kind=JobErrorKind.INVALID_RETRY_POLICY,
                           details={"reason": reason})


def payload_too_large(size: int, limit: int) -> TooLargeError:
    return TooLargeError(f"payload is {size} bytes; the limit is {limit}", kind=JobErrorKind.PAYLOAD_TOO_LARGE,
                         details={"size": size, "limit": limit})


def queue_full(job_type: str, limit: int, what: str = "queue") -> OverloadedError:
    """The type's ready queue (or the scheduled set) is at its configured depth."""
    return OverloadedError(f"{what} of {job_type!r} is full ({limit} jobs); try later", kind=JobErrorKind.QUEUE_FULL,
                           details={"job_type": job_type, "limit": limit, "what": what})


def job_not_found(job_id: str) -> NotFoundError:
    return NotFoundError(f"no job {job_id!r}", kind=JobErrorKind.JOB_NOT_FOUND, details={"job_id": job_id})


def job_not_cancellable(job_id: str, status: str) -> ConflictError:
    return ConflictError(f"job {job_id!r} is {status}; only queued, scheduled or running jobs can be cancelled",
                         kind=JobErrorKind.JOB_NOT_CANCELLABLE, details={"job_id": job_id, "status": status})


def recurring_job_not_found(name: str) -> NotFoundError:
    return NotFoundError(f"no recurring schedule {name!r}", kind=JobErrorKind.RECURRING_JOB_NOT_FOUND,
                         details={"name": name})


def unknown_queue(queue: str) -> NotFoundError:
    return NotFoundError(f"this scheduler does not serve queue {queue!r} (JOBS_QUEUES)",
                         kind=JobErrorKind.UNKNOWN_QUEUE, details={"queue": queue})


def job_failed(job_id: str, status: str, error: str | None) -> ConflictError:
    """Asked for the result of a job that ended dead or cancelled."""
    return ConflictError(f"job {job_id!r} is {status}: {error or 'no error recorded'}", kind=JobErrorKind.JOB_FAILED,
                         details={"job_id": job_id, "status": status, "error": error})


def job_timeout(job_id: str, timeout: float) -> TimeoutError:
    return TimeoutError(f"job {job_id!r} did not finish within {timeout}s", kind=JobErrorKind.JOB_TIMEOUT,
                        details={"job_id": job_id, "timeout": timeout})


def scheduler_overloaded(limit: int) -> OverloadedError:
    return OverloadedError(f"scheduler is handling {limit} requests (JOBS_MAX_INFLIGHT_REQUESTS); try later",
                           kind=JobErrorKind.SCHEDULER_OVERLOADED, details={"limit": limit})


def scheduler_unavailable(reason: str) -> UnavailableError:
    """No scheduler answered over NATS (none running, or draining)."""
    return UnavailableError(f"scheduler unavailable: {reason}", kind=JobErrorKind.SCHEDULER_UNAVAILABLE,
                            details={"reason": reason})


def job_store_unavailable(reason: str) -> ConnectionError:
    """Redis could not be reached; nothing was written."""
    return ConnectionError(f"job store (Redis) unavailable: {reason}", kind=JobErrorKind.JOB_STORE_UNAVAILABLE,
                           details={"reason": reason})


def job_not_replicated(wanted: int, confirmed: int, timeout: float) -> ConnectionError:
    """The primary wrote it, but fewer replicas than ``REDIS_WAIT_REPLICAS`` confirmed it in time: a failover now
    could lose it. Retrying with the same job id is safe (an enqueue of an existing id writes nothing)."""
    return ConnectionError(f"job store (Redis) unavailable: {confirmed} of {wanted} replicas confirmed the write "
                           f"within {timeout:g}s", kind=JobErrorKind.JOB_NOT_REPLICATED,
                           details={"reason": "not replicated", "wanted": wanted, "confirmed": confirmed})
