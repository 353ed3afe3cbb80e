"""What the job store's operations answer: enqueued and claimed jobs, failures, the scheduler's moves, counts."""

from __future__ import annotations

from dataclasses import dataclass

from proto.jobs import JobStatus, Priority
from shared.errors import StreamingError
from shared.jobs.errors import queue_full, unknown_job_type
from shared.jobs.model import JobLimits, NewJob


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: str
    status: JobStatus
    duplicate: bool
    run_at_ms: int
    job_type: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds under a lease; ``token`` identifies the lease (it changes on every claim)."""

    job_id: str
    job_type: str
    priority: Priority
    data: bytes
    attempt: int
    token: int
    max_attempts: int
    retry_delay_ms: int
    due_ms: int
    claimed_ms: int
    owner: str | None = None  # the identity the job belongs to


@dataclass(frozen=True, slots=True)
class Expired:
    job_id: str
    job_type: str
    outcome: str  # requeued | dead | cancelled
    attempts: int


@dataclass(frozen=True, slots=True)
class FailOutcome:
    outcome: str  # lost | scheduled | queued | dead
    run_at_ms: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Promoted:
    now_ms: int
    next_due_ms: int  # -1: nothing scheduled
    earliest_ms: int  # the earliest due time among the jobs moved; -1: none moved
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class StoreStats:
    high: int
    normal: int
    low: int
    scheduled: int
    running: int
    dead: int
    succeeded: int
    recurring: int


def enqueue_result(job: NewJob, code: str, status: str, run_at: int, limits: JobLimits) -> Enqueued | StreamingError:
    """One job's answer from an enqueueing script: ``Enqueued``, or the error its code names."""
    if code == "ok":
        return Enqueued(job.job_id, JobStatus(status), False, run_at, job.job_type, job.priority)
    if code == "duplicate":
        return Enqueued(job.job_id, JobStatus(status), True, run_at, job.job_type, job.priority)
    if code == "unknown_type":
        return unknown_job_type(job.job_type)
    if code == "scheduled_full":
        return queue_full(job.job_type, limits.max_scheduled, "scheduled set")
    return queue_full(job.job_type, limits.max_queue_depth)
