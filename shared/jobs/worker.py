"""The worker engine: claim jobs with a lease, run their handlers, renew the leases, hand back on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.jobs import JobStarted, job_cancel_decoder
from proto.subjects import Subjects
from shared.errors import StreamingError
from shared.jobs.errors import JobStoreUnavailableError
from shared.jobs.events import JobSignals
from shared.jobs.handler import HandlerSpec, HeldJob, run_handler
from shared.jobs.metrics import WorkerMetrics
from shared.jobs.model import RetryPolicy
from shared.jobs.outcomes import JobOutcomes
from shared.jobs.store import JobStore
from shared.jobs.store_results import ClaimedJob
from shared.nats.conn import barrier
from shared.tracing import TRACING
from shared.tracing.jobs import job_outcome, job_span

log = logging.getLogger("raaf.jobs")


class JobWorker:
    """Runs handlers for one queue's job types with at most ``concurrency`` at once.

    Redis is the only truth: a claim takes jobs atomically under a lease that a background loop renews every
    third of its length. An idle worker's claim waits inside Redis (``BLPOP`` on its types' wake lists, which
    every script that makes jobs ready pushes to) and runs there the moment a job arrives, or after the poll
    interval; a NATS nudge (``JobsReady``) ends the wait early. A job whose lease cannot be renewed before it
    runs out is abandoned here (another worker may have it by then).
    """

    def __init__(self, store: JobStore, signals: JobSignals, handlers: dict[str, HandlerSpec], *,
                 concurrency: int, lease_seconds: float, retry: RetryPolicy, worker_id: str,
                 poll_interval: float, nc: NATS | None, subjects: Subjects,
                 metrics: WorkerMetrics | None = None, claim_batch: int = 200) -> None:
        self.store = store
        self.signals = signals
        self.handlers = handlers
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.lease_ms = round(lease_seconds * 1000)
        self.retry = retry
        self.worker_id = worker_id
        self.poll_interval = poll_interval
        self.nc = nc
        self.subjects = subjects
        self.metrics = metrics
        self.claim_batch = claim_batch
        self.queue = store.queue
        self.max_result_bytes = store.limits.max_payload_bytes
        self._held: dict[str, HeldJob] = {}
        self._running = 0
        self._wake = asyncio.Event()
        # Longest wait in Redis for a wake token, within the socket timeout (redisconn: 5 s); then it claims anyway.
        self._block_seconds = min(2.0, max(0.01, poll_interval))
        self._blocking = False  # a claim is waiting in Redis for a wake token
        self._woken = False  # and wake_worker was already asked to end that wait
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[Subscription] = []
        self._types = list(handlers)
        self._rotation = 0
        self._pool: ThreadPoolExecutor | None = None
        self._outcomes = JobOutcomes(store, signals, retry=retry, lease_seconds=lease_seconds, metrics=metrics,
                                     forget=self._forget)
        self._last_renewed = time.monotonic()
        self._loops: list[asyncio.Task[None]] = []
        self.processed = 0

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.register_types(self._types)
        if any(not spec.is_async for spec in self.handlers.values()):
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="raaf-job")
        if self.nc is not None:
            for job_type in self._types:
                self._subs.append(await self.nc.subscribe(
                    self.subjects.job_dispatch_queue(self.queue, job_type),
                    queue=self.subjects.job_workers_group(self.queue, job_type), cb=self._on_nudge))
            self._subs.append(await self.nc.subscribe(self.subjects.job_cancel(self.queue), cb=self._on_cancel))
            await barrier(self.nc)  # nudges reach us as soon as start() returns
        self._last_renewed = time.monotonic()
        self._loops = [asyncio.create_task(self._claim_loop(), name="raaf-jobs:claim"),
                       asyncio.create_task(self._renew_loop(), name="raaf-jobs:renew")]

    async def stop(self, timeout: float) -> None:
        """Stop claiming; let running handlers finish for up to ``timeout`` s; hand the rest back to Redis."""
        self._stopping = True
        self._wake.set()
        self._slot_freed.set()
        await self._end_wait()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the connection is already gone: nothing to unsubscribe from
                log.debug("unsubscribe failed: %s", exc)
        self._subs.clear()
        claim = self._loops[0] if self._loops else None
        if claim is not None:
            await asyncio.gather(claim, return_exceptions=True)
        running = [h.task for h in self._held.values() if h.task is not None and not h.task.done()]
        if running:
            _, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                await self._hand_back(pending)
        await self._outcomes.drain()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _hand_back(self, pending: set[asyncio.Task[None]]) -> None:
        # Jobs past their handler are only writing their outcome: let them finish rather than run twice.
        handing = [h for h in self._held.values() if h.task in pending and h.in_handler]
        recording = [h.task for h in self._held.values() if h.task in pending and not h.in_handler]
        for held in handing:
            held.stop_reason = "handback"
            if held.entered and held.task is not None:
                held.task.cancel()
        await asyncio.gather(*(h.task for h in handing if h.task is not None), return_exceptions=True)
        # A sync handler's thread cannot be stopped: its job is not handed back but left to its lease.
        back = [h for h in handing if self.handlers[h.job.job_type].is_async]
        for held in handing:
            self._held.pop(held.job.job_id, None)
        try:
            await self.store.release([(h.job.job_id, h.job.token) for h in back])
        except StreamingError as exc:
            log.warning("could not hand back %d jobs (%s); they return when their leases expire", len(back), exc)
        if self.metrics is not None:
            for held in back:
                self.metrics.processed.labels(held.job.job_type, "handed_back").inc()
        log.info("handed back %d running jobs", len(back))
        await asyncio.gather(*(t for t in recording if t is not None), return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._held)

    # ---- NATS callbacks ----------------------------------------------------------------------------------------

    async def _on_nudge(self, msg: Msg) -> None:
        self._wake.set()
        await self._end_wait()

    async def _end_wait(self) -> None:
        """Have a claim that waits in Redis for a wake token run now."""
        if self._blocking and not self._woken:
            self._woken = True
            try:
                await self.store.wake_worker(self.worker_id)
            except StreamingError as exc:  # then it runs when its wait times out
                log.debug("could not wake the waiting claim: %s", exc)

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            request = job_cancel_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        held = self._held.get(request.job_id)
        if held is not None:
            self._interrupt(held, "cancel")

    def _interrupt(self, held: HeldJob, reason: str) -> None:
        if held.stop_reason is None and held.in_handler:
            held.stop_reason = reason
            if held.entered and held.task is not None:
                held.task.cancel()

    # ---- claiming ----------------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        idle = False  # the last claim came back short: the queues were empty, so the next one waits for a token
        while not self._stopping:
            free = self.concurrency - self._running
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            want = min(free, self.claim_batch)
            block = self._block_seconds if idle and not self._wake.is_set() else 0.0
            self._wake.clear()
            self._rotation = (self._rotation + 1) % len(self._types)
            types = self._types[self._rotation:] + self._types[: self._rotation]
            try:
                self._blocking, self._woken = block > 0, False
                jobs = await self.store.claim(types, want, self.worker_id, self.lease_ms, block=block)
                failures = 0
            except JobStoreUnavailableError as exc:
                failures += 1
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("claim failed (%s); retrying", exc)
                await self._sleep_or_wake(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            finally:
                self._blocking = False
            if self.metrics is not None:
                self.metrics.claims.inc()
            if self._stopping and jobs:  # claimed while stop() woke the wait: they never started, hand them back
                await self._release_unstarted(jobs)
                break
            if jobs:
                self._begin(jobs)
            idle = len(jobs) < want

    async def _release_unstarted(self, jobs: list[ClaimedJob]) -> None:
        try:
            await self.store.release([(job.job_id, job.token) for job in jobs])
        except StreamingError as exc:
            log.warning("could not hand back %d jobs (%s); they return when their leases expire", len(jobs), exc)

    async def _sleep_or_wake(self, seconds: float) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _begin(self, jobs: list[ClaimedJob]) -> None:
        now = time.time()
        started = []
        for job in jobs:
            held = HeldJob(job)
            self._held[job.job_id] = held
            self._running += 1
            held.task = asyncio.create_task(self._execute(held))
            waited = max(0.0, (job.claimed_ms - job.due_ms) / 1000)
            if self.metrics is not None:
                self.metrics.pickup.labels(job.job_type).observe(waited)
            started.append(JobStarted(queue=self.queue, job_id=job.job_id, job_type=job.job_type,
                                      attempt=job.attempt, worker=self.worker_id, waited=waited, at=now))
        if self.metrics is not None:
            self.metrics.in_flight.set(len(self._held))
        self._spawn(self.signals.events(started))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- running -----------------------------------------------------------------------------------------------

    async def _execute(self, held: HeldJob) -> None:
        held.entered = True
        job = held.job
        try:
            kind, value = await (self._run_traced(held) if TRACING.on else self._run_handler(held))
        finally:
            held.in_handler = False
            self._running -= 1
            self._slot_freed.set()
        duration = time.perf_counter() - held.started
        if self.metrics is not None:
            self.metrics.duration.labels(job.job_type).observe(duration)
        if kind == "ok":
            await self._outcomes.succeeded(held, value, duration)
        elif kind in ("error", "permanent"):
            await self._outcomes.failed(held, str(value), retry=kind == "error", duration=duration)
        elif kind == "cancel":
            await self._outcomes.cancelled(held)
        elif kind == "lost":
            self._forget(held, "lost")
        # handback: stop() releases the job

    async def _run_traced(self, held: HeldJob) -> tuple[str, Any]:
        """The handler in its span, linked to the span that enqueued the job."""
        job = held.job
        try:
            enqueued_by = await self.store.trace_of(job.job_id)
        except Exception:
            enqueued_by = None
        with job_span(queue=self.queue, job_id=job.job_id, job_type=job.job_type, attempt=job.attempt,
                      enqueued_by=enqueued_by) as span:
            kind, value = await self._run_handler(held)
            job_outcome(span, kind, value)
            return kind, value

    def _run_handler(self, held: HeldJob) -> Coroutine[Any, Any, tuple[str, Any]]:
        return run_handler(held, self.handlers[held.job.job_type], queue=self.queue, pool=self._pool,
                           max_result_bytes=self.max_result_bytes)

    def _forget(self, held: HeldJob, outcome: str) -> None:
        self._held.pop(held.job.job_id, None)
        self.processed += 1
        if self.metrics is not None:
            self.metrics.processed.labels(held.job.job_type, outcome).inc()
            self.metrics.in_flight.set(len(self._held))

    # ---- leases ------------------------------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            held = list(self._held.values())
            sent = time.monotonic()
            if not held:
                self._last_renewed = sent
                continue
            try:
                # A cut network can hang a call for the socket timeout: never wait past the next renewal.
                states = await asyncio.wait_for(
                    self.store.renew([(h.job.job_id, h.job.token) for h in held], self.lease_ms), interval)
            except (JobStoreUnavailableError, TimeoutError) as exc:
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                # Waiting another interval could outlive the lease: stop the jobs before someone else gets them.
                if time.monotonic() + interval >= self._last_renewed + self.lease_seconds:
                    log.warning("cannot renew leases (%s): abandoning %d jobs", exc or "timed out", len(held))
                    for h in held:
                        self._abandon(h)
                continue
            self._last_renewed = sent
            for h, state in zip(held, states, strict=True):
                if state == 0:
                    self._abandon(h)
                elif state == 2:
                    self._interrupt(h, "cancel")

    def _abandon(self, held: HeldJob) -> None:
        """The lease is (or may be) gone: stop the handler and record nothing."""
        if held.in_handler and held.stop_reason in (None, "cancel"):
            held.stop_reason = "lost"
            if held.entered and held.task is not None:
                held.task.cancel()
        # Past its handler, the outcome is being written, and that write checks the lease itself.
