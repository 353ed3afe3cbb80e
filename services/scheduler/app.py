"""The scheduler service: durable jobs in Redis, dispatched to workers over NATS."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.errors import ErrorCode
from proto.jobs import enqueue_decoder, job_request_decoder, jobs_encoder, jobs_scheduled_decoder
from services.scheduler.api import JobsApi, bad_request
from services.scheduler.settings import SchedulerSettings
from shared.clients.agent_jobs import PlatformAgentRunner
from shared.clients.runs import RunClient
from shared.errors import StreamingError
from shared.jobs.agent_job import handle_agent_jobs
from shared.jobs.approval_job import handle_approval_deadlines
from shared.jobs.errors import scheduler_overloaded
from shared.jobs.events import JobSignals
from shared.jobs.maintenance import QueueMaintainer
from shared.jobs.metrics import SchedulerMetrics
from shared.jobs.model import RetryPolicy
from shared.jobs.processor import BackgroundProcessor
from shared.jobs.queue import JobQueue
from shared.jobs.store import JobStore
from shared.nats.conn import barrier
from shared.service.app import App
from shared.tracing import server_span


class SchedulerApp(App):
    """Maintains each queue (expired leases back, due jobs in, recurring schedules fired, idle workers nudged) and
    answers the jobs API on ``<prefix>.jobs.enqueue`` and ``<prefix>.jobs.request`` (queue group ``scheduler``)."""

    service: ClassVar[str] = "scheduler"
    uses_redis: ClassVar[bool] = True

    def __init__(self, settings: SchedulerSettings) -> None:
        super().__init__(settings)
        self.scheduler_settings = settings
        self.job_metrics = SchedulerMetrics(self.metrics.registry)
        self.queues: dict[str, JobQueue] = {}
        self.maintainers: dict[str, QueueMaintainer] = {}
        self.api: JobsApi | None = None
        self.agent_worker: BackgroundProcessor | None = None
        self._subs: list[Subscription] = []
        self._requests: set[asyncio.Task[None]] = set()
        self._stats_stop = asyncio.Event()

    def micro_metadata(self) -> dict[str, str]:
        return {"queues": ",".join(self.scheduler_settings.queues)}

    async def on_start(self) -> None:
        s = self.scheduler_settings
        retry = RetryPolicy(retry_count=s.retry_count, retry_delay=s.retry_delay, backoff=s.retry_backoff,
                            max_delay=s.retry_max_delay)
        for name in s.queues:
            store = JobStore(self.redis, queue=name, prefix=self.runtime.prefix, limits=s.limits,
                             on_unavailable=self.metrics.redis_errors.inc)  # raaf_redis_errors_total
            signals = JobSignals(self.nc, self.subjects, name, lifecycle=s.lifecycle_events)
            self.queues[name] = JobQueue(store, signals, retry)
            maintainer = QueueMaintainer(store, signals, interval=s.tick_interval, batch=s.maintenance_batch,
                                         nudge_interval=s.nudge_interval, metrics=self.job_metrics)
            self.maintainers[name] = maintainer
            self._zero_counters(name)
            self._subs.append(await self.nc.subscribe(self.subjects.job_wake(name), cb=self._on_wake))
            self.spawn(maintainer.run(), name=f"maintain:{name}")
        for code in ErrorCode:  # rejections are counted by code, not by queue
            self.job_metrics.rejected.labels(code.value)
        # Each maintenance loop and the gauges hold at most one connection at a time; requests share the rest.
        spare = self.runtime.redis_pool_size - len(s.queues) - 1
        self.api = JobsApi(self.queues, self.job_metrics, s.workers, redis_concurrency=max(1, spare))
        self._subs.append(await self.nc.subscribe(self.subjects.job_enqueue, queue="scheduler", cb=self._on_enqueue))
        self._subs.append(await self.nc.subscribe(self.subjects.job_requests, queue="scheduler",
                                                  cb=self._on_request))
        self.spawn(self._refresh_gauges(), name="gauges")
        if s.agent_jobs:
            await self._start_agent_worker()
        await barrier(self.nc)  # the server has our subscriptions before we call ourselves started

    def _zero_counters(self, queue: str) -> None:
        """Known label values start at zero, so alerts and dashboards see each series before its first event."""
        m = self.job_metrics
        m.duplicates.labels(queue)
        m.recurring_fired.labels(queue)
        for outcome in ("requeued", "dead", "cancelled"):
            m.lease_expired.labels(queue, outcome)

    async def _start_agent_worker(self) -> None:
        """The built-in ``run_agent`` and ``run_approval_deadline`` job types run here, on the first queue,
        ``BACKGROUND_WORKERS`` at once."""
        s = self.scheduler_settings
        worker = BackgroundProcessor(
            self.runtime.redis_url, workers=s.workers, retry_count=s.retry_count, retry_delay=s.retry_delay,
            retry_backoff=s.retry_backoff, retry_max_delay=s.retry_max_delay, queue_name=s.queues[0],
            prefix=self.runtime.prefix, lease_seconds=s.lease_seconds, maintenance_interval=None, limits=s.limits,
            lifecycle_events=s.lifecycle_events, nats_client=self.nc, registry=self.metrics.registry,
            worker_id=self.runtime.instance_id,
            shutdown_timeout=max(0.0, self.runtime.shutdown_timeout - 2))  # inside the service's own drain budget
        handle_agent_jobs(worker, PlatformAgentRunner(self.nc, prefix=self.runtime.prefix))
        handle_approval_deadlines(worker, RunClient(self.nc, self.nc.jetstream(), self.subjects))
        await worker.start()
        self.agent_worker = worker

    async def on_stop(self) -> None:
        # Stop taking requests, answer the ones in hand, then stop the maintenance loops.
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._requests:
            await asyncio.gather(*list(self._requests), return_exceptions=True)
        for queue in self.queues.values():
            await queue.drain()
        if self.agent_worker is not None:
            await self.agent_worker.stop()  # finish or hand back the agent jobs it runs
        for maintainer in self.maintainers.values():
            maintainer.stop()
        self._stats_stop.set()

    # ---- NATS requests -----------------------------------------------------------------------------------------

    async def _on_enqueue(self, msg: Msg) -> None:
        self._accept(msg, enqueue=True)

    async def _on_request(self, msg: Msg) -> None:
        self._accept(msg, enqueue=False)

    def _accept(self, msg: Msg, *, enqueue: bool) -> None:
        """Handle each request in its own task (so Redis calls batch across requests), up to the in-flight cap."""
        if not msg.reply:
            return
        limit = self.scheduler_settings.max_inflight_requests
        if len(self._requests) >= limit:
            self.job_metrics.rejected.labels(ErrorCode.OVERLOADED.value).inc()
            self._reply_now(msg, scheduler_overloaded(limit).to_wire())
            return
        task = self.spawn(self._handle(msg, enqueue), name="request")
        self._requests.add(task)
        self.job_metrics.inflight_requests.set(len(self._requests))
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        self.job_metrics.inflight_requests.set(len(self._requests))

    def _reply_now(self, msg: Msg, reply: Any) -> None:
        task = self.spawn(self._respond(msg, reply), name="reply")
        self._requests.add(task)
        task.add_done_callback(self._request_done)

    async def _handle(self, msg: Msg, enqueue: bool) -> None:
        assert self.api is not None
        try:
            request = enqueue_decoder.decode(msg.data) if enqueue else job_request_decoder.decode(msg.data)
        except msgspec.MsgspecError as exc:
            self.job_metrics.rejected.labels(ErrorCode.BAD_REQUEST.value).inc()
            await self._respond(msg, bad_request(exc))
            return
        with server_span("raaf.scheduler", f"jobs {request.__struct_config__.tag}", msg.headers):
            answer = await self.api.answer(request)  # a job enqueued here keeps this span's traceparent
        await self._respond(msg, answer)

    async def _respond(self, msg: Msg, reply: Any) -> None:
        try:
            await msg.respond(jobs_encoder.encode(reply))
        except Exception as exc:  # the requester's connection is gone; the job (if any) is written regardless
            self.log.debug("could not reply: %s", exc)

    async def _on_wake(self, msg: Msg) -> None:
        try:
            notice = jobs_scheduled_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            return
        maintainer = self.maintainers.get(notice.queue)
        if maintainer is not None:
            maintainer.wake(notice.run_at)

    # ---- statistics ------------------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """The ``background_processor`` section of the metrics service's stats contract.

        Queue lengths and failed (dead) jobs are read from Redis, the same on every replica; ``workers``,
        ``active_jobs`` and ``completed_jobs`` are this instance's own (its built-in ``run_agent`` jobs), so
        they add up across replicas and worker processes.
        """
        section: dict[str, Any] = {"running": not self.health.draining, "workers": 0, "active_jobs": 0,
                                   "completed_jobs": 0, "high_priority_queue": 0, "normal_priority_queue": 0,
                                   "low_priority_queue": 0, "scheduled_jobs": 0, "failed_jobs": 0}
        for queue in self.queues.values():
            s = await queue.stats()
            section["high_priority_queue"] += s.high
            section["normal_priority_queue"] += s.normal
            section["low_priority_queue"] += s.low
            section["scheduled_jobs"] += s.scheduled
            section["failed_jobs"] += s.dead
        if self.agent_worker is not None:
            section["workers"] = self.agent_worker.workers
            section["active_jobs"] = self.agent_worker.in_flight
            section["completed_jobs"] = self.agent_worker.completed
        return {"background_processor": section}

    # ---- gauges ------------------------------------------------------------------------------------------------

    async def _refresh_gauges(self) -> None:
        m = self.job_metrics
        while not self._stats_stop.is_set():
            for name, queue in self.queues.items():
                try:
                    s = await queue.stats()
                except StreamingError:
                    continue
                m.queue_length.labels(name, "high").set(s.high)
                m.queue_length.labels(name, "normal").set(s.normal)
                m.queue_length.labels(name, "low").set(s.low)
                m.scheduled.labels(name).set(s.scheduled)
                m.running.labels(name).set(s.running)
                m.dead.labels(name).set(s.dead)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stats_stop.wait(), self.scheduler_settings.stats_interval)

