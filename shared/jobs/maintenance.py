"""Queue maintenance: return expired leases, move due jobs, fire recurring schedules, nudge idle workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from proto.jobs import JobCancelled, JobDead, JobEnqueued, JobRetried
from shared.errors import StreamingError
from shared.jobs.errors import JobStoreUnavailableError
from shared.jobs.events import JobSignals
from shared.jobs.metrics import SchedulerMetrics
from shared.jobs.store import JobStore
from shared.jobs.store_results import Enqueued

log = logging.getLogger("raaf.jobs")


class QueueMaintainer:
    """One loop per queue; any number may run at once (every move is an atomic, idempotent script).

    It sleeps until the next delayed job or recurring schedule is due, but never longer than ``interval``
    (which bounds how late an expired lease is noticed), and wakes early on a ``JobsScheduled`` notice.
    """

    def __init__(self, store: JobStore, signals: JobSignals, *, interval: float, batch: int = 1000,
                 nudge_interval: float = 1.0, metrics: SchedulerMetrics | None = None) -> None:
        self.store = store
        self.signals = signals
        self.interval = interval
        self.batch = batch
        self.nudge_interval = nudge_interval
        self.metrics = metrics
        self.queue = store.queue
        self._wake = asyncio.Event()
        self._stopping = False
        self._sleep_until = 0.0
        self._last_nudge = 0.0
        self.passes = 0

    def wake(self, run_at: float | None = None) -> None:
        """A job is due at ``run_at`` (unix seconds): make sure we are awake by then."""
        if run_at is None or run_at < self._sleep_until:
            self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                delay = await self.tick()
                failures = 0
            except JobStoreUnavailableError as exc:
                failures += 1
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("queue %s maintenance: Redis unavailable (%s)", self.queue, exc)
                delay = min(1.0, self.interval * 2 ** min(failures, 5))
            except Exception:
                log.exception("queue %s maintenance pass failed", self.queue)
                delay = 1.0
            if delay > 0 and not self._stopping:
                self._sleep_until = time.time() + delay
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._sleep_until = 0.0

    async def tick(self) -> float:
        """One pass; returns how long to sleep before the next."""
        started = time.perf_counter()
        self.passes += 1
        ready: dict[str, int] = {}
        events: list[Any] = []
        now = time.time()

        expired = await self.store.requeue_expired(self.batch)
        for job in expired:
            if self.metrics is not None:
                self.metrics.lease_expired.labels(self.queue, job.outcome).inc()
            if job.outcome == "requeued":
                events.append(JobRetried(queue=self.queue, job_id=job.job_id, job_type=job.job_type,
                                         attempt=job.attempts, reason="lease_expired", at=now))
            elif job.outcome == "dead":
                events.append(JobDead(queue=self.queue, job_id=job.job_id, job_type=job.job_type,
                                      attempts=job.attempts, error="lease expired", at=now))
            else:
                events.append(JobCancelled(queue=self.queue, job_id=job.job_id, job_type=job.job_type, at=now))
        if expired:
            log.info("queue %s: %d expired leases handled", self.queue, len(expired))

        promoted = await self.store.promote_due(self.batch)
        promoted_at = time.perf_counter()
        if promoted.counts and self.metrics is not None:
            self.metrics.promoted.labels(self.queue).inc(sum(promoted.counts.values()))
            self.metrics.lateness.observe(max(0.0, (promoted.now_ms - promoted.earliest_ms) / 1000))

        fired, next_recurring_ms = await self.store.fire_due_recurring()
        for spec, result in fired:
            if isinstance(result, StreamingError):
                log.warning("recurring %s not enqueued: %s", spec.name, result)
                continue
            if self.metrics is not None:
                self.metrics.recurring_fired.labels(self.queue).inc()
            if not result.duplicate:
                events.append(self._enqueued_event(result, now))

        if time.monotonic() - self._last_nudge >= self.nudge_interval:
            # The scripts that made jobs ready woke idle workers themselves (wake tokens). Still, re-nudge every
            # type with ready jobs, so a job whose token went to a worker that then filled up (or an idle worker
            # that waits without a token) is picked up within ``nudge_interval``.
            self._last_nudge = time.monotonic()
            for job_type, depth in (await self.store.ready_types()).items():
                ready[job_type] = max(ready.get(job_type, 0), depth)

        await self.signals.ready(ready)
        await self.signals.events(events)
        if self.metrics is not None:
            self.metrics.tick.observe(time.perf_counter() - started)

        more = len(expired) >= self.batch or sum(promoted.counts.values()) >= self.batch
        if more:
            return 0.0
        upcoming = [ms for ms in (promoted.next_due_ms, next_recurring_ms) if ms >= 0]
        if not upcoming:
            return self.interval
        since = time.perf_counter() - promoted_at
        return max(0.0, min(self.interval, (min(upcoming) - promoted.now_ms) / 1000 - since))

    def _enqueued_event(self, result: Enqueued, now: float) -> JobEnqueued:
        return JobEnqueued(queue=self.queue, job_id=result.job_id, job_type=result.job_type,
                           priority=result.priority, at=now)
