"""The scheduler's NATS API: one handler per request type, every refusal a typed wire error."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from proto.errors import Error, ErrorCode
from proto.jobs import (
    AddRecurringJob,
    CancelJob,
    EnqueueJob,
    GetJob,
    GetJobStats,
    JobAccepted,
    JobList,
    JobReply,
    JobRequest,
    JobsChanged,
    JobStats,
    ListDeadJobs,
    ListRecurringJobs,
    PurgeDeadJobs,
    RecurringJobList,
    RemoveRecurringJob,
    RetryDeadJobs,
)
from shared.errors import StreamingError
from shared.jobs.errors import unknown_queue
from shared.jobs.metrics import SchedulerMetrics
from shared.jobs.queue import JobQueue

log = logging.getLogger("raaf.scheduler")


class JobsApi:
    """Answers ``JobRequest``s against the queues this scheduler serves (the first one when a request names none)."""

    def __init__(self, queues: dict[str, JobQueue], metrics: SchedulerMetrics, workers: int,
                 redis_concurrency: int) -> None:
        self.queues = queues
        self.default = next(iter(queues))
        self.metrics = metrics
        self.workers = workers
        # The shared Redis pool fails (rather than waits) when exhausted: keep requests within it.
        self._redis_slots = asyncio.Semaphore(redis_concurrency)

    def queue(self, name: str | None) -> JobQueue:
        queue = self.queues.get(name or self.default)
        if queue is None:
            raise unknown_queue(str(name))
        return queue

    async def answer(self, request: JobRequest) -> JobReply:
        """The reply to one request; a :class:`StreamingError` becomes its wire error, anything else ``internal``."""
        started = time.perf_counter()
        try:
            async with self._redis_slots:
                return await self._dispatch(request)
        except StreamingError as exc:
            self.metrics.rejected.labels(exc.code.value).inc()
            return exc.to_wire()
        except Exception:
            log.exception("request %s failed", type(request).__name__)
            self.metrics.rejected.labels(ErrorCode.INTERNAL.value).inc()
            return Error(code=ErrorCode.INTERNAL, message="internal error; see the scheduler's log")
        finally:
            self.metrics.request.labels(type(request).__name__).observe(time.perf_counter() - started)

    async def _dispatch(self, request: JobRequest) -> JobReply:
        match request:
            case EnqueueJob():
                return await self.enqueue(request)
            case GetJob(job_id=job_id, queue=name):
                return await self.queue(name).get(job_id)
            case CancelJob(job_id=job_id, queue=name):
                queue = self.queue(name)
                await queue.cancel(job_id)
                return await queue.get(job_id)
            case ListDeadJobs(offset=offset, limit=limit, queue=name):
                jobs, total = await self.queue(name).dead(offset, limit)
                return JobList(jobs=jobs, total=total)
            case RetryDeadJobs(job_ids=ids, queue=name):
                return JobsChanged(count=await self.queue(name).retry_dead(ids))
            case PurgeDeadJobs(job_ids=ids, queue=name):
                return JobsChanged(count=await self.queue(name).purge_dead(ids))
            case GetJobStats(queue=name):
                queue = self.queue(name)
                s = await queue.stats()
                return JobStats(queue=queue.name, running=True, workers=self.workers, high_priority_queue=s.high,
                                normal_priority_queue=s.normal, low_priority_queue=s.low, scheduled_jobs=s.scheduled,
                                failed_jobs=s.dead, running_jobs=s.running, succeeded_jobs=s.succeeded,
                                recurring_schedules=s.recurring)
            case AddRecurringJob():
                return await self.queue(request.queue).add_recurring(
                    request.name, request.job_type, request.data, cron=request.cron, priority=request.priority,
                    retry_count=request.retry_count, retry_delay=request.retry_delay, owner=request.owner)
            case RemoveRecurringJob(name=name, queue=queue_name):
                await self.queue(queue_name).remove_recurring(name)
                return JobsChanged(count=1)
            case ListRecurringJobs(queue=name):
                return RecurringJobList(schedules=await self.queue(name).list_recurring())
        raise AssertionError(f"unhandled request {type(request).__name__}")  # pragma: no cover

    async def enqueue(self, request: EnqueueJob) -> JobAccepted:
        queue = self.queue(request.queue)
        job = queue.build(request.job_type, request.data, priority=request.priority, job_id=request.job_id,
                          at=request.run_at, in_=request.delay, retry_count=request.retry_count,
                          retry_delay=request.retry_delay, owner=request.owner)
        result = await queue.enqueue(job)
        if result.duplicate:
            self.metrics.duplicates.labels(queue.name).inc()
        else:
            self.metrics.enqueued.labels(queue.name, result.priority.value).inc()
        return JobAccepted(job_id=result.job_id, status=result.status, duplicate=result.duplicate,
                           run_at=result.run_at_ms / 1000)


def bad_request(exc: msgspec.MsgspecError) -> Error:
    return Error(code=ErrorCode.BAD_REQUEST, message=f"not a valid job request: {exc}")
