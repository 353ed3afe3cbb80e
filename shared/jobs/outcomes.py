"""A finished job's outcome: written to Redis (retried while Redis is away, within the lease), then announced."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from proto.jobs import JobCancelled, JobDead, JobFailed, JobRetried, JobSucceeded
from shared.jobs.batching import Batcher
from shared.jobs.errors import JobStoreUnavailableError
from shared.jobs.events import JobSignals
from shared.jobs.handler import HeldJob
from shared.jobs.metrics import WorkerMetrics
from shared.jobs.model import RetryPolicy
from shared.jobs.store import JobStore

log = logging.getLogger("raaf.jobs")


class JobOutcomes:
    """Records successes (batched across concurrent jobs), failures and cancellations; ``forget`` each job after."""

    def __init__(self, store: JobStore, signals: JobSignals, *, retry: RetryPolicy, lease_seconds: float,
                 metrics: WorkerMetrics | None, forget: Callable[[HeldJob, str], None]) -> None:
        self.store = store
        self.signals = signals
        self.retry = retry
        self.lease_seconds = lease_seconds
        self.metrics = metrics
        self.queue = store.queue
        self._forget = forget
        self._completer: Batcher[tuple[str, int, bytes], bool] = Batcher(self._record_successes, max_batch=500)

    async def drain(self) -> None:
        """Wait for the success writes in flight."""
        await self._completer.drain()

    async def succeeded(self, held: HeldJob, result: bytes, duration: float) -> None:
        job = held.job
        recorded = await self._completer.submit((job.job_id, job.token, result))
        self._forget(held, "succeeded" if recorded else "lost")
        if recorded:
            await self.signals.event(JobSucceeded(queue=self.queue, job_id=job.job_id, job_type=job.job_type,
                                                  attempt=job.attempt, duration=duration, at=time.time()))

    async def _record_successes(self, done: Sequence[tuple[str, int, bytes]]) -> list[bool]:
        recorded: list[bool] = await self._with_retry(lambda: self.store.complete(done), default=[False] * len(done))
        return recorded

    async def _with_retry(self, call: Callable[[], Awaitable[Any]], *, default: Any) -> Any:
        """Retry an outcome write while Redis is away, for as long as the lease could still be ours."""
        deadline = time.monotonic() + self.lease_seconds
        delay = 0.05
        while True:
            try:
                return await call()
            except JobStoreUnavailableError as exc:
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                if time.monotonic() + delay > deadline:
                    log.warning("gave up recording a job outcome (%s); the job returns when its lease expires", exc)
                    return default
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def failed(self, held: HeldJob, error: str, *, retry: bool, duration: float | None = None) -> None:
        job = held.job
        delay = self.retry.delay_after(job.attempt, job.retry_delay_ms / 1000)
        result = await self._with_retry(
            lambda: self.store.fail(job.job_id, job.token, error, retry=retry, delay_ms=round(delay * 1000)),
            default=None)
        self._forget(held, "failed" if result is not None and result.outcome != "lost" else "lost")
        if result is None or result.outcome == "lost":
            return
        now = time.time()
        will_retry = result.outcome != "dead"
        events: list[Any] = [JobFailed(queue=self.queue, job_id=job.job_id, job_type=job.job_type,
                                       attempt=job.attempt, error=error, will_retry=will_retry,
                                       duration=duration, at=now)]
        if will_retry:
            events.append(JobRetried(queue=self.queue, job_id=job.job_id, job_type=job.job_type, attempt=job.attempt,
                                     reason="error", run_at=result.run_at_ms / 1000, at=now))
        else:
            events.append(JobDead(queue=self.queue, job_id=job.job_id, job_type=job.job_type,
                                  attempts=result.attempts, error=error, at=now))
        await self.signals.events(events)
        if result.outcome == "scheduled":
            await self.signals.scheduled(result.run_at_ms)

    async def cancelled(self, held: HeldJob) -> None:
        job = held.job
        recorded = await self._with_retry(lambda: self.store.finish_cancelled(job.job_id, job.token), default=False)
        self._forget(held, "cancelled" if recorded else "lost")
        if recorded:
            await self.signals.event(JobCancelled(queue=self.queue, job_id=job.job_id, job_type=job.job_type,
                                                  at=time.time()))
