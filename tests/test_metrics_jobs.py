"""The metrics service turns every queue's job lifecycle events into cluster-wide job metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from proto.jobs import JobEnqueued, JobSucceeded, Priority, jobs_encoder
from proto.subjects import Subjects
from raaf.jobs import BackgroundProcessor, PermanentJobError
from services.metrics import MetricsApp, MetricsSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.env import service_env
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]
MakeProcessor = Callable[..., BackgroundProcessor]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(app: App) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(f"{app.http_url}/metrics") as resp:
        text = await resp.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_app(nats_url: str, redis_url: str, prefix: str, **extra: str) -> MetricsApp:
    return MetricsApp(MetricsSettings.from_env(service_env(nats_url, redis_url, RAAF_PREFIX=prefix, **extra)))


@pytest.fixture
async def make_processor(nats_server: NatsServer, redis_server: ValkeyServer,
                         prefix: str) -> AsyncIterator[MakeProcessor]:
    made: list[BackgroundProcessor] = []

    def make(**kw: Any) -> BackgroundProcessor:
        options: dict[str, Any] = {"nats_url": nats_server.url, "prefix": prefix, "retry_delay": 0.01,
                                   "retry_count": 2, "lease_seconds": 3.0, "maintenance_interval": 0.05, **kw}
        processor = BackgroundProcessor(redis_server.url, **options)
        made.append(processor)
        return processor

    yield make
    for processor in reversed(made):
        await processor.stop(timeout=1)


def with_handlers(processor: BackgroundProcessor) -> BackgroundProcessor:
    """``ok`` succeeds, ``flaky`` fails its first attempt, ``doomed`` fails for good."""
    attempts: dict[str, int] = {}

    @processor.handle_job("ok")
    async def ok(data: Any) -> None:
        return None

    @processor.handle_job("flaky")
    async def flaky(data: Any) -> None:
        attempts[data] = attempts.get(data, 0) + 1
        if attempts[data] == 1:
            raise RuntimeError("first attempt fails")

    @processor.handle_job("doomed")
    async def doomed(data: Any) -> None:
        raise PermanentJobError("never works")

    return processor


async def test_jobs_of_every_worker_are_counted_by_queue_and_type_without_scraping_the_workers(
    nats_server: NatsServer, redis_server: ValkeyServer, prefix: str, start_app: StartApp,
    make_processor: MakeProcessor,
) -> None:
    metrics = await start_app(metrics_app(nats_server.url, redis_server.url, prefix))
    # Two worker processes' worth of queues; neither exposes a registry, so only their events can tell.
    mail = with_handlers(make_processor(queue_name="mail"))
    reports = with_handlers(make_processor(queue_name="reports"))
    for processor in (mail, reports):
        await processor.start()
    await mail.enqueue_job("ok", "a", priority="high")
    await mail.enqueue_job("ok", "b")
    await mail.enqueue_job("flaky", "c")
    await reports.enqueue_job("doomed", "d", priority="low")
    later = await reports.schedule_job("ok", "e", in_=3600)
    await reports.cancel_job(later)

    async def all_counted() -> bool:
        samples = await scrape(metrics)
        return (value(samples, "raaf_cluster_job_successes_total", queue="mail", job_type="flaky") == 1
                and value(samples, "raaf_cluster_job_dead_letters_total", queue="reports", job_type="doomed") == 1
                and value(samples, "raaf_cluster_job_cancellations_total", queue="reports", job_type="ok") == 1)

    await eventually(all_counted, 10, interval=0.05, what="every job outcome counted")
    s = await scrape(metrics)
    mail_ok, flaky = {"queue": "mail", "job_type": "ok"}, {"queue": "mail", "job_type": "flaky"}
    doomed = {"queue": "reports", "job_type": "doomed"}
    assert value(s, "raaf_cluster_job_enqueues_total", **mail_ok, priority="high") == 1
    assert value(s, "raaf_cluster_job_enqueues_total", **mail_ok, priority="normal") == 1
    assert value(s, "raaf_cluster_job_enqueues_total", **doomed, priority="low") == 1
    assert value(s, "raaf_cluster_job_pickup_seconds_count", **mail_ok) == 2
    assert value(s, "raaf_cluster_job_pickup_seconds_count", **flaky) == 2, "a retry is picked up again"
    assert value(s, "raaf_cluster_job_successes_total", **mail_ok) == 2
    assert value(s, "raaf_cluster_job_failures_total", **flaky) == 1
    assert value(s, "raaf_cluster_job_retries_total", **flaky, reason="error") == 1
    assert value(s, "raaf_cluster_job_duration_seconds_count", **flaky) == 2, "failed attempts have a duration too"
    assert value(s, "raaf_cluster_job_failures_total", **doomed) == 1
    assert value(s, "raaf_cluster_job_retries_total", **doomed, reason="error") == 0
    assert value(s, "raaf_cluster_job_dead_letters_total", **doomed) == 1
    assert value(s, "raaf_cluster_job_dead_letters_total", **mail_ok) == 0, "a pair's counters start at zero"
    assert value(s, "raaf_cluster_job_pickup_seconds_sum", **mail_ok) < 5
    # A dead job retried by hand comes back as a retry with its own reason.
    assert await reports.retry_dead_jobs() == 1

    async def retried() -> bool:
        samples = await scrape(metrics)
        return value(samples, "raaf_cluster_job_retries_total", **doomed, reason="dead_letter_retry") == 1

    await eventually(retried, 5, interval=0.05, what="the dead-letter retry counted")


async def test_a_processor_with_lifecycle_events_off_is_left_out_of_the_cluster_figures(
    nats_server: NatsServer, redis_server: ValkeyServer, prefix: str, start_app: StartApp,
    make_processor: MakeProcessor,
) -> None:
    metrics = await start_app(metrics_app(nats_server.url, redis_server.url, prefix))
    registry = CollectorRegistry()
    quiet = with_handlers(make_processor(queue_name="quiet", lifecycle_events=False, registry=registry))
    loud = with_handlers(make_processor(queue_name="loud"))
    for processor in (quiet, loud):
        await processor.start()
    await quiet.enqueue_job("ok", "q")
    await loud.enqueue_job("ok", "l")

    async def loud_counted() -> bool:
        return value(await scrape(metrics), "raaf_cluster_job_successes_total", queue="loud", job_type="ok") == 1

    await eventually(loud_counted, 10, interval=0.05, what="the loud queue's job counted")
    await eventually(lambda: registry.get_sample_value("raaf_job_duration_seconds_count", {"job_type": "ok"}) == 1,
                     5, what="the quiet worker's own histogram counted its job")
    samples = await scrape(metrics)
    assert not [key for key in samples if ("queue", "quiet") in key[1]]


async def test_job_metrics_can_be_turned_off(
    nats_server: NatsServer, redis_server: ValkeyServer, prefix: str, start_app: StartApp
) -> None:
    metrics = await start_app(metrics_app(nats_server.url, redis_server.url, prefix, METRICS_OBSERVE_JOBS="false"))
    nc = await nats.connect(nats_server.url)
    try:
        await publish_succeeded(nc, prefix, "mail", "ok", 3)
        # Sent after the job events on the same connection: once it is counted, they would have been too.
        await nc.publish(f"{prefix}.events.marker", b"{}")
        await nc.flush()
    finally:
        await nc.close()

    async def marker_counted() -> bool:
        return value(await scrape(metrics), "raaf_event_bus_messages_total") == 1

    await eventually(marker_counted, 5, interval=0.05, what="the marker event counted")
    samples = await scrape(metrics)
    assert not [key for key in samples if key[0].startswith("raaf_cluster_job_") and key[1]]


async def test_job_types_past_the_series_limit_are_counted_as_other(
    nats_server: NatsServer, redis_server: ValkeyServer, prefix: str, start_app: StartApp
) -> None:
    metrics = await start_app(metrics_app(nats_server.url, redis_server.url, prefix, METRICS_MAX_JOB_SERIES="2"))
    assert isinstance(metrics, MetricsApp)
    nc = await nats.connect(nats_server.url)
    subject = Subjects(prefix).job_lifecycle("enqueued")
    try:
        for job_type in ("a", "b", "c", "d", "a"):
            event = JobEnqueued(queue="q", job_id=job_type, job_type=job_type, priority=Priority.NORMAL, at=0)
            await nc.publish(subject, jobs_encoder.encode(event))
        await nc.publish(subject, b"not a job event")
        await nc.flush()
    finally:
        await nc.close()

    async def all_seen() -> bool:
        return value(await scrape(metrics), "raaf_cluster_job_events_undecodable_total") == 1

    await eventually(all_seen, 5, interval=0.05, what="every message handled")
    s = await scrape(metrics)
    enqueues = {dict(labels)["job_type"]: v for (name, labels), v in s.items()
                if name == "raaf_cluster_job_enqueues_total" and dict(labels)["priority"] == "normal"}
    assert enqueues == {"a": 2, "b": 1, "_other": 2}
    assert metrics.jobs.folded == 2


async def test_two_metrics_replicas_count_each_job_event_once(
    nats_server: NatsServer, redis_server: ValkeyServer, prefix: str, start_app: StartApp
) -> None:
    replicas = [await start_app(metrics_app(nats_server.url, redis_server.url, prefix, INSTANCE_ID=f"m{i}"))
                for i in range(2)]
    nc = await nats.connect(nats_server.url)
    try:
        await publish_succeeded(nc, prefix, "mail", "ok", 40)
        await nc.flush()
    finally:
        await nc.close()

    async def total() -> float:
        return sum([value(await scrape(app), "raaf_cluster_job_successes_total", queue="mail", job_type="ok")
                    for app in replicas])

    async def forty() -> bool:
        return await total() == 40

    await eventually(forty, 5, interval=0.05, what="forty successes across the replicas")
    await asyncio.sleep(0.3)  # time for double counting to show
    assert await total() == 40, "each event is counted by one replica, not by both"


async def publish_succeeded(nc: NATS, prefix: str, queue: str, job_type: str, count: int) -> None:
    subject = Subjects(prefix).job_lifecycle("succeeded")
    for n in range(count):
        event = JobSucceeded(queue=queue, job_id=f"j{n}", job_type=job_type, attempt=1, duration=0.01, at=0)
        await nc.publish(subject, jobs_encoder.encode(event))
