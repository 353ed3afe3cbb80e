"""JobQueue: the operations on one named queue (enqueue, look up, cancel, dead letters, schedules, stats).

The Python API (``BackgroundProcessor``) and the scheduler service's NATS API both go through this class, so
validation, limits and the signals that follow each change are the same on every path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from proto.jobs import (
    JobCancelled,
    JobEnqueued,
    JobInfo,
    JobRetried,
    JobStatus,
    Priority,
    RecurringJob,
)
from shared.errors import StreamingError
from shared.jobs.batching import Batcher
from shared.jobs.errors import (
    job_failed,
    job_not_cancellable,
    job_not_found,
    job_timeout,
    recurring_job_not_found,
)
from shared.jobs.events import JobSignals
from shared.jobs.model import NewJob, RetryPolicy, check_job_id, check_job_type, check_priority, check_retry, new_job
from shared.jobs.store import JobStore
from shared.jobs.store_results import Enqueued, StoreStats

_decoder = msgspec.json.Decoder()
FINAL = (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED)


class JobQueue:
    """One named queue: a :class:`JobStore` plus its retry defaults and its NATS signals."""

    def __init__(self, store: JobStore, signals: JobSignals, retry: RetryPolicy) -> None:
        self.store = store
        self.signals = signals
        self.retry = retry
        self.name = store.queue
        self._enqueuer: Batcher[NewJob, Enqueued | StreamingError] = Batcher(self._write, max_batch=500,
                                                                            max_in_flight=2)

    # ---- enqueueing ----------------------------------------------------------------------------------------------

    def build(self, job_type: str, data: Any = None, *, priority: object = Priority.NORMAL,
              job_id: str | None = None, at: datetime | float | None = None, in_: float | None = None,
              retry_count: int | None = None, retry_delay: float | None = None,
              registers_type: bool = False, owner: str | None = None) -> NewJob:
        return new_job(job_type, data, priority=priority, job_id=job_id, at=at, in_=in_, retry_count=retry_count,
                       retry_delay=retry_delay, retry=self.retry, limits=self.store.limits,
                       registers_type=registers_type, owner=owner)

    async def enqueue(self, job: NewJob) -> Enqueued:
        """Write the job (batched with concurrent callers); raises a typed error when it was refused."""
        result = await self._enqueuer.submit(job)
        if isinstance(result, StreamingError):
            raise result
        return result

    async def _write(self, jobs: Sequence[NewJob]) -> list[Enqueued | StreamingError]:
        # The script wakes idle workers itself (wake tokens): no nudge needed.
        results = await self.store.enqueue_many(jobs)
        events = []
        earliest = 0
        now = time.time()
        for result in results:
            if isinstance(result, StreamingError) or result.duplicate:
                continue
            if result.status is JobStatus.QUEUED:
                run_at = None
            else:
                earliest = result.run_at_ms if not earliest else min(earliest, result.run_at_ms)
                run_at = result.run_at_ms / 1000
            events.append(JobEnqueued(queue=self.name, job_id=result.job_id, job_type=result.job_type,
                                      priority=result.priority, run_at=run_at, at=now))
        if earliest:
            await self.signals.scheduled(earliest)
        await self.signals.events(events)
        return results

    async def drain(self) -> None:
        await self._enqueuer.drain()

    # ---- looking up ----------------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobInfo:
        info = await self.store.get(check_job_id(job_id))
        if info is None:
            raise job_not_found(job_id)
        return info

    async def wait(self, job_id: str, timeout: float, poll: float = 0.02) -> JobInfo:
        """The job's record once it is final (succeeded, dead or cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            info = await self.get(job_id)
            if info.status in FINAL:
                return info
            if time.monotonic() >= deadline:
                raise job_timeout(job_id, timeout)
            await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
            poll = min(poll * 1.5, 0.5)

    async def result(self, job_id: str, timeout: float = 0.0) -> Any:
        info = await self.wait(job_id, timeout)
        if info.status is not JobStatus.SUCCEEDED:
            raise job_failed(job_id, info.status.value, info.error)
        return _decoder.decode(info.result)

    # ---- changing ------------------------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> JobStatus:
        """Cancel a queued or scheduled job at once; a running one is stopped by its worker (status stays running
        until then). Returns the status after the call."""
        outcome, status, job_type = await self.store.cancel(check_job_id(job_id))
        if outcome == "not_found":
            raise job_not_found(job_id)
        if outcome == "final":
            raise job_not_cancellable(job_id, status)
        if outcome == "cancelled":
            await self.signals.event(JobCancelled(queue=self.name, job_id=job_id, job_type=job_type,
                                                  at=time.time()))
            return JobStatus.CANCELLED
        await self.signals.cancel(job_id)
        return JobStatus.RUNNING

    async def dead(self, offset: int = 0, limit: int = 100) -> tuple[list[JobInfo], int]:
        return await self.store.dead(offset, limit)

    async def retry_dead(self, job_ids: Sequence[str] | None = None) -> int:
        ids = [check_job_id(j) for j in job_ids] if job_ids is not None else None
        if ids == []:
            return 0
        moved = await self.store.retry_dead(ids)  # wakes idle workers itself
        now = time.time()
        events = []
        for job_id, job_type in moved:
            events.append(JobRetried(queue=self.name, job_id=job_id, job_type=job_type, attempt=0,
                                     reason="dead_letter_retry", at=now))
        await self.signals.events(events)
        return len(moved)

    async def purge_dead(self, job_ids: Sequence[str] | None = None) -> int:
        if job_ids is not None:
            ids = [check_job_id(j) for j in job_ids]
            return await self.store.purge_dead(ids) if ids else 0
        total = 0
        while purged := await self.store.purge_dead(None):
            total += purged
        return total

    # ---- recurring -----------------------------------------------------------------------------------------------

    async def add_recurring(self, name: str, job_type: str, data: Any = None, *, cron: str,
                            priority: object = Priority.NORMAL, retry_count: int | None = None,
                            retry_delay: float | None = None, owner: str | None = None) -> RecurringJob:
        # Check the job part exactly as an enqueue would, so a bad schedule fails now and not at every fire.
        job = self.build(job_type, data, priority=priority, retry_count=retry_count, retry_delay=retry_delay)
        count, delay = check_retry(retry_count, retry_delay, self.retry)
        spec = RecurringJob(name=name, cron=cron, job_type=check_job_type(job_type), data=msgspec.Raw(job.data),
                            priority=check_priority(priority), retry_count=count, retry_delay=delay,
                            owner=owner or None)
        return await self.store.add_recurring(spec)

    async def remove_recurring(self, name: str) -> None:
        if not await self.store.remove_recurring(name):
            raise recurring_job_not_found(name)

    async def list_recurring(self) -> list[RecurringJob]:
        return await self.store.list_recurring()

    async def stats(self) -> StoreStats:
        return await self.store.stats()
