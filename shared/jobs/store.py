"""JobStore: every Redis operation on one named job queue, each an atomic Lua script (see ``scripts``)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from croniter import croniter
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proto.jobs import NULL, JobInfo, JobStatus, Priority, RecurringJob, jobs_encoder, recurring_job_decoder
from shared.errors import StreamingError
from shared.jobs import scripts
from shared.jobs.errors import (
    JobStoreUnavailableError,
    invalid_job_data,
    invalid_schedule,
    job_not_replicated,
    job_store_unavailable,
    queue_full,
    unknown_job_type,
)
from shared.jobs.model import JobLimits, NewJob, check_queue_name
from shared.redisconn import RedisClient, eval_after_wake, eval_and_wait, register_script

PRIORITIES = (Priority.HIGH, Priority.NORMAL, Priority.LOW)
_RECURRING_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
# Jobs per script call, so one call never holds Redis for long.
ENQUEUE_CHUNK = 500
_packer = msgspec.msgpack.Encoder()
_DUE_RECURRING = scripts.LIBRARY + r"""
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', base .. 'cron_due', '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local nxt = redis.call('ZRANGEBYSCORE', base .. 'cron_due', '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local out = {now, -1}
if nxt[2] then out[2] = tonumber(nxt[2]) end
for i = 1, #due do out[#out + 1] = due[i] end
return out
"""

# A script rather than MULTI: a cluster client has no transactions, and one script is atomic everywhere.
_SET_RECURRING = r"""
redis.call('HSET', ARGV[1] .. 'cron', ARGV[2], ARGV[3])
redis.call('ZADD', ARGV[1] .. 'cron_due', tonumber(ARGV[4]), ARGV[2])
return 1
"""
# Wake one worker blocked in its claim (it asked for it: a nudge, or it is stopping); the claim empties the list.
_WAKE_WORKER = r"""
redis.call('LPUSH', KEYS[1], '1')
redis.call('PEXPIRE', KEYS[1], 60000)
return 1
"""
_REMOVE_RECURRING = r"""
local removed = redis.call('HDEL', ARGV[1] .. 'cron', ARGV[2])
redis.call('ZREM', ARGV[1] .. 'cron_due', ARGV[2])
return removed
"""


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


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class JobStore:
    """One named queue's jobs in Redis. Safe to share between tasks; every method is one atomic step."""

    def __init__(self, client: RedisClient, *, queue: str = "jobs", prefix: str = "raaf",
                 limits: JobLimits | None = None, on_unavailable: Callable[[], object] | None = None) -> None:
        self.redis = client
        self.on_unavailable = on_unavailable  # called on every failed Redis call (a service counts them)
        self.queue = check_queue_name(queue)
        self.limits = limits or JobLimits()
        # One hash tag for the whole queue, so every script's keys live in one cluster slot.
        self.base = f"{prefix}:jobs:{{{queue}}}:"

        def register(text: str) -> AsyncScript:
            return register_script(client, text)

        self._enqueue = register(scripts.ENQUEUE)
        self._claim = register(scripts.CLAIM)
        self._renew = register(scripts.RENEW)
        self._complete = register(scripts.COMPLETE)
        self._fail = register(scripts.FAIL)
        self._release = register(scripts.RELEASE)
        self._finish_cancelled = register(scripts.FINISH_CANCELLED)
        self._cancel = register(scripts.CANCEL)
        self._requeue_expired = register(scripts.REQUEUE_EXPIRED)
        self._promote_due = register(scripts.PROMOTE_DUE)
        self._ready_types = register(scripts.READY_TYPES)
        self._stats = register(scripts.STATS)
        self._retry_dead = register(scripts.RETRY_DEAD)
        self._purge_dead = register(scripts.PURGE_DEAD)
        self._fire_recurring = register(scripts.FIRE_RECURRING)
        self._due_recurring = register(_DUE_RECURRING)
        self._set_recurring = register(_SET_RECURRING)
        self._remove_recurring = register(_REMOVE_RECURRING)
        self._wake_worker = register(_WAKE_WORKER)

    # ---- keys ------------------------------------------------------------------------------------------------

    def job_key(self, job_id: str) -> str:
        return f"{self.base}job:{job_id}"

    def queue_key(self, job_type: str, priority: Priority) -> str:
        return f"{self.base}q:{job_type}:{priority.value}"

    def wake_key(self, job_type: str) -> str:
        return f"{self.base}wake:{job_type}"

    def worker_wake_key(self, worker: str) -> str:
        return f"{self.base}wake-worker:{worker}"

    @property
    def ttl_seconds(self) -> int:
        return max(0, round(self.limits.result_ttl))

    async def _guard(self, call: Callable[[], Any]) -> Any:
        """Await a Redis call; connection trouble becomes :class:`JobStoreUnavailableError`."""
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if self.on_unavailable is not None:
                self.on_unavailable()
            raise job_store_unavailable(str(exc) or type(exc).__name__) from exc

    async def _run(self, script: AsyncScript, args: Sequence[Any], keys: Sequence[str] = ()) -> Any:
        # A script that names no key still names the queue's tag, so a cluster client sends it to the right node.
        return await self._guard(lambda: script(keys=list(keys) or [self.base], args=[self.base, *args]))

    async def _run_replicated(self, script: AsyncScript, args: Sequence[Any], keys: Sequence[str] = (),
                              undo: Callable[[Any], Awaitable[object]] | None = None,
                              wake: tuple[Sequence[str], float] | None = None) -> Any:
        """``_run``, then, with ``wait_replicas`` set, WAIT on the same connection until that many replicas have
        the write; fewer within ``wait_timeout`` calls ``undo(reply)`` and raises :class:`JobNotReplicatedError`.
        ``wake=(lists, seconds)``: the script runs once a token arrives on one of the lists, or after that long."""
        wanted = self.limits.wait_replicas
        if wanted <= 0 and wake is None:
            return await self._run(script, args, keys)
        names = list(keys) or [self.base]
        timeout_ms = max(1, round(self.limits.wait_timeout * 1000))
        if wake is not None:
            wake_keys, seconds = wake
            reply, confirmed = await self._guard(lambda: eval_after_wake(
                self.redis, script, names, [self.base, *args], wake_keys=wake_keys, timeout=seconds,
                replicas=wanted, timeout_ms=timeout_ms))
        else:
            reply, confirmed = await self._guard(
                lambda: eval_and_wait(self.redis, script, names, [self.base, *args], wanted, timeout_ms))
        if wanted > 0 and confirmed < wanted:
            if self.on_unavailable is not None:
                self.on_unavailable()
            if undo is not None:
                with contextlib.suppress(JobStoreUnavailableError):
                    await undo(reply)
            raise job_not_replicated(wanted, confirmed, self.limits.wait_timeout)
        return reply

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
                code, status, run_at = _s(reply[1 + 3 * n]), _s(reply[2 + 3 * n]), int(reply[3 + 3 * n])
                results[i] = self._enqueue_result(job, code, status, run_at)
        return [results[i] for i in range(len(jobs))]

    def _enqueue_result(self, job: NewJob, code: str, status: str, run_at: int) -> Enqueued | StreamingError:
        if code == "ok":
            return Enqueued(job.job_id, JobStatus(status), False, run_at, job.job_type, job.priority)
        if code == "duplicate":
            return Enqueued(job.job_id, JobStatus(status), True, run_at, job.job_type, job.priority)
        if code == "unknown_type":
            return unknown_job_type(job.job_type)
        if code == "scheduled_full":
            return queue_full(job.job_type, self.limits.max_scheduled, "scheduled set")
        return queue_full(job.job_type, self.limits.max_queue_depth)

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
        return {_s(m) for m in members}

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
                job_id=_s(reply[i]), job_type=_s(reply[i + 1]), priority=Priority(_s(reply[i + 2])),
                data=reply[i + 3], attempt=int(reply[i + 4]), token=int(reply[i + 5]),
                max_attempts=int(reply[i + 6]), retry_delay_ms=int(reply[i + 7]), due_ms=int(reply[i + 8]),
                claimed_ms=now, owner=_s(reply[i + 9]) or None,
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
        return FailOutcome(_s(reply[0]), int(reply[1]), int(reply[2]))

    async def release(self, held: Sequence[tuple[str, int]]) -> list[str]:
        """Hand jobs back to the front of their queues without counting the attempt; returns their types."""
        if not held:
            return []
        args: list[Any] = []
        for job_id, token in held:
            args += [job_id, token]
        return [_s(t) for t in await self._run(self._release, args)]

    async def finish_cancelled(self, job_id: str, token: int) -> bool:
        return int(await self._run(self._finish_cancelled, [job_id, token, self.ttl_seconds])) == 1

    # ---- managing --------------------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> tuple[str, str, str]:
        """``(outcome, status, job_type)``; outcome is not_found, cancelled, cancelling or final."""
        reply = await self._run(self._cancel, [job_id, self.ttl_seconds])
        return _s(reply[0]), _s(reply[1]), _s(reply[2])

    async def get(self, job_id: str) -> JobInfo | None:
        fields: dict[bytes, bytes] = await self._guard(lambda: self.redis.hgetall(self.job_key(job_id)))
        return self._info(job_id, fields) if fields else None

    def _info(self, job_id: str, raw: dict[Any, Any]) -> JobInfo:
        f = {_s(k): v for k, v in raw.items()}

        def seconds(name: str) -> float | None:
            value = f.get(name)
            return int(value) / 1000 if value is not None else None

        result = f.get("result")
        error = f.get("error")
        worker = f.get("worker")
        owner = f.get("owner")
        return JobInfo(
            job_id=job_id, job_type=_s(f.get("type", b"")), queue=self.queue, status=JobStatus(_s(f["status"])),
            priority=Priority(_s(f.get("priority", b"normal"))), attempts=int(f.get("attempts", 0)),
            max_attempts=int(f.get("max_attempts", 1)), data=msgspec.Raw(f.get("data", NULL)),
            result=msgspec.Raw(result) if result is not None else NULL,
            error=_s(error) if error is not None else None, enqueued_at=seconds("enqueued_at"),
            run_at=seconds("run_at"), started_at=seconds("started_at"), finished_at=seconds("finished_at"),
            worker=_s(worker) if worker is not None else None, cancel_requested=f.get("cancel") == b"1",
            owner=_s(owner) if owner else None,
        )

    async def dead(self, offset: int = 0, limit: int = 100) -> tuple[list[JobInfo], int]:
        """Dead jobs, newest first, and how many there are."""
        offset, limit = max(0, offset), max(0, min(limit, 1000))

        async def read() -> tuple[list[JobInfo], int]:
            ids = [_s(i) for i in await self.redis.zrevrange(f"{self.base}dead", offset, offset + limit - 1)]
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
        return [(_s(reply[i]), _s(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def purge_dead(self, job_ids: Sequence[str] | None = None, limit: int = 1000) -> int:
        return int(await self._run(self._purge_dead, [limit, *(job_ids or [])]))

    async def stats(self) -> StoreStats:
        r = [int(x) for x in await self._run(self._stats, [])]
        return StoreStats(*r)

    # ---- the scheduler's moves -------------------------------------------------------------------------------

    async def requeue_expired(self, limit: int = 1000) -> list[Expired]:
        reply = await self._run(self._requeue_expired, [limit, self.limits.dead_letter_max, self.ttl_seconds])
        return [Expired(_s(reply[i]), _s(reply[i + 1]), _s(reply[i + 2]), int(reply[i + 3]))
                for i in range(1, len(reply), 4)]

    async def promote_due(self, limit: int = 1000) -> Promoted:
        reply = await self._run(self._promote_due, [limit])
        counts = {_s(reply[i]): int(reply[i + 1]) for i in range(3, len(reply), 2)}
        return Promoted(int(reply[0]), int(reply[1]), int(reply[2]), counts)

    async def ready_types(self) -> dict[str, int]:
        reply = await self._run(self._ready_types, [])
        return {_s(reply[i]): int(reply[i + 1]) for i in range(0, len(reply), 2)}

    # ---- recurring schedules ---------------------------------------------------------------------------------

    async def add_recurring(self, spec: RecurringJob) -> RecurringJob:
        """Create or replace a cron schedule; its first run is the next cron time from now."""
        if not _RECURRING_NAME.fullmatch(spec.name):
            raise invalid_schedule(f"recurring name {spec.name!r}: 1-100 letters, digits, '_', '-' or '.'")
        now = datetime.now(UTC)
        first = next_cron_time(spec.cron, now.timestamp())
        stored = msgspec.structs.replace(spec, next_run_at=first)

        await self._run(self._set_recurring, [spec.name, jobs_encoder.encode(stored), round(first * 1000)])
        return stored

    async def remove_recurring(self, name: str) -> bool:
        return bool(await self._run(self._remove_recurring, [name]))

    async def list_recurring(self) -> list[RecurringJob]:
        async def read() -> list[RecurringJob]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(f"{self.base}cron")
                pipe.zrange(f"{self.base}cron_due", 0, -1, withscores=True)
                specs, due = await pipe.execute()
            next_at = {_s(name): score / 1000 for name, score in due}
            out = []
            for name, raw in sorted(specs.items()):
                spec = recurring_job_decoder.decode(raw)
                out.append(msgspec.structs.replace(spec, next_run_at=next_at.get(_s(name))))
            return out

        specs: list[RecurringJob] = await self._guard(read)
        return specs

    async def fire_due_recurring(self, limit: int = 100
                                 ) -> tuple[list[tuple[RecurringJob, Enqueued | StreamingError]], int]:
        """Enqueue every due recurring job once (safe with many schedulers); returns them and the next due ms."""
        reply = await self._run(self._due_recurring, [limit])
        now_ms, next_ms = int(reply[0]), int(reply[1])
        fired: list[tuple[RecurringJob, Enqueued | StreamingError]] = []
        for i in range(2, len(reply), 2):
            name, due_ms = _s(reply[i]), int(float(reply[i + 1]))
            cron_key = f"{self.base}cron"
            raw = await self._guard(lambda: self.redis.hget(cron_key, name))  # noqa: B023 (awaited at once)
            if raw is None:
                continue
            spec = recurring_job_decoder.decode(raw)
            following = round(next_cron_time(spec.cron, max(due_ms, now_ms) / 1000) * 1000)
            next_ms = following if next_ms < 0 else min(next_ms, following)
            retry_delay_ms = round((spec.retry_delay if spec.retry_delay is not None else 0) * 1000)
            max_attempts = (spec.retry_count if spec.retry_count is not None else 0) + 1
            job_id = f"cron:{spec.name}:{due_ms}"
            out = await self._run(self._fire_recurring, [
                spec.name, due_ms, following, job_id, spec.job_type, spec.priority.value, bytes(spec.data),
                max_attempts, retry_delay_ms, self.limits.max_queue_depth, spec.owner or ""])
            if _s(out[0]) != "fired":
                continue
            job = NewJob(job_id=job_id, job_type=spec.job_type, data=b"", priority=spec.priority,
                         max_attempts=max_attempts, retry_delay_ms=retry_delay_ms, owner=spec.owner)
            fired.append((spec, self._enqueue_result(job, _s(out[1]), _s(out[2]) or "queued", now_ms)))
        return fired, next_ms


def next_cron_time(expression: str, after: float) -> float:
    """The first cron time strictly after ``after`` (unix seconds, UTC); six fields put seconds last."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise invalid_schedule(f"not a cron expression: {expression!r}")
    start = datetime.fromtimestamp(after, UTC)
    return float(croniter(expression, start).get_next(float))
