"""BackgroundProcessor: the seed's Redis-backed background jobs (``handle_job``, ``enqueue_job``, ``stats`` ...)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry

from proto.jobs import JobInfo, JobStatus, Priority, RecurringJob
from proto.subjects import Subjects
from shared.jobs.errors import invalid_schedule
from shared.jobs.events import JobSignals
from shared.jobs.handler import Handler, HandlerSpec
from shared.jobs.maintenance import QueueMaintainer
from shared.jobs.metrics import WorkerMetrics
from shared.jobs.model import JobLimits, RetryPolicy, check_job_type, check_queue_name
from shared.jobs.queue import JobQueue
from shared.jobs.settings import (
    LEASE_SECONDS,
    LIFECYCLE_EVENTS,
    POOL_TIMEOUT,
    RETRY_BACKOFF,
    RETRY_COUNT,
    RETRY_DELAY,
    RETRY_MAX_DELAY,
    WORKERS,
    limits_from_env,
)
from shared.jobs.store import JobStore
from shared.jobs.worker import JobWorker
from shared.nats.auth import NatsAuth, redacted
from shared.nats.conn import connect_nats
from shared.redisconn import RedisClient, connect_redis
from shared.service.overrides import configured, configured_environ
from shared.service.settings import NATS_URL, PREFIX, REDIS_URL, SHUTDOWN_TIMEOUT, Env, read_nats_auth

log = logging.getLogger("raaf.jobs")
H = TypeVar("H", bound=Handler)


class BackgroundProcessor:
    """Durable background jobs in Redis, run by this process's handlers (the seed's ``BackgroundProcessor``).

    ``workers`` is how many jobs run at once here. Producers only need ``enqueue_job`` / ``schedule_job`` (they
    connect on first use); workers register handlers with ``handle_job`` and call ``start()``. Every process that
    starts also keeps the queue moving (expired leases, due jobs, recurring schedules) every
    ``maintenance_interval`` seconds; the scheduler service does the same, faster and with a NATS API.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        workers: int = WORKERS.default,
        retry_count: int = RETRY_COUNT.default,
        retry_delay: float = RETRY_DELAY.default,
        queue_name: str = "jobs",
        nats_url: str | None = None,
        prefix: str | None = None,
        lease_seconds: float = LEASE_SECONDS.default,
        poll_interval: float | None = None,
        maintenance_interval: float | None = 1.0,
        retry_backoff: float = RETRY_BACKOFF.default,
        retry_max_delay: float = RETRY_MAX_DELAY.default,
        limits: JobLimits | None = None,
        lifecycle_events: bool = LIFECYCLE_EVENTS.default,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT.default,
        nats_connect_timeout: float = 5.0,
        nats_auth: NatsAuth | None = None,
        pool_timeout: float | None = None,
        redis_client: RedisClient | None = None,
        nats_client: NATS | None = None,
        registry: CollectorRegistry | None = None,
        worker_id: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if not 0.1 <= lease_seconds <= 3600:
            raise ValueError("lease_seconds must be 0.1..3600")
        # Left out: from raaf.configure(...) / the environment (background.redis_url, NATS_URL, platform.prefix).
        redis_url = configured(REDIS_URL) if redis_url is None else redis_url
        nats_url = configured_environ().get("NATS_URL") if nats_url is None else nats_url
        prefix = configured(PREFIX) if prefix is None else prefix
        self.pool_timeout = configured(POOL_TIMEOUT) if pool_timeout is None else pool_timeout
        self.redis_url = redis_url
        self.nats_url = nats_url
        self.workers = workers
        self.queue_name = check_queue_name(queue_name)
        self.subjects = Subjects(prefix)
        self.prefix = prefix
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.maintenance_interval = maintenance_interval
        self.retry = RetryPolicy(retry_count=retry_count, retry_delay=retry_delay, backoff=retry_backoff,
                                 max_delay=retry_max_delay)
        self.limits = limits or JobLimits()
        self.lifecycle_events = lifecycle_events
        self.shutdown_timeout = shutdown_timeout
        self.nats_connect_timeout = nats_connect_timeout
        self.nats_auth = nats_auth
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.metrics = WorkerMetrics(registry) if registry is not None else None
        self._redis = redis_client
        self._owns_redis = redis_client is None
        self._nc = nats_client
        self._owns_nats = nats_client is None
        self._handlers: dict[str, HandlerSpec] = {}
        self._queue: JobQueue | None = None
        self._worker: JobWorker | None = None
        self._maintainer: QueueMaintainer | None = None
        self._maintenance_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._running = False
        self._completed = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BackgroundProcessor:
        """Settings from the environment: ``REDIS_URL``, ``NATS_URL``, ``RAAF_PREFIX``, ``BACKGROUND_*``, ``JOBS_*``."""
        env = Env(configured_environ() if environ is None else environ)  # raaf.configure(...) counts too
        options: dict[str, Any] = {
            "redis_url": REDIS_URL.read(env),
            "nats_url": env.optional(NATS_URL.env),  # unset: no NATS (jobs still run, polling Redis)
            "prefix": PREFIX.read(env),
            "workers": WORKERS.read(env),
            "retry_count": RETRY_COUNT.read(env),
            "retry_delay": RETRY_DELAY.read(env),
            "queue_name": env.string("JOBS_QUEUE_NAME", "jobs"),
            "lease_seconds": LEASE_SECONDS.read(env),
            "retry_backoff": RETRY_BACKOFF.read(env),
            "retry_max_delay": RETRY_MAX_DELAY.read(env),
            "lifecycle_events": LIFECYCLE_EVENTS.read(env),
            "shutdown_timeout": SHUTDOWN_TIMEOUT.read(env),
            "pool_timeout": POOL_TIMEOUT.read(env),
            "limits": limits_from_env(env),
            "worker_id": env.optional("INSTANCE_ID"),
            "nats_auth": read_nats_auth(env),  # NATS_USER / NATS_PASSWORD / NATS_TLS_* (the `client` user)
        }
        options.update(overrides)
        return cls(**options)

    # ---- handlers ------------------------------------------------------------------------------------------------

    @overload
    def handle_job(self, job_type: str, handler: None = None, *, timeout: float | None = None) -> Callable[[H], H]: ...

    @overload
    def handle_job(self, job_type: str, handler: H, *, timeout: float | None = None) -> H: ...

    def handle_job(self, job_type: str, handler: H | None = None, *,
                   timeout: float | None = None) -> H | Callable[[H], H]:
        """Register the handler of a job type: ``processor.handle_job("t", fn)`` or ``@processor.handle_job("t")``.

        The handler gets the job's data (decoded JSON) and may be ``async`` or plain (run in a thread). Its return
        value is stored as the job's result; raising retries the job (``PermanentJobError``, which is any
        ``BadRequestError``, or a jobs error: no retry). Inside it,
        ``current_job()`` tells which job and attempt this is.
        """
        check_job_type(job_type)
        if self._running:
            raise RuntimeError("register handlers before start()")

        def register(fn: H) -> H:
            self._handlers[job_type] = HandlerSpec.of(job_type, fn, timeout)
            return fn

        return register(handler) if handler is not None else register

    @property
    def job_types(self) -> list[str]:
        return list(self._handlers)

    # ---- connections and lifecycle -------------------------------------------------------------------------------

    async def _connect(self) -> JobQueue:
        if self._queue is not None:
            return self._queue
        async with self._connect_lock:
            if self._queue is None:
                if self._redis is None:
                    self._redis = connect_redis(self.redis_url, pool_size=max(8, min(64, self.workers + 4)),
                                                wait_for_connection=self.pool_timeout)
                if self._nc is None and self.nats_url:
                    self._nc = await self._connect_nats(self.nats_url)
                store = JobStore(self._redis, queue=self.queue_name, prefix=self.prefix, limits=self.limits)
                signals = JobSignals(self._nc, self.subjects, self.queue_name, lifecycle=self.lifecycle_events)
                self._queue = JobQueue(store, signals, self.retry)
        return self._queue

    async def _connect_nats(self, url: str) -> NATS | None:
        """NATS only speeds things up (nudges, events): if it is unreachable, carry on polling Redis."""
        try:
            return await asyncio.wait_for(
                connect_nats(url, name=f"{self.prefix}-jobs:{self.worker_id}", auth=self.nats_auth),
                self.nats_connect_timeout)
        except TimeoutError:
            log.warning("NATS at %s unreachable after %.0fs: running without it (workers poll Redis)", redacted(url),
                        self.nats_connect_timeout)
            return None

    @property
    def nats(self) -> NATS | None:
        """This processor's NATS connection, once connected (None without NATS)."""
        return self._nc

    @property
    def queue(self) -> JobQueue:
        if self._queue is None:
            raise RuntimeError("not connected yet: call start() or enqueue something first")
        return self._queue

    async def start(self) -> None:
        """Start running handlers (if any were registered) and maintaining the queue."""
        if self._running:
            return
        queue = await self._connect()
        self._running = True
        if self._handlers:
            poll = self.poll_interval if self.poll_interval is not None else (1.0 if self._nc is not None else 0.1)
            self._worker = JobWorker(
                queue.store, queue.signals, self._handlers, concurrency=self.workers,
                lease_seconds=self.lease_seconds, retry=self.retry, worker_id=self.worker_id, poll_interval=poll,
                nc=self._nc, subjects=self.subjects, metrics=self.metrics)
            await self._worker.start()
        if self.maintenance_interval:
            self._maintainer = QueueMaintainer(queue.store, queue.signals, interval=self.maintenance_interval,
                                               nudge_interval=max(1.0, self.maintenance_interval))
            self._maintenance_task = asyncio.create_task(self._maintainer.run(), name="raaf-jobs:maintenance")
        log.info("background processor started", extra={"queue": self.queue_name, "types": self.job_types,
                                                         "workers": self.workers, "worker": self.worker_id})

    async def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish for up to ``timeout`` s (default ``shutdown_timeout``), hand
        the rest back to their queues, then close the connections this processor opened."""
        if self._worker is not None:
            await self._worker.stop(self.shutdown_timeout if timeout is None else timeout)
            self._completed += self._worker.processed
            self._worker = None
        if self._maintainer is not None:
            self._maintainer.stop()
        if self._maintenance_task is not None:
            await asyncio.gather(self._maintenance_task, return_exceptions=True)
            self._maintenance_task = None
        if self._queue is not None:
            await self._queue.drain()
        self._running = False
        if self._nc is not None and self._owns_nats:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.drain(), 5)
            self._nc = None
        if self._redis is not None and self._owns_redis:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None
        self._queue = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def in_flight(self) -> int:
        """Jobs this process holds right now."""
        return self._worker.in_flight if self._worker is not None else 0

    @property
    def completed(self) -> int:
        """Job attempts this process finished since it started (any outcome)."""
        return self._completed + (self._worker.processed if self._worker is not None else 0)

    # ---- producing -----------------------------------------------------------------------------------------------

    async def enqueue_job(self, job_type: str, data: Any = None, *, priority: Priority | str = Priority.NORMAL,
                          job_id: str | None = None, retry_count: int | None = None,
                          retry_delay: float | None = None, owner: str | None = None) -> str:
        """Enqueue a job to run as soon as a worker is free; returns its id.

        With ``job_id`` the call is idempotent: while a job with that id exists (until its result expires),
        enqueueing it again writes nothing and the job runs once. ``owner``: the identity it belongs to.
        """
        queue = await self._connect()
        job = queue.build(job_type, data, priority=priority, job_id=job_id, retry_count=retry_count,
                          retry_delay=retry_delay, registers_type=job_type in self._handlers, owner=owner)
        return (await queue.enqueue(job)).job_id

    async def schedule_job(self, job_type: str, data: Any = None, *, at: datetime | float | None = None,
                           in_: float | None = None, priority: Priority | str = Priority.NORMAL,
                           job_id: str | None = None, retry_count: int | None = None,
                           retry_delay: float | None = None) -> str:
        """Enqueue a job to run at ``at`` (aware datetime or unix seconds) or in ``in_`` seconds; returns its id."""
        if at is None and in_ is None:
            raise invalid_schedule("schedule_job needs at= or in_=")
        queue = await self._connect()
        job = queue.build(job_type, data, priority=priority, job_id=job_id, at=at, in_=in_,
                          retry_count=retry_count, retry_delay=retry_delay,
                          registers_type=job_type in self._handlers)
        result = await queue.enqueue(job)
        if self._maintainer is not None and result.status is JobStatus.SCHEDULED:
            self._maintainer.wake(result.run_at_ms / 1000)
        return result.job_id

    async def schedule_recurring(self, name: str, job_type: str, data: Any = None, *, cron: str,
                                 priority: Priority | str = Priority.NORMAL, retry_count: int | None = None,
                                 retry_delay: float | None = None, owner: str | None = None) -> RecurringJob:
        """Create or replace a cron schedule (UTC; five fields, or six with seconds last); every job it fires
        belongs to ``owner``."""
        queue = await self._connect()
        spec = await queue.add_recurring(name, job_type, data, cron=cron, priority=priority,
                                         retry_count=retry_count, retry_delay=retry_delay, owner=owner)
        if self._maintainer is not None and spec.next_run_at is not None:
            self._maintainer.wake(spec.next_run_at)
        return spec

    async def remove_recurring(self, name: str) -> None:
        await (await self._connect()).remove_recurring(name)

    async def list_recurring(self) -> list[RecurringJob]:
        return await (await self._connect()).list_recurring()

    # ---- looking up and managing ---------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobInfo | None:
        """The job's record (status, attempts, result, error ...), or None once it expired or never existed."""
        return await (await self._connect()).store.get(job_id)

    async def job_result(self, job_id: str, *, timeout: float = 0.0) -> Any:
        """The job's result, waiting up to ``timeout`` s for it to finish (``JobTimeoutError`` if it does not;
        ``JobFailedError`` if it ended dead or cancelled)."""
        return await (await self._connect()).result(job_id, timeout)

    async def wait_for_job(self, job_id: str, *, timeout: float) -> JobInfo:
        return await (await self._connect()).wait(job_id, timeout)

    async def cancel_job(self, job_id: str) -> JobStatus:
        return await (await self._connect()).cancel(job_id)

    async def dead_jobs(self, *, limit: int = 100, offset: int = 0) -> list[JobInfo]:
        """Jobs that failed for good, newest first."""
        jobs, _ = await (await self._connect()).dead(offset, limit)
        return jobs

    async def retry_dead_jobs(self, job_ids: Sequence[str] | None = None) -> int:
        """Requeue dead jobs with fresh attempts (all, up to 1000 per call, when ``job_ids`` is None)."""
        return await (await self._connect()).retry_dead(job_ids)

    async def purge_dead_jobs(self, job_ids: Sequence[str] | None = None) -> int:
        return await (await self._connect()).purge_dead(job_ids)

    async def stats_section(self) -> dict[str, Any]:
        """This process's ``background_processor`` section of the metrics service's stats contract: its own
        workers, jobs in hand and attempts finished, and the queue's lengths read from Redis."""
        s = await (await self._connect()).stats()
        return {"running": self._running, "workers": self.workers if self._handlers else 0,
                "active_jobs": self.in_flight, "completed_jobs": self.completed, "high_priority_queue": s.high,
                "normal_priority_queue": s.normal, "low_priority_queue": s.low, "scheduled_jobs": s.scheduled,
                "failed_jobs": s.dead}

    async def stats(self) -> dict[str, Any]:
        """The seed's shape: ``running``, ``workers``, ``high/normal/low_priority_queue``, ``scheduled_jobs``,
        ``failed_jobs`` (the dead-letter store), plus ``running_jobs`` (leased now, all workers),
        ``succeeded_jobs``, ``recurring_schedules`` and this process's ``in_flight``."""
        s = await (await self._connect()).stats()
        return {
            "running": self._running,
            "workers": self.workers,
            "high_priority_queue": s.high,
            "normal_priority_queue": s.normal,
            "low_priority_queue": s.low,
            "scheduled_jobs": s.scheduled,
            "failed_jobs": s.dead,
            "running_jobs": s.running,
            "succeeded_jobs": s.succeeded,
            "recurring_schedules": s.recurring,
            "in_flight": self.in_flight,
            "queue": self.queue_name,
        }


