"""Typed errors of the jobs API; each carries its wire code and survives a round trip over NATS."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from proto.errors import Error, ErrorCode
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

_raw_encoder = msgspec.json.Encoder()


class JobError(StreamingError):
    """Base of every jobs error (a :class:`~raaf.errors.StreamingError`; each subclass is also the seed-named
    class of its wire code, so ``except raaf.NotFoundError`` catches ``JobNotFoundError`` from the scheduler).
    ``code`` is the wire code; ``kind`` names the subclass on the wire, so :meth:`from_wire` rebuilds the same
    class with the same attributes."""

    code = ErrorCode.INTERNAL
    kind: ClassVar[str] = "job_error"
    _kinds: ClassVar[dict[str, type[JobError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        JobError._kinds[cls.kind] = cls

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def attributes(self) -> dict[str, Any]:
        """The typed attributes, sent in the wire error's ``details``."""
        return {}

    def to_wire(self, ref: str | None = None) -> Error:
        details = {"kind": msgspec.Raw(_raw_encoder.encode(self.kind))}
        for key, value in self.attributes().items():
            details[key] = msgspec.Raw(_raw_encoder.encode(value))
        return Error(code=self.code, message=self.message, ref=ref, details=details)

    @staticmethod
    def from_wire(error: Error) -> JobError:
        """The typed exception a wire error stands for (a :class:`RemoteJobError` when it is not a jobs error)."""
        details = {k: msgspec.json.decode(v) for k, v in (error.details or {}).items()}
        cls = JobError._kinds.get(str(details.pop("kind", "")))
        if cls is not None and cls is not JobError:
            try:
                return cls._rebuild(error.message, details)
            except (TypeError, ValueError):
                pass
        return RemoteJobError(error.code, error.message)

    @classmethod
    def _rebuild(cls, message: str, attributes: dict[str, Any]) -> JobError:
        exc = cls.__new__(cls)
        JobError.__init__(exc, message)
        for key, value in attributes.items():
            setattr(exc, key, value)
        return exc


class RemoteJobError(JobError):
    """A wire error that no local class stands for."""

    kind = "remote"

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.remote_code = code


class InvalidJobTypeError(JobError, InvalidNameError):
    code = ErrorCode.INVALID_NAME
    kind = "invalid_job_type"

    def __init__(self, job_type: str, reason: str) -> None:
        super().__init__(f"invalid job type {job_type!r}: {reason}")
        self.job_type = job_type
        self.reason = reason

    def attributes(self) -> dict[str, Any]:
        return {"job_type": self.job_type, "reason": self.reason}


class UnknownJobTypeError(JobError, BadRequestError):
    """No worker has registered a handler for this type (and the queue requires known types)."""

    code = ErrorCode.BAD_REQUEST
    kind = "unknown_job_type"

    def __init__(self, job_type: str) -> None:
        super().__init__(f"unknown job type {job_type!r}: no worker handles it")
        self.job_type = job_type

    def attributes(self) -> dict[str, Any]:
        return {"job_type": self.job_type}


class InvalidJobIdError(JobError, InvalidNameError):
    code = ErrorCode.INVALID_NAME
    kind = "invalid_job_id"

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"invalid job id {job_id!r}: {reason}")
        self.job_id = job_id
        self.reason = reason

    def attributes(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "reason": self.reason}


class InvalidJobDataError(JobError, BadRequestError):
    """Job data (or a handler's result) that cannot be encoded as JSON."""

    code = ErrorCode.BAD_REQUEST
    kind = "invalid_job_data"

    def __init__(self, reason: str) -> None:
        super().__init__(f"job data is not JSON: {reason}")
        self.reason = reason

    def attributes(self) -> dict[str, Any]:
        return {"reason": self.reason}


class InvalidPriorityError(JobError, BadRequestError):
    code = ErrorCode.BAD_REQUEST
    kind = "invalid_priority"

    def __init__(self, priority: str) -> None:
        super().__init__(f"invalid priority {priority!r}: expected high, normal or low")
        self.priority = priority

    def attributes(self) -> dict[str, Any]:
        return {"priority": self.priority}


class InvalidScheduleError(JobError, BadRequestError):
    """A run time or cron expression that cannot be used."""

    code = ErrorCode.BAD_REQUEST
    kind = "invalid_schedule"

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid schedule: {reason}")
        self.reason = reason

    def attributes(self) -> dict[str, Any]:
        return {"reason": self.reason}


class ScheduleInPastError(InvalidScheduleError):
    kind = "schedule_in_past"

    def __init__(self, run_at: float, now: float) -> None:
        super().__init__(f"run_at {run_at:.3f} is {now - run_at:.3f}s in the past")
        self.run_at = run_at
        self.now = now

    def attributes(self) -> dict[str, Any]:
        return {"reason": self.reason, "run_at": self.run_at, "now": self.now}


class InvalidRetryPolicyError(JobError, BadRequestError):
    code = ErrorCode.BAD_REQUEST
    kind = "invalid_retry_policy"

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid retry policy: {reason}")
        self.reason = reason

    def attributes(self) -> dict[str, Any]:
        return {"reason": self.reason}


