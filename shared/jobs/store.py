"""JobStore: every Redis operation on one named job queue, each an atomic Lua script (see ``scripts``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from proto.jobs import NULL, JobInfo, JobStatus, Priority
from shared.errors import StreamingError
from shared.jobs.errors import invalid_job_data
from shared.jobs.model import NewJob
from shared.jobs.recurring import RecurringSchedules
from shared.jobs.scripts import managing, producing, scheduling, working
from shared.jobs.store_base import as_str
from shared.jobs.store_results import (
    ClaimedJob,
    Enqueued,
    Expired,
    FailOutcome,
    Promoted,
    StoreStats,
    enqueue_result,
)

PRIORITIES = (Priority.HIGH, Priority.NORMAL, Priority.LOW)
# Jobs per script call, so one call never holds Redis for long.
ENQUEUE_CHUNK = 500
_packer = msgspec.msgpack.Encoder()


class JobStore(RecurringSchedules):
    """One named queue's jobs in Redis. Safe to share between tasks; every method is one atomic step.

    Its keys and the way it calls Redis are :class:`~shared.jobs.store_base.StoreBase`'s; its recurring
    schedules are :class:`~shared.jobs.recurring.RecurringSchedules`'."""

    def _register_scripts(self) -> None:
        super()._register_scripts()
        self._enqueue = self._register(producing.ENQUEUE)
        self._claim = self._register(working.CLAIM)
        self._wake_worker = self._register(working.WAKE_WORKER)
        self._renew = self._register(working.RENEW)
        self._complete = self._register(working.COMPLETE)
        self._fail = self._register(working.FAIL)
        self._release = self._register(working.RELEASE)
        self._finish_cancelled = self._register(working.FINISH_CANCELLED)
        self._cancel = self._register(managing.CANCEL)
        self._stats = self._register(managing.STATS)
        self._retry_dead = self._register(managing.RETRY_DEAD)
        self._purge_dead = self._register(managing.PURGE_DEAD)
        self._requeue_expired = self._register(scheduling.REQUEUE_EXPIRED)
        self._promote_due = self._register(scheduling.PROMOTE_DUE)
        self._ready_types = self._register(scheduling.READY_TYPES)

    # ---- producing -------------------------------------------------------------------------------------------

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[Enqueued | StreamingError]:
        """Write each job unless its id exists; each job is written whole or not at all."""
        results: dict[int, Enqueued | StreamingError] = {}
        writable: list[tuple[int, NewJob, str]] = []
        for i, job in enumerate(jobs):
            try:
                writable.append((i, job, job.data.decode()))
            except UnicodeDecodeError:
                results[i] = invalid_job_data("data is not UTF-8")
        for start in range(0, len(writable), ENQUEUE_CHUNK):
            chunk = writable[start : start + ENQUEUE_CHUNK]
            packed = _packer.encode([
                (job.job_id, job.job_type, job.priority.value, data, str(job.max_attempts), str(job.retry_delay_ms),
                 str(job.run_at_ms), str(job.delay_ms), "1" if job.registers_type else "0", job.trace,
                 job.owner or "") for _, job, data in chunk])
            args = [self.limits.max_queue_depth, self.limits.max_scheduled,
                    1 if self.limits.require_known_type else 0, packed]
            reply = await self._run_replicated(self._enqueue, args)
            for n, (i, job, _) in enumerate(chunk):
                code, status, run_at = as_str(reply[1 + 3 * n]), as_str(reply[2 + 3 * n]), int(reply[3 + 3 * n])
                results[i] = enqueue_result(job, code, status, run_at, self.limits)
        return [results[i] for i in range(len(jobs))]

    async def enqueue(self, job: NewJob) -> Enqueued:
        result = (await self.enqueue_many([job]))[0]
        if isinstance(result, StreamingError):
            raise result
        return result

    async def trace_of(self, job_id: str) -> bytes | None:
        """The ``traceparent`` of the span that enqueued the job (None: enqueued while tracing was off)."""
        value: bytes | None = await self._guard(lambda: self.redis.hget(self.job_key(job_id), "trace"))
        return value

    async def register_types(self, job_types: Sequence[str]) -> None:
        """Declare that a worker handles these types (enqueueing them is then allowed)."""
        if job_types:
            await self._guard(lambda: self.redis.sadd(f"{self.base}handled", *job_types))

    async def known_types(self) -> set[str]:
        members: set[bytes] = await self._guard(lambda: self.redis.smembers(f"{self.base}handled"))
        return {as_str(m) for m in members}

    # ---- working ---------------------------------------------------------------------------------------------

    async def claim(self, job_types: Sequence[str], limit: int, worker: str, lease_ms: int, *,
                    block: float = 0.0) -> list[ClaimedJob]:
        """Claim up to ``limit`` ready jobs of these types: all high before any normal before any low.

        ``block`` > 0: first wait up to that many seconds, inside Redis, for a wake token of these types (or
        :meth:`wake_worker`), then claim at once; after the wait the claim runs anyway (it is also the poll)."""
        if not job_types:
            return []
        ready = [self.queue_key(t, p) for p in PRIORITIES for t in job_types]
        wakes = [self.wake_key(t) for t in job_types] + [self.worker_wake_key(worker)]

        async def hand_back(reply: Any) -> None:  # unconfirmed claims go back uncounted, not to lease expiry
            await self.release([(job.job_id, job.token) for job in self._claimed(reply)])

        # Replicated before the job starts: a failover must not hand a running job to a second worker.
        reply = await self._run_replicated(self._claim, [limit, worker, lease_ms, len(ready)], ready + wakes,
                                           hand_back, wake=(wakes, block) if block > 0 else None)
        return self._claimed(reply)

    async def wake_worker(self, worker: str) -> None:
        """End the blocking wait of ``worker``'s claim now (its wake list is emptied by that claim)."""
        key = self.worker_wake_key(worker)
        await self._guard(lambda: self._wake_worker(keys=[key], args=[self.base]))

    @staticmethod
    def _claimed(reply: Any) -> list[ClaimedJob]:
        now = int(reply[0])
        jobs = []
        for i in range(1, len(reply), 10):
            jobs.append(ClaimedJob(
                job_id=as_str(reply[i]), job_type=as_str(reply[i + 1]), priority=Priority(as_str(reply[i + 2])),
                data=reply[i + 3], attempt=int(reply[i + 4]), token=int(reply[i + 5]),
                max_attempts=int(reply[i + 6]), retry_delay_ms=int(reply[i + 7]), due_ms=int(reply[i + 8]),
                claimed_ms=now, owner=as_str(reply[i + 9]) or None,
            ))
        return jobs

    async def renew(self, leases: Sequence[tuple[str, int]], lease_ms: int) -> list[int]:
        """Extend leases; per job 0 = lost (someone else has it now), 1 = renewed, 2 = renewed, cancel asked."""
        if not leases:
            return []
        args: list[Any] = [lease_ms]
        for job_id, token in leases:
            args += [job_id, token]
        return [int(x) for x in await self._run(self._renew, args)]

    async def complete(self, done: Sequence[tuple[str, int, bytes]]) -> list[bool]:
        """Record results; False where the lease was lost (the result is then discarded)."""
        if not done:
            return []
        args: list[Any] = [self.ttl_seconds]
        for job_id, token, result in done:
            args += [job_id, token, result]
        return [x == 1 for x in await self._run(self._complete, args)]

    async def fail(self, job_id: str, token: int, error: str, *, retry: bool, delay_ms: int) -> FailOutcome:
        reply = await self._run(self._fail, [job_id, token, error[:4000], 1 if retry else 0, delay_ms,
                                             self.limits.dead_letter_max])
        return FailOutcome(as_str(reply[0]), int(reply[1]), int(reply[2]))

    async def release(self, held: Sequence[tuple[str, int]]) -> list[str]:
        """Hand jobs back to the front of their queues without counting the attempt; returns their types."""
        if not held:
            return []
        args: list[Any] = []
        for job_id, token in held:
            args += [job_id, token]
        return [as_str(t) for t in await self._run(self._release, args)]

    async def finish_cancelled(self, job_id: str, token: int) -> bool:
        return int(await self._run(self._finish_cancelled, [job_id, token, self.ttl_seconds])) == 1

    # ---- managing --------------------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> tuple[str, str, str]:
        """``(outcome, status, job_type)``; outcome is not_found, cancelled, cancelling or final."""
        reply = await self._run(self._cancel, [job_id, self.ttl_seconds])
        return as_str(reply[0]), as_str(reply[1]), as_str(reply[2])

    async def get(self, job_id: str) -> JobInfo | None:
        fields: dict[bytes, bytes] = await self._guard(lambda: self.redis.hgetall(self.job_key(job_id)))
        return self._info(job_id, fields) if fields else None

    def _info(self, job_id: str, raw: dict[Any, Any]) -> JobInfo:
        f = {as_str(k): v for k, v in raw.items()}

        def seconds(name: str) -> float | None:
            value = f.get(name)
            return int(value) / 1000 if value is not None else None

        result = f.get("result")
        error = f.get("error")
        worker = f.get("worker")
        owner = f.get("owner")
        return JobInfo(
            job_id=job_id, job_type=as_str(f.get("type", b"")), queue=self.queue, status=JobStatus(as_str(f["status"])),
            priority=Priority(as_str(f.get("priority", b"normal"))), attempts=int(f.get("attempts", 0)),
            max_attempts=int(f.get("max_attempts", 1)), data=msgspec.Raw(f.get("data", NULL)),
            result=msgspec.Raw(result) if result is not None else NULL,
            error=as_str(error) if error is not None else None, enqueued_at=seconds("enqueued_at"),
            run_at=seconds("run_at"), started_at=seconds("started_at"), finished_at=seconds("finished_at"),
            worker=as_str(worker) if worker is not None else None, cancel_requested=f.get("cancel") == b"1",
            owner=as_str(owner) if owner else None,
        )

    async def dead(self, offset: int = 0, limit: int = 100) -> tuple[list[JobInfo], int]:
        """Dead jobs, newest first, and how many there are."""
        offset, limit = max(0, offset), max(0, min(limit, 1000))

        async def read() -> tuple[list[JobInfo], int]:
            ids = [as_str(i) for i in await self.redis.zrevrange(f"{self.base}dead", offset, offset + limit - 1)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self.job_key(job_id))
                pipe.zcard(f"{self.base}dead")
                replies = await pipe.execute()
            jobs = [self._info(job_id, fields) for job_id, fields in zip(ids, replies[:-1], strict=True) if fields]
            return jobs, int(replies[-1])

        if limit == 0:
            return [], int(await self._guard(lambda: self.redis.zcard(f"{self.base}dead")))
        jobs: tuple[list[JobInfo], int] = await self._guard(read)
        return jobs

    async def retry_dead(self, job_ids: Sequence[str] | None = None, limit: int = 1000) -> list[tuple[str, str]]:
        """Dead jobs (these, or the oldest ``limit``) back to their queues; returns ``(id, type)`` of each."""
        reply = await self._run(self._retry_dead, [limit, *(job_ids or [])])
        return [(as_str(reply[i]), as_str(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def purge_dead(self, job_ids: Sequence[str] | None = None, limit: int = 1000) -> int:
        return int(await self._run(self._purge_dead, [limit, *(job_ids or [])]))

    async def stats(self) -> StoreStats:
        r = [int(x) for x in await self._run(self._stats, [])]
        return StoreStats(*r)

    # ---- the scheduler's moves -------------------------------------------------------------------------------

    async def requeue_expired(self, limit: int = 1000) -> list[Expired]:
        reply = await self._run(self._requeue_expired, [limit, self.limits.dead_letter_max, self.ttl_seconds])
        return [Expired(as_str(reply[i]), as_str(reply[i + 1]), as_str(reply[i + 2]), int(reply[i + 3]))
                for i in range(1, len(reply), 4)]

    async def promote_due(self, limit: int = 1000) -> Promoted:
        reply = await self._run(self._promote_due, [limit])
        counts = {as_str(reply[i]): int(reply[i + 1]) for i in range(3, len(reply), 2)}
        return Promoted(int(reply[0]), int(reply[1]), int(reply[2]), counts)

    async def ready_types(self) -> dict[str, int]:
        reply = await self._run(self._ready_types, [])
        return {as_str(reply[i]): int(reply[i + 1]) for i in range(0, len(reply), 2)}
