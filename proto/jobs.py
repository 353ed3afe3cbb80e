"""Wire types of the scheduler: job requests and replies, dispatch nudges and job lifecycle events."""

from __future__ import annotations

import enum

import msgspec

from proto.base import Message
from proto.errors import Error

NULL = msgspec.Raw(b"null")


class Priority(enum.StrEnum):
    """Queue priorities, claimed strictly in this order (the seed's ``:high``, ``:normal``, ``:low``)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"  # ready, waiting in its priority queue
    SCHEDULED = "scheduled"  # waiting for its time (delayed, or a retry backing off)
    RUNNING = "running"  # claimed by a worker under a lease
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # failed for good: in the dead-letter store
    CANCELLED = "cancelled"


# ---- requests to the scheduler (subjects ``jobs.enqueue`` and ``jobs.request``) --------------------------------


class EnqueueJob(Message, frozen=True, kw_only=True, tag="enqueue_job"):
    """Enqueue one job. ``priority`` is a string so a wrong one gets the same typed error everywhere.

    The ``type`` tag may be left out on ``jobs.enqueue``, so ``nats req raaf.jobs.enqueue
    '{"job_type":"email","data":{"to":"a@b.c"}}'`` works.
    """

    job_type: str
    data: msgspec.Raw = NULL
    priority: str = Priority.NORMAL.value
    job_id: str | None = None  # idempotency key: enqueueing the same id twice runs the job once
    run_at: float | None = None  # unix seconds
    delay: float | None = None  # seconds from now
    retry_count: int | None = None
    retry_delay: float | None = None
    queue: str | None = None  # the scheduler's first queue when unset
    owner: str | None = None  # the identity the job belongs to (the gateway sets it; clients cannot)


class GetJob(Message, frozen=True, kw_only=True, tag="get_job"):
    job_id: str
    queue: str | None = None


class CancelJob(Message, frozen=True, kw_only=True, tag="cancel_job"):
    job_id: str
    queue: str | None = None


class ListDeadJobs(Message, frozen=True, kw_only=True, tag="list_dead_jobs"):
    offset: int = 0
    limit: int = 100
    queue: str | None = None


class RetryDeadJobs(Message, frozen=True, kw_only=True, tag="retry_dead_jobs"):
    """Dead jobs back to their queues with fresh attempts; all of them (up to a limit) when ``job_ids`` is unset."""

    job_ids: list[str] | None = None
    queue: str | None = None


class PurgeDeadJobs(Message, frozen=True, kw_only=True, tag="purge_dead_jobs"):
    job_ids: list[str] | None = None
    queue: str | None = None


class GetJobStats(Message, frozen=True, kw_only=True, tag="get_job_stats"):
    queue: str | None = None


class AddRecurringJob(Message, frozen=True, kw_only=True, tag="add_recurring_job"):
    """A cron schedule: five fields, or six with seconds last (croniter's convention)."""

    name: str
    cron: str
    job_type: str
    data: msgspec.Raw = NULL
    priority: str = Priority.NORMAL.value
    retry_count: int | None = None
    retry_delay: float | None = None
    queue: str | None = None
    owner: str | None = None  # the identity the schedule (and every job it fires) belongs to


class RemoveRecurringJob(Message, frozen=True, kw_only=True, tag="remove_recurring_job"):
    name: str
    queue: str | None = None


class ListRecurringJobs(Message, frozen=True, kw_only=True, tag="list_recurring_jobs"):
    queue: str | None = None


JobRequest = (
    EnqueueJob
    | GetJob
    | CancelJob
    | ListDeadJobs
    | RetryDeadJobs
    | PurgeDeadJobs
    | GetJobStats
    | AddRecurringJob
    | RemoveRecurringJob
    | ListRecurringJobs
)

# ---- replies ----------------------------------------------------------------------------------------------------


class JobAccepted(Message, frozen=True, kw_only=True, tag="job_accepted"):
    # Replies keep every field (no defaults), so HTTP clients see zeros and nulls too.
    job_id: str
    status: JobStatus
    duplicate: bool  # the id existed: nothing was written
    run_at: float | None


class JobInfo(Message, frozen=True, kw_only=True, tag="job"):
    """A job's record as stored; times are unix seconds (the Redis server's clock)."""

    job_id: str
    job_type: str
    queue: str
    status: JobStatus
    priority: Priority
    attempts: int
    max_attempts: int
    data: msgspec.Raw
    result: msgspec.Raw  # the handler's return value once succeeded (JSON null until then)
    error: str | None  # the last failed attempt's error
    enqueued_at: float | None
    run_at: float | None
    started_at: float | None
    finished_at: float | None
    worker: str | None
    cancel_requested: bool
    owner: str | None = None  # the identity that enqueued it (or whose schedule fired it); None: nobody's


class JobList(Message, frozen=True, kw_only=True, tag="job_list"):
    jobs: list[JobInfo]
    total: int


class JobStats(Message, frozen=True, kw_only=True, tag="job_stats"):
    """The seed's ``processor.stats`` shape, plus what a cluster-wide view adds."""

    queue: str
    running: bool
    workers: int
    high_priority_queue: int
    normal_priority_queue: int
    low_priority_queue: int
    scheduled_jobs: int
    failed_jobs: int  # failed for good: the dead-letter store's size
    running_jobs: int  # held under a lease right now
    succeeded_jobs: int  # since the queue was created
    recurring_schedules: int


class JobsChanged(Message, frozen=True, kw_only=True, tag="jobs_changed"):
    count: int


class RecurringJob(Message, frozen=True, kw_only=True, tag="recurring_job"):
    name: str
    cron: str
    job_type: str
    data: msgspec.Raw = NULL
    priority: Priority = Priority.NORMAL
    retry_count: int | None = None
    retry_delay: float | None = None
    next_run_at: float | None = None
    owner: str | None = None


class RecurringJobList(Message, frozen=True, kw_only=True, tag="recurring_job_list"):
    schedules: list[RecurringJob]


JobReply = JobAccepted | JobInfo | JobList | JobStats | JobsChanged | RecurringJob | RecurringJobList | Error

# ---- scheduler <-> workers --------------------------------------------------------------------------------------


class JobsReady(Message, frozen=True, kw_only=True, tag="jobs_ready"):
    """A nudge to one worker of a type's queue group: jobs wait in Redis; claim them. Carries no job."""

    queue: str
    job_type: str
    count: int = 1


class JobCancelRequested(Message, frozen=True, kw_only=True, tag="job_cancel_requested"):
    """To every worker: whoever holds this job cancels it now (the lease renewal is the fallback)."""

    queue: str
    job_id: str


class JobsScheduled(Message, frozen=True, kw_only=True, tag="jobs_scheduled"):
    """To every scheduler: a delayed job is due at ``run_at``; wake before then if sleeping longer."""

    queue: str
    run_at: float


# ---- lifecycle events (``jobs.lifecycle.<event>``) -------------------------------------------------------------


class JobEnqueued(Message, frozen=True, kw_only=True, tag="job_enqueued"):
    queue: str
    job_id: str
    job_type: str
    priority: Priority
    run_at: float | None = None
    at: float


class JobStarted(Message, frozen=True, kw_only=True, tag="job_started"):
    queue: str
    job_id: str
    job_type: str
    attempt: int
    worker: str
    waited: float  # seconds from due to claim
    at: float


class JobSucceeded(Message, frozen=True, kw_only=True, tag="job_succeeded"):
    queue: str
    job_id: str
    job_type: str
    attempt: int
    duration: float
    at: float


class JobFailed(Message, frozen=True, kw_only=True, tag="job_failed"):
    """One attempt failed; ``will_retry`` tells whether a ``retried`` or a ``dead`` event follows."""

    queue: str
    job_id: str
    job_type: str
    attempt: int
    error: str
    will_retry: bool
    duration: float | None = None  # seconds the handler ran (None: unknown, e.g. from an older worker)
    at: float


class JobRetried(Message, frozen=True, kw_only=True, tag="job_retried"):
    queue: str
    job_id: str
    job_type: str
    attempt: int  # the attempt that failed or whose lease expired
    reason: str  # "error" | "lease_expired" | "dead_letter_retry"
    run_at: float | None = None
    at: float


class JobDead(Message, frozen=True, kw_only=True, tag="job_dead"):
    queue: str
    job_id: str
    job_type: str
    attempts: int
    error: str
    at: float


class JobCancelled(Message, frozen=True, kw_only=True, tag="job_cancelled"):
    queue: str
    job_id: str
    job_type: str
    at: float


JobLifecycleEvent = JobEnqueued | JobStarted | JobSucceeded | JobFailed | JobRetried | JobDead | JobCancelled

# The ``<event>`` token of each lifecycle event's subject.
LIFECYCLE_EVENT_NAMES: dict[type[Message], str] = {
    JobEnqueued: "enqueued",
    JobStarted: "started",
    JobSucceeded: "succeeded",
    JobFailed: "failed",
    JobRetried: "retried",
    JobDead: "dead",
    JobCancelled: "cancelled",
}

jobs_encoder = msgspec.json.Encoder()
enqueue_decoder = msgspec.json.Decoder(EnqueueJob)
job_request_decoder = msgspec.json.Decoder(JobRequest)
job_reply_decoder = msgspec.json.Decoder(JobReply)
jobs_ready_decoder = msgspec.json.Decoder(JobsReady)
job_cancel_decoder = msgspec.json.Decoder(JobCancelRequested)
jobs_scheduled_decoder = msgspec.json.Decoder(JobsScheduled)
job_lifecycle_decoder = msgspec.json.Decoder(JobLifecycleEvent)
job_info_decoder = msgspec.json.Decoder(JobInfo)
recurring_job_decoder = msgspec.json.Decoder(RecurringJob)


# ---- the built-in agent job type ------------------------------------------------------------------------------


class RunAgentJob(Message, frozen=True, kw_only=True, tag="run_agent_job"):
    """The data of a ``run_agent`` job (the ``type`` tag may be left out): run ``agent`` on ``input`` in the
    background and publish the result as the application event ``event`` (``raaf.events.<event>``)."""

    agent: str
    input: str
    event: str | None = "jobs.agent_completed"  # None: keep the result on the job only
    metadata: dict[str, str] = {}
    timeout: float | None = None  # seconds for the run; None: the runner's default
    max_turns: int | None = None  # turns the run may take; None: the runner's default


class AgentJobCompleted(Message, frozen=True, kw_only=True, tag="agent_job_completed"):
    """The event a ``run_agent`` job publishes when its run completed (also the job's result)."""

    job_id: str
    run_id: str
    agent: str
    output: str
    usage: dict[str, int] = {}
    at: float


run_agent_job_decoder = msgspec.json.Decoder(RunAgentJob)