class PayloadTooLargeError(JobError, TooLargeError):
    code = ErrorCode.TOO_LARGE
    kind = "payload_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload is {size} bytes; the limit is {limit}")
        self.size = size
        self.limit = limit

    def attributes(self) -> dict[str, Any]:
        return {"size": self.size, "limit": self.limit}


class QueueFullError(JobError, OverloadedError):
    """The type's ready queue (or the scheduled set) is at its configured depth."""

    code = ErrorCode.OVERLOADED
    kind = "queue_full"

    def __init__(self, job_type: str, limit: int, what: str = "queue") -> None:
        super().__init__(f"{what} of {job_type!r} is full ({limit} jobs); try later")
        self.job_type = job_type
        self.limit = limit
        self.what = what

    def attributes(self) -> dict[str, Any]:
        return {"job_type": self.job_type, "limit": self.limit, "what": self.what}


class JobNotFoundError(JobError, NotFoundError):
    code = ErrorCode.NOT_FOUND
    kind = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id

    def attributes(self) -> dict[str, Any]:
        return {"job_id": self.job_id}


class JobNotCancellableError(JobError, ConflictError):
    code = ErrorCode.CONFLICT
    kind = "job_not_cancellable"

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} is {status}; only queued, scheduled or running jobs can be cancelled")
        self.job_id = job_id
        self.status = status

    def attributes(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status}


class RecurringJobNotFoundError(JobError, NotFoundError):
    code = ErrorCode.NOT_FOUND
    kind = "recurring_job_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no recurring schedule {name!r}")
        self.name = name

    def attributes(self) -> dict[str, Any]:
        return {"name": self.name}


class UnknownQueueError(JobError, NotFoundError):
    code = ErrorCode.NOT_FOUND
    kind = "unknown_queue"

    def __init__(self, queue: str) -> None:
        super().__init__(f"this scheduler does not serve queue {queue!r} (JOBS_QUEUES)")
        self.queue = queue

    def attributes(self) -> dict[str, Any]:
        return {"queue": self.queue}


class JobFailedError(JobError, ConflictError):
    """Asked for the result of a job that ended dead or cancelled."""

    code = ErrorCode.CONFLICT
    kind = "job_failed"

    def __init__(self, job_id: str, status: str, error: str | None) -> None:
        super().__init__(f"job {job_id!r} is {status}: {error or 'no error recorded'}")
        self.job_id = job_id
        self.status = status
        self.error = error

    def attributes(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "error": self.error}


class JobTimeoutError(JobError, TimeoutError):
    code = ErrorCode.TIMEOUT
    kind = "job_timeout"

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id!r} did not finish within {timeout}s")
        self.job_id = job_id
        self.timeout = timeout

    def attributes(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "timeout": self.timeout}


class SchedulerOverloadedError(JobError, OverloadedError):
    code = ErrorCode.OVERLOADED
    kind = "scheduler_overloaded"

    def __init__(self, limit: int) -> None:
        super().__init__(f"scheduler is handling {limit} requests (JOBS_MAX_INFLIGHT_REQUESTS); try later")
        self.limit = limit

    def attributes(self) -> dict[str, Any]:
        return {"limit": self.limit}


class SchedulerUnavailableError(JobError, UnavailableError):
    """No scheduler answered over NATS (none running, or draining)."""

    code = ErrorCode.UNAVAILABLE
    kind = "scheduler_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"scheduler unavailable: {reason}")
        self.reason = reason

    def attributes(self) -> dict[str, Any]:
        return {"reason": self.reason}


class JobStoreUnavailableError(JobError, ConnectionError):
    """Redis could not be reached; nothing was written."""

    code = ErrorCode.CONNECTION_ERROR
    kind = "job_store_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"job store (Redis) unavailable: {reason}")
        self.reason = reason

    def attributes(self) -> dict[str, Any]:
        return {"reason": self.reason}


class JobNotReplicatedError(JobStoreUnavailableError):
    """The primary wrote it, but fewer replicas than ``REDIS_WAIT_REPLICAS`` confirmed it in time: a failover now
    could lose it. Retrying with the same job id is safe (an enqueue of an existing id writes nothing)."""

    kind = "job_not_replicated"

    def __init__(self, wanted: int, confirmed: int, timeout: float) -> None:
        JobError.__init__(self, f"job store (Redis) unavailable: {confirmed} of {wanted} replicas confirmed the "
                                f"write within {timeout:g}s")
        self.reason = "not replicated"
        self.wanted = wanted
        self.confirmed = confirmed

    def attributes(self) -> dict[str, Any]:
        return {"reason": self.reason, "wanted": self.wanted, "confirmed": self.confirmed}


class PermanentJobError(JobError, BadRequestError):
    """Raised by a handler to fail its job at once: no retry, straight to the dead-letter store."""

    code = ErrorCode.BAD_REQUEST
    kind = "permanent_job_error"
