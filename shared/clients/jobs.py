"""JobsClient: the scheduler's API over NATS request/reply, for processes that do not talk to Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from proto.errors import Error
from proto.jobs import (
    NULL,
    AddRecurringJob,
    CancelJob,
    EnqueueJob,
    GetJob,
    GetJobStats,
    JobAccepted,
    JobInfo,
    JobList,
    JobReply,
    JobRequest,
    JobsChanged,
    JobStats,
    ListDeadJobs,
    ListRecurringJobs,
    PurgeDeadJobs,
    RecurringJob,
    RecurringJobList,
    RemoveRecurringJob,
    RetryDeadJobs,
    job_reply_decoder,
    jobs_encoder,
)
from proto.subjects import Subjects
from shared.errors import from_wire
from shared.jobs.errors import (
    invalid_job_data,
    payload_too_large,
    scheduler_unavailable,
)
from shared.tracing import inject

_encoder = msgspec.json.Encoder()


def _raw(data: Any) -> msgspec.Raw:
    try:
        return data if isinstance(data, msgspec.Raw) else msgspec.Raw(_encoder.encode(data))
    except (TypeError, msgspec.EncodeError) as exc:
        raise invalid_job_data(str(exc)) from None


class JobsClient:
    """Enqueue, look up and manage jobs through the scheduler service (``raaf.jobs.request``)."""

    def __init__(self, nc: NATS, *, prefix: str = "raaf", queue: str | None = None, timeout: float = 5.0) -> None:
        self.nc = nc
        self.subjects = Subjects(prefix)
        self.queue = queue
        self.timeout = timeout

    async def request(self, request: JobRequest) -> JobReply:
        """Send one request; a wire error comes back as its typed :class:`StreamingError`."""
        payload = jobs_encoder.encode(request)
        try:
            msg = await self.nc.request(self.subjects.job_requests, payload, timeout=self.timeout, headers=inject())
        except MaxPayloadError:
            raise payload_too_large(len(payload), self.nc.max_payload) from None
        except NoRespondersError:
            raise scheduler_unavailable("no scheduler is listening") from None
        except NatsTimeoutError:
            raise scheduler_unavailable(f"no answer within {self.timeout}s") from None
        try:
            reply = job_reply_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise scheduler_unavailable(f"unreadable reply: {exc}") from None
        if isinstance(reply, Error):
            raise from_wire(reply)
        answer: JobReply = reply
        return answer

    async def _expect(self, request: JobRequest, kind: type[Any]) -> Any:
        reply = await self.request(request)
        if not isinstance(reply, kind):
            raise scheduler_unavailable(f"expected {kind.__name__}, got {type(reply).__name__}")
        return reply

    async def enqueue_job(self, job_type: str, data: Any = None, *, priority: str = "normal",
                          job_id: str | None = None, run_at: float | None = None, delay: float | None = None,
                          retry_count: int | None = None, retry_delay: float | None = None,
                          owner: str | None = None) -> JobAccepted:
        request = EnqueueJob(job_type=job_type, data=_raw(data), priority=priority, job_id=job_id, run_at=run_at,
                             delay=delay, retry_count=retry_count, retry_delay=retry_delay, queue=self.queue,
                             owner=owner)
        accepted: JobAccepted = await self._expect(request, JobAccepted)
        return accepted

    async def get_job(self, job_id: str) -> JobInfo:
        info: JobInfo = await self._expect(GetJob(job_id=job_id, queue=self.queue), JobInfo)
        return info

    async def cancel_job(self, job_id: str) -> JobInfo:
        info: JobInfo = await self._expect(CancelJob(job_id=job_id, queue=self.queue), JobInfo)
        return info

    async def dead_jobs(self, *, offset: int = 0, limit: int = 100) -> JobList:
        jobs: JobList = await self._expect(ListDeadJobs(offset=offset, limit=limit, queue=self.queue), JobList)
        return jobs

    async def retry_dead_jobs(self, job_ids: Sequence[str] | None = None) -> int:
        ids = list(job_ids) if job_ids is not None else None
        changed: JobsChanged = await self._expect(RetryDeadJobs(job_ids=ids, queue=self.queue), JobsChanged)
        return changed.count

    async def purge_dead_jobs(self, job_ids: Sequence[str] | None = None) -> int:
        ids = list(job_ids) if job_ids is not None else None
        changed: JobsChanged = await self._expect(PurgeDeadJobs(job_ids=ids, queue=self.queue), JobsChanged)
        return changed.count

    async def stats(self) -> JobStats:
        stats: JobStats = await self._expect(GetJobStats(queue=self.queue), JobStats)
        return stats

    async def add_recurring(self, name: str, job_type: str, data: Any = None, *, cron: str,
                            priority: str = "normal", retry_count: int | None = None,
                            retry_delay: float | None = None, owner: str | None = None) -> RecurringJob:
        request = AddRecurringJob(name=name, cron=cron, job_type=job_type,
                                  data=_raw(data) if data is not None else NULL, priority=priority,
                                  retry_count=retry_count, retry_delay=retry_delay, queue=self.queue, owner=owner)
        spec: RecurringJob = await self._expect(request, RecurringJob)
        return spec

    async def remove_recurring(self, name: str) -> None:
        await self._expect(RemoveRecurringJob(name=name, queue=self.queue), JobsChanged)

    async def list_recurring(self) -> list[RecurringJob]:
        listing: RecurringJobList = await self._expect(ListRecurringJobs(queue=self.queue), RecurringJobList)
        return listing.schedules
