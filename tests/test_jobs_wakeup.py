"""An idle worker's claim waits in Redis for a wake token: a new job starts at once; stop and nudges end the wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
import redis.asyncio as redis

from proto.jobs import JobsReady, jobs_encoder
from proto.subjects import Subjects
from raaf.jobs import BackgroundProcessor, JobLimits
from shared.devstack.servers import NatsServer, ValkeyServer
from tests.support.waiting import eventually

# A poll this long would show: every wait below must end well before it.
POLL = 5.0
MakeProcessor = Callable[..., BackgroundProcessor]


@pytest.fixture
async def make_processor(redis_server: ValkeyServer, prefix: str) -> AsyncIterator[MakeProcessor]:
    made: list[BackgroundProcessor] = []

    def make(**kw: Any) -> BackgroundProcessor:
        options: dict[str, Any] = {"prefix": prefix, "queue_name": "wake", "poll_interval": POLL,
                                   "maintenance_interval": None, **kw}
        processor = BackgroundProcessor(redis_server.url, **options)
        made.append(processor)
        return processor

    yield make
    for processor in reversed(made):
        await processor.stop(timeout=1)


@pytest.fixture
async def client(redis_server: ValkeyServer) -> AsyncIterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    await c.aclose()


async def blocked_clients(client: redis.Redis) -> int:
    return sum(1 for c in await client.client_list() if c.get("cmd") == "blpop")


async def more_blocked_than(client: redis.Redis, count: int) -> bool:
    return await blocked_clients(client) > count


async def started_worker(make: MakeProcessor, client: redis.Redis, starts: asyncio.Queue[float],
                         **kw: Any) -> BackgroundProcessor:
    """A worker of type ``t`` whose handler puts its start time on ``starts``; returned once its claim waits."""
    worker = make(**kw)

    @worker.handle_job("t")
    async def handle(data: Any) -> None:
        starts.put_nowait(time.monotonic())

    before = await blocked_clients(client)
    await worker.start()
    await eventually(lambda: more_blocked_than(client, before), 5, what="the claim waits in Redis")
    return worker


async def test_an_idle_worker_without_nats_starts_each_new_job_at_once_not_at_its_next_poll(
        make_processor: MakeProcessor, client: redis.Redis) -> None:
    starts: asyncio.Queue[float] = asyncio.Queue()
    await started_worker(make_processor, client, starts)
    producer = make_processor(limits=JobLimits(require_known_type=False))
    for _ in range(5):
        sent = time.monotonic()
        await producer.enqueue_job("t")
        started = await asyncio.wait_for(starts.get(), POLL)
        assert started - sent < 1.0, f"picked up after {started - sent:.2f}s: the wake token did not wake it"


async def test_stop_ends_a_claim_that_waits_in_redis_at_once(make_processor: MakeProcessor,
                                                             client: redis.Redis) -> None:
    worker = await started_worker(make_processor, client, asyncio.Queue())
    began = time.monotonic()
    await worker.stop()
    assert time.monotonic() - began < 1.0


async def test_a_nudge_ends_the_wait_when_the_jobs_wake_token_went_elsewhere(
        make_processor: MakeProcessor, client: redis.Redis, nats_server: NatsServer, prefix: str) -> None:
    # A client that blocked on the type's wake list first takes the token (Redis serves the longest waiter).
    thief = redis.Redis(connection_pool=client.connection_pool)
    wake_list = f"{prefix}:jobs:{{wake}}:wake:t"
    before = await blocked_clients(client)
    stolen = asyncio.create_task(thief.blpop([wake_list], timeout=POLL * 2))
    await eventually(lambda: more_blocked_than(client, before), 5, what="the thief waits")
    starts: asyncio.Queue[float] = asyncio.Queue()
    await started_worker(make_processor, client, starts, nats_url=nats_server.url)
    producer = make_processor(limits=JobLimits(require_known_type=False))
    await producer.enqueue_job("t")
    assert await asyncio.wait_for(stolen, POLL) is not None
    assert starts.empty()

    nc = await nats.connect(nats_server.url)
    try:
        sent = time.monotonic()
        await nc.publish(Subjects(prefix).job_dispatch_queue("wake", "t"),
                         jobs_encoder.encode(JobsReady(queue="wake", job_type="t")))
        started = await asyncio.wait_for(starts.get(), POLL)
        assert started - sent < 1.0
    finally:
        await nc.close()
