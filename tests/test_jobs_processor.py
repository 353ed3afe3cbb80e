"""BackgroundProcessor end to end with the scheduler service, real NATS and real Valkey."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from proto.jobs import JobStatus, job_lifecycle_decoder
from raaf.jobs import (
    BackgroundProcessor,
    JobFailedError,
    JobNotCancellableError,
    PermanentJobError,
    UnknownJobTypeError,
    current_job,
)
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.env import service_env
from tests.support.waiting import eventually

MakeProcessor = Callable[..., BackgroundProcessor]


@pytest.fixture
async def scheduler(nats_server: NatsServer, redis_server: ValkeyServer, prefix: str,
                    start_app: Callable[[App], Awaitable[App]]) -> SchedulerApp:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05",
                      JOBS_NUDGE_INTERVAL="0.2")
    app = await start_app(SchedulerApp(SchedulerSettings.from_env(env)))
    assert isinstance(app, SchedulerApp)
    return app


@pytest.fixture
async def make_processor(nats_server: NatsServer, redis_server: ValkeyServer,
                         prefix: str) -> AsyncIterator[MakeProcessor]:
    made: list[BackgroundProcessor] = []

    def make(**kw: Any) -> BackgroundProcessor:
        options: dict[str, Any] = {"nats_url": nats_server.url, "prefix": prefix, "retry_delay": 0.05,
                                   "lease_seconds": 3.0, "maintenance_interval": None, **kw}
        processor = BackgroundProcessor(redis_server.url, **options)
        made.append(processor)
        return processor

    yield make
    for processor in reversed(made):
        await processor.stop(timeout=1)


async def test_jobs_run_in_priority_order(make_processor: MakeProcessor) -> None:
    processor = make_processor(workers=1)
    seen: list[str] = []
    processor.handle_job("step", lambda data: seen.append(data))
    for priority, name in [("low", "l1"), ("normal", "n1"), ("high", "h1"), ("low", "l2"), ("high", "h2"),
                           (":normal", "n2")]:
        await processor.enqueue_job("step", name, priority=priority)
    await processor.start()
    await eventually(lambda: len(seen) == 6, 5, what="six jobs done")
    assert seen == ["h1", "h2", "n1", "n2", "l1", "l2"]


async def test_a_delayed_job_fires_within_100ms_of_its_time(scheduler: SchedulerApp,
                                                            make_processor: MakeProcessor) -> None:
    processor = make_processor(workers=4)
    started: dict[str, float] = {}

    @processor.handle_job("remind")
    async def remind(data: dict[str, Any]) -> None:
        started[data["name"]] = time.time()

    await processor.start()
    due: dict[str, float] = {}
    for i, delay in enumerate([0.3, 0.45, 0.6, 0.75]):
        due[f"in{i}"] = time.time() + delay
        await processor.schedule_job("remind", {"name": f"in{i}"}, in_=delay)
    at = time.time() + 0.5
    due["at"] = at
    await processor.schedule_job("remind", {"name": "at"}, at=at)
    await eventually(lambda: len(started) == len(due), 5, what="every delayed job started")
    lateness = {name: started[name] - due[name] for name in due}
    assert all(-0.01 <= late < 0.1 for late in lateness.values()), lateness


async def test_a_failing_job_retries_with_backoff_then_goes_dead_and_can_be_retried_and_purged(
    nats_server: NatsServer, scheduler: SchedulerApp, make_processor: MakeProcessor, prefix: str
) -> None:
    nc = await nats.connect(nats_server.url)
    events: list[Any] = []

    async def collect(msg: Msg) -> None:
        events.append(job_lifecycle_decoder.decode(msg.data))

    sub = await nc.subscribe(f"{prefix}.jobs.lifecycle.>", cb=collect)
    processor = make_processor(retry_count=2, retry_delay=0.1)
    attempts: list[tuple[int, float]] = []
    healthy = threading.Event()

    @processor.handle_job("flaky")
    async def flaky(data: Any) -> str:
        attempts.append((current_job().attempt, time.monotonic()))
        if not healthy.is_set():
            raise RuntimeError("downstream is down")
        return "fixed"

    await processor.start()
    job_id = await processor.enqueue_job("flaky", {"n": 1})
    info = await processor.wait_for_job(job_id, timeout=5)
    assert (info.status, info.attempts, info.error) == (JobStatus.DEAD, 3, "RuntimeError: downstream is down")
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(attempts)]
    assert [a for a, _ in attempts] == [1, 2, 3]
    assert 0.09 <= gaps[0] < 0.35 and 0.19 <= gaps[1] < 0.5, f"backoff 0.1 then 0.2 s, got {gaps}"
    with pytest.raises(JobFailedError):
        await processor.job_result(job_id)
    assert [d.job_id for d in await processor.dead_jobs()] == [job_id]
    assert (await processor.stats())["failed_jobs"] == 1

    healthy.set()
    assert await processor.retry_dead_jobs([job_id]) == 1
    assert await processor.job_result(job_id, timeout=5) == "fixed"
    assert (await processor.stats())["failed_jobs"] == 0

    healthy.clear()  # before the enqueue: the idle worker may start the job before enqueue_job returns
    dead_id = await processor.enqueue_job("flaky", retry_count=0)
    await processor.wait_for_job(dead_id, timeout=5)
    assert await processor.purge_dead_jobs() == 1 and await processor.get_job(dead_id) is None

    await eventually(lambda: any(type(e).__name__ == "JobSucceeded" for e in events), 2, what="events")
    kinds = [type(e).__name__ for e in events if e.job_id == job_id]
    assert kinds[:10] == ["JobEnqueued", "JobStarted", "JobFailed", "JobRetried", "JobStarted", "JobFailed",
                          "JobRetried", "JobStarted", "JobFailed", "JobDead"]
    assert kinds[10:] == ["JobRetried", "JobStarted", "JobSucceeded"]
    await sub.unsubscribe()
    await nc.close()


async def test_a_permanent_error_skips_the_retries(make_processor: MakeProcessor) -> None:
    processor = make_processor(retry_count=5)

    @processor.handle_job("validate")
    async def validate(data: Any) -> None:
        raise PermanentJobError("bad address")

    await processor.start()
    info = await processor.wait_for_job(await processor.enqueue_job("validate"), timeout=5)
    assert (info.status, info.attempts) == (JobStatus.DEAD, 1)


async def test_a_handler_that_overruns_its_timeout_fails_the_attempt(make_processor: MakeProcessor) -> None:
    processor = make_processor(retry_count=0)

    async def slow(data: Any) -> None:
        await asyncio.sleep(5)

    processor.handle_job("slow", slow, timeout=0.1)
    await processor.start()
    info = await processor.wait_for_job(await processor.enqueue_job("slow"), timeout=5)
    assert info.status is JobStatus.DEAD and "longer than 0.1s" in (info.error or "")


async def test_plain_functions_run_in_threads_and_results_are_kept(make_processor: MakeProcessor) -> None:
    processor = make_processor(workers=4)
    threads: set[str] = set()

    @processor.handle_job("square")
    def square(data: dict[str, int]) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        time.sleep(0.05)
        job = current_job()
        return {"value": data["n"] ** 2, "attempt": job.attempt, "type": job.job_type}

    await processor.start()
    ids = [await processor.enqueue_job("square", {"n": n}) for n in range(4)]
    results = [await processor.job_result(i, timeout=5) for i in ids]
    assert [r["value"] for r in results] == [0, 1, 4, 9]
    assert results[0]["attempt"] == 1 and results[0]["type"] == "square"
    assert all(name.startswith("raaf-job") for name in threads)


async def test_cancel_stops_a_running_job_and_removes_a_queued_one(make_processor: MakeProcessor) -> None:
    processor = make_processor(workers=1)
    running = asyncio.Event()
    stopped = asyncio.Event()

    @processor.handle_job("long")
    async def long(data: Any) -> None:
        running.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise

    await processor.start()
    first = await processor.enqueue_job("long")
    second = await processor.enqueue_job("long")
    await asyncio.wait_for(running.wait(), 5)
    assert await processor.cancel_job(second) is JobStatus.CANCELLED
    assert await processor.cancel_job(first) is JobStatus.RUNNING
    await asyncio.wait_for(stopped.wait(), 2)
    info = await processor.wait_for_job(first, timeout=2)
    assert info.status is JobStatus.CANCELLED
    with pytest.raises(JobNotCancellableError):
        await processor.cancel_job(first)
    assert (await processor.stats())["running_jobs"] == 0


async def test_stop_hands_running_jobs_back_without_counting_an_attempt(make_processor: MakeProcessor) -> None:
    first = make_processor(workers=2)
    started = asyncio.Event()

    async def stuck(data: Any) -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    first.handle_job("stuck", stuck)
    await first.start()
    job_id = await first.enqueue_job("stuck")
    await asyncio.wait_for(started.wait(), 5)
    await first.stop(timeout=0.1)
    info = await first.get_job(job_id)
    assert info is not None and (info.status, info.attempts) == (JobStatus.QUEUED, 0)

    second = make_processor(workers=2)
    second.handle_job("stuck", lambda data: "done")
    await second.start()
    result = await second.wait_for_job(job_id, timeout=5)
    assert (result.status, result.attempts) == (JobStatus.SUCCEEDED, 1)


async def test_stop_lets_running_jobs_finish_within_its_timeout(make_processor: MakeProcessor) -> None:
    processor = make_processor(workers=4)
    started = asyncio.Event()

    async def short(data: Any) -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "finished"

    processor.handle_job("short", short)
    await processor.start()
    job_id = await processor.enqueue_job("short")
    await asyncio.wait_for(started.wait(), 5)
    check = make_processor()
    await processor.stop(timeout=5)
    info = await check.get_job(job_id)
    assert info is not None and info.status is JobStatus.SUCCEEDED


async def test_enqueueing_a_type_no_worker_handles_is_refused(make_processor: MakeProcessor) -> None:
    producer = make_processor()
    with pytest.raises(UnknownJobTypeError):
        await producer.enqueue_job("nobody-handles-this")
    worker = make_processor()
    worker.handle_job("handled", lambda data: None)
    await worker.start()
    assert await producer.enqueue_job("handled")


async def test_stats_have_the_seeds_shape(make_processor: MakeProcessor) -> None:
    processor = make_processor(workers=5)
    processor.handle_job("x", lambda data: None)
    await processor.enqueue_job("x", priority="high")
    await processor.enqueue_job("x", priority="normal")
    await processor.enqueue_job("x", priority="normal")
    await processor.enqueue_job("x", priority="low")
    await processor.schedule_job("x", in_=60)
    stats = await processor.stats()
    seed = {"running": False, "workers": 5, "high_priority_queue": 1, "normal_priority_queue": 2,
            "low_priority_queue": 1, "scheduled_jobs": 1, "failed_jobs": 0}
    assert {k: stats[k] for k in seed} == seed


async def test_a_recurring_schedule_enqueues_a_job_every_second(scheduler: SchedulerApp,
                                                                make_processor: MakeProcessor) -> None:
    processor = make_processor()
    runs: list[float] = []
    processor.handle_job("heartbeat", lambda data: runs.append(time.time()))
    await processor.start()
    spec = await processor.schedule_recurring("beat", "heartbeat", {"ping": True}, cron="* * * * * *")
    assert spec.next_run_at is not None
    await eventually(lambda: len(runs) >= 2, 4, what="two recurring runs")
    assert all(abs(t - round(t)) < 0.15 for t in runs), runs
    assert [s.name for s in await processor.list_recurring()] == ["beat"]
    await processor.remove_recurring("beat")
    assert await processor.list_recurring() == []


async def test_processors_without_the_scheduler_keep_their_own_queue_moving(make_processor: MakeProcessor) -> None:
    processor = make_processor(maintenance_interval=0.05, nats_url=None)
    ran = asyncio.Event()
    processor.handle_job("later", lambda data: ran.set())
    await processor.start()
    await processor.schedule_job("later", in_=0.2)
    await asyncio.wait_for(ran.wait(), 3)


async def test_a_worker_reports_its_own_figures_for_the_stats_contract(make_processor: MakeProcessor) -> None:
    processor = make_processor(workers=3)
    processor.handle_job("x", lambda data: None)
    await processor.start()
    await processor.job_result(await processor.enqueue_job("x"), timeout=5)
    await eventually(lambda: processor.completed == 1, 2, what="the attempt counted")
    await processor.schedule_job("x", in_=60)
    section = await processor.stats_section()
    assert section == {"running": True, "workers": 3, "active_jobs": 0, "completed_jobs": 1,
                       "high_priority_queue": 0, "normal_priority_queue": 0, "low_priority_queue": 0,
                       "scheduled_jobs": 1, "failed_jobs": 0}
