"""The scheduler's NATS API: the nats CLI's plain JSON works, bad requests get typed errors, nothing half-written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import nats
import pytest
import redis.asyncio as redis
from nats.aio.client import Client as NATS

from proto.errors import Error, ErrorCode
from proto.jobs import JobAccepted, JobStatus, job_reply_decoder
from raaf.jobs import (
    BackgroundProcessor,
    InvalidPriorityError,
    JobNotFoundError,
    JobsClient,
    PayloadTooLargeError,
    QueueFullError,
    ScheduleInPastError,
    SchedulerOverloadedError,
    SchedulerUnavailableError,
    UnknownJobTypeError,
    UnknownQueueError,
)
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.errors import SettingsError
from shared.service.app import App
from tests.support.env import service_env, unique_prefix
from tests.support.jobs import key_count
from tests.support.waiting import eventually

StartScheduler = Callable[..., Awaitable[SchedulerApp]]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
def start_scheduler(nats_server: NatsServer, redis_server: ValkeyServer, prefix: str,
                    start_app: Callable[[App], Awaitable[App]]) -> StartScheduler:
    async def start(redis_url: str | None = None, **env: str) -> SchedulerApp:
        settings = SchedulerSettings.from_env(service_env(nats_server.url, redis_url or redis_server.url,
                                                          RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05", **env))
        app = await start_app(SchedulerApp(settings))
        assert isinstance(app, SchedulerApp)
        return app

    return start


@pytest.fixture
async def worker(nats_server: NatsServer, redis_server: ValkeyServer, prefix: str
                 ) -> AsyncIterator[tuple[BackgroundProcessor, list[Any]]]:
    done: list[Any] = []
    processor = BackgroundProcessor(redis_server.url, nats_url=nats_server.url, prefix=prefix,
                                    maintenance_interval=None)

    @processor.handle_job("email")
    def email(data: dict[str, Any]) -> dict[str, Any]:
        done.append(data)
        return {"sent": data["to"]}

    await processor.start()
    yield processor, done
    await processor.stop(timeout=1)


async def test_the_nats_cli_can_enqueue_with_plain_json(
    nc: NATS, prefix: str, start_scheduler: StartScheduler, worker: tuple[BackgroundProcessor, list[Any]]
) -> None:
    await start_scheduler()
    processor, done = worker
    # What `nats req raaf.jobs.enqueue '{"job_type":"email","data":{"to":"a@b.c"}}'` sends.
    msg = await nc.request(f"{prefix}.jobs.enqueue", b'{"job_type":"email","data":{"to":"a@b.c"}}', timeout=5)
    reply = job_reply_decoder.decode(msg.data)
    assert isinstance(reply, JobAccepted) and reply.status is JobStatus.QUEUED
    assert await processor.job_result(reply.job_id, timeout=5) == {"sent": "a@b.c"}
    assert done == [{"to": "a@b.c"}]


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (b"not json", ErrorCode.BAD_REQUEST, "not a valid job request"),
        (b'{"data": {}}', ErrorCode.BAD_REQUEST, "job_type"),
        (b'{"job_type": "email", "priority": "urgent"}', ErrorCode.BAD_REQUEST, "priority"),
        (b'{"job_type": "nobody"}', ErrorCode.BAD_REQUEST, "unknown job type"),
        (b'{"job_type": "bad type!"}', ErrorCode.INVALID_NAME, "invalid job type"),
        (b'{"job_type": "email", "run_at": 1000}', ErrorCode.BAD_REQUEST, "in the past"),
        (b'{"job_type": "email", "delay": -5}', ErrorCode.BAD_REQUEST, "in the past"),
        (b'{"job_type": "email", "retry_count": 1000}', ErrorCode.BAD_REQUEST, "retry_count"),
        (b'{"job_type": "email", "data": "' + b"x" * 300 + b'"}', ErrorCode.TOO_LARGE, "limit is 256"),
        (b'{"job_type": "email", "queue": "other"}', ErrorCode.NOT_FOUND, "does not serve queue"),
    ],
)
async def test_bad_enqueue_requests_get_typed_errors_and_nothing_is_written(
    nc: NATS, prefix: str, start_scheduler: StartScheduler, worker: tuple[BackgroundProcessor, list[Any]],
    redis_server: ValkeyServer, payload: bytes, code: ErrorCode, fragment: str,
) -> None:
    await start_scheduler(JOBS_MAX_PAYLOAD_BYTES="256")
    client = redis.Redis.from_url(redis_server.url)
    before = await key_count(client, prefix)
    msg = await nc.request(f"{prefix}.jobs.enqueue", payload, timeout=5)
    reply = job_reply_decoder.decode(msg.data)
    assert isinstance(reply, Error) and reply.code is code and fragment in reply.message, reply
    assert await key_count(client, prefix) == before
    await client.aclose()


async def test_the_client_turns_wire_errors_back_into_typed_exceptions(
    nc: NATS, prefix: str, start_scheduler: StartScheduler, worker: tuple[BackgroundProcessor, list[Any]]
) -> None:
    await start_scheduler(JOBS_MAX_PAYLOAD_BYTES="256", JOBS_MAX_QUEUE_DEPTH="1")
    jobs = JobsClient(nc, prefix=prefix)
    with pytest.raises(UnknownJobTypeError) as unknown:
        await jobs.enqueue_job("nobody")
    assert unknown.value.job_type == "nobody"
    with pytest.raises(InvalidPriorityError) as priority:
        await jobs.enqueue_job("email", priority="asap")
    assert priority.value.priority == "asap"
    with pytest.raises(ScheduleInPastError):
        await jobs.enqueue_job("email", run_at=time.time() - 60)
    with pytest.raises(PayloadTooLargeError) as large:
        await jobs.enqueue_job("email", "y" * 500)
    assert (large.value.limit, large.value.code) == (256, ErrorCode.TOO_LARGE)
    with pytest.raises(JobNotFoundError):
        await jobs.get_job("missing")
    with pytest.raises(UnknownQueueError):
        await JobsClient(nc, prefix=prefix, queue="elsewhere").stats()
    processor, _ = worker
    await processor.stop(timeout=1)  # nobody drains the queue now
    await jobs.enqueue_job("email", {"to": "x"})
    with pytest.raises(QueueFullError) as full:
        await jobs.enqueue_job("email", {"to": "y"})
    assert full.value.code is ErrorCode.OVERLOADED


async def test_jobs_can_be_managed_over_nats(
    nc: NATS, prefix: str, start_scheduler: StartScheduler, worker: tuple[BackgroundProcessor, list[Any]]
) -> None:
    await start_scheduler()
    jobs = JobsClient(nc, prefix=prefix)
    accepted = await jobs.enqueue_job("email", {"to": "a@b.c"}, job_id="welcome-1", priority="high")
    again = await jobs.enqueue_job("email", {"to": "a@b.c"}, job_id="welcome-1")
    assert (accepted.duplicate, again.duplicate) == (False, True)
    await eventually(lambda: _status(jobs, "welcome-1", JobStatus.SUCCEEDED), 5, what="welcome-1 done")
    info = await jobs.get_job("welcome-1")
    assert msgspec.json.decode(info.result) == {"sent": "a@b.c"} and info.attempts == 1

    later = await jobs.enqueue_job("email", {"to": "later"}, delay=60)
    assert later.status is JobStatus.SCHEDULED and later.run_at is not None
    assert (await jobs.cancel_job(later.job_id)).status is JobStatus.CANCELLED

    processor, _ = worker
    bad = await processor.enqueue_job("email", {"no_to": True}, retry_count=0)  # the handler raises KeyError
    await eventually(lambda: _status(jobs, bad, JobStatus.DEAD), 5, what="bad job dead")
    dead = await jobs.dead_jobs()
    assert dead.total == 1 and dead.jobs[0].job_id == bad and "KeyError" in (dead.jobs[0].error or "")
    assert await jobs.retry_dead_jobs() == 1
    await eventually(lambda: _status(jobs, bad, JobStatus.DEAD), 5, what="bad job dead again")
    assert await jobs.purge_dead_jobs([bad]) == 1

    stats = await jobs.stats()
    assert (stats.queue, stats.failed_jobs, stats.scheduled_jobs, stats.succeeded_jobs) == ("jobs", 0, 0, 1)

    spec = await jobs.add_recurring("nightly", "email", {"to": "ops"}, cron="0 3 * * *")
    assert spec.next_run_at is not None and time.gmtime(spec.next_run_at).tm_hour == 3
    assert [s.name for s in await jobs.list_recurring()] == ["nightly"]
    await jobs.remove_recurring("nightly")
    assert await jobs.list_recurring() == []


async def test_a_job_and_a_schedule_record_the_owner_they_were_created_for(
    nc: NATS, prefix: str, start_scheduler: StartScheduler, worker: tuple[BackgroundProcessor, list[Any]]
) -> None:
    await start_scheduler()
    jobs = JobsClient(nc, prefix=prefix)
    accepted = await jobs.enqueue_job("email", {"to": "a@b.c"}, owner="alice")
    anonymous = await jobs.enqueue_job("email", {"to": "a@b.c"})
    assert (await jobs.get_job(accepted.job_id)).owner == "alice"
    assert (await jobs.get_job(anonymous.job_id)).owner is None
    spec = await jobs.add_recurring("alices-report", "email", {"to": "ops"}, cron="0 3 * * *", owner="alice")
    assert spec.owner == "alice" and [s.owner for s in await jobs.list_recurring()] == ["alice"]
    await jobs.remove_recurring("alices-report")


async def _status(jobs: JobsClient, job_id: str, status: JobStatus) -> bool:
    return (await jobs.get_job(job_id)).status is status


async def test_requests_past_the_inflight_cap_are_refused_as_overloaded(
    nc: NATS, prefix: str, private_redis: ValkeyServer, nats_server: NatsServer, start_scheduler: StartScheduler,
) -> None:
    await start_scheduler(private_redis.url, JOBS_MAX_INFLIGHT_REQUESTS="2", JOBS_REQUIRE_KNOWN_TYPE="false")
    jobs = JobsClient(nc, prefix=prefix)
    admin = redis.Redis.from_url(private_redis.url)
    await admin.execute_command("CLIENT", "PAUSE", "600", "WRITE")  # Redis holds every write for 0.6 s
    results = await asyncio.gather(*(jobs.enqueue_job("email", {"n": n}) for n in range(6)),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, SchedulerOverloadedError)]
    accepted = [r for r in results if isinstance(r, JobAccepted)]
    assert (len(accepted), len(refused)) == (2, 4), results
    assert refused[0].limit == 2
    assert (await jobs.stats()).normal_priority_queue == 2
    await admin.aclose()


async def test_a_burst_of_requests_wider_than_the_redis_pool_waits_for_connections(
    nc: NATS, prefix: str, start_scheduler: StartScheduler, worker: tuple[BackgroundProcessor, list[Any]]
) -> None:
    await start_scheduler(REDIS_POOL_SIZE="4")
    jobs = JobsClient(nc, prefix=prefix)
    accepted = await asyncio.gather(*(jobs.enqueue_job("email", {"to": str(n)}) for n in range(100)))
    infos = await asyncio.gather(*(jobs.get_job(a.job_id) for a in accepted))
    assert [i.job_id for i in infos] == [a.job_id for a in accepted]


async def test_a_client_without_a_scheduler_gets_a_typed_unavailable_error(nc: NATS) -> None:
    with pytest.raises(SchedulerUnavailableError):
        await JobsClient(nc, prefix=unique_prefix(), timeout=0.5).stats()


def test_settings_read_the_seeds_names_and_refuse_bad_values() -> None:
    settings = SchedulerSettings.from_env({"BACKGROUND_WORKERS": "7", "BACKGROUND_RETRY_COUNT": "2",
                                           "BACKGROUND_RETRY_DELAY": "0.5",
                                           "JOBS_QUEUES": "jobs, agent_jobs", "JOBS_MAX_QUEUE_DEPTH": "10",
                                           "JOBS_MAX_PAYLOAD_BYTES": "2048", "JOBS_DEAD_LETTER_MAX": "5"})
    assert (settings.workers, settings.retry_count, settings.retry_delay) == (7, 2, 0.5)
    assert settings.queues == ("jobs", "agent_jobs")
    assert (settings.limits.max_queue_depth, settings.limits.max_payload_bytes,
            settings.limits.dead_letter_max) == (10, 2048, 5)
    for name, value in [("JOBS_NUDGE_INTERVAL", "0"), ("JOBS_QUEUES", "a.b"), ("JOBS_MAX_PAYLOAD_BYTES", "x"),
                        ("BACKGROUND_RETRY_COUNT", "-1"), ("JOBS_TICK_INTERVAL", "0"), ("REDIS_POOL_SIZE", "2")]:
        with pytest.raises(SettingsError) as raised:
            SchedulerSettings.from_env({name: value})
        assert raised.value.variable == name


async def test_the_scheduler_reports_queue_gauges_on_metrics(
    nc: NATS, prefix: str, start_scheduler: StartScheduler, redis_server: ValkeyServer
) -> None:
    import aiohttp

    app = await start_scheduler(JOBS_REQUIRE_KNOWN_TYPE="false", JOBS_STATS_INTERVAL="0.05")
    jobs = JobsClient(nc, prefix=prefix)
    await jobs.enqueue_job("report", priority="low")
    await jobs.enqueue_job("report", delay=60)

    async def gauges() -> bool:
        async with aiohttp.ClientSession() as session, session.get(f"{app.http_url}/metrics") as resp:
            text = await resp.text()
        return ('raaf_jobs_queue_length{priority="low",queue="jobs"} 1.0' in text
                and 'raaf_jobs_scheduled{queue="jobs"} 1.0' in text
                and 'raaf_jobs_enqueued_total{priority="low",queue="jobs"} 1.0' in text)

    await eventually(gauges, 5, what="queue gauges on /metrics")


async def test_the_scheduler_reports_the_background_processor_section_of_the_stats_contract(
    nc: NATS, prefix: str, start_scheduler: StartScheduler
) -> None:
    # Without the built-in run_agent worker (it would count its own workers here).
    app = await start_scheduler(JOBS_REQUIRE_KNOWN_TYPE="false", JOBS_QUEUES="jobs,bulk", JOBS_AGENT_JOBS="false")
    await JobsClient(nc, prefix=prefix).enqueue_job("report", priority="high")
    bulk = JobsClient(nc, prefix=prefix, queue="bulk")
    await bulk.enqueue_job("report", priority="low")
    await bulk.enqueue_job("report", delay=60)
    section = (await app.stats())["background_processor"]
    assert section == {"running": True, "workers": 0, "active_jobs": 0, "completed_jobs": 0,
                       "high_priority_queue": 1, "normal_priority_queue": 0, "low_priority_queue": 1,
                       "scheduled_jobs": 1, "failed_jobs": 0}
