"""The job store's atomic moves against a real Valkey: order, idempotency, leases, limits, dead letters."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from proto.jobs import JobStatus, Priority, RecurringJob
from raaf.jobs import (
    InvalidJobDataError,
    InvalidJobIdError,
    InvalidJobTypeError,
    InvalidPriorityError,
    InvalidRetryPolicyError,
    InvalidScheduleError,
    JobLimits,
    JobStore,
    PayloadTooLargeError,
    QueueFullError,
    RetryPolicy,
    ScheduleInPastError,
    UnknownJobTypeError,
)
from shared.devstack.servers import ValkeyServer
from shared.jobs.model import NewJob, new_job
from tests.support.env import unique_prefix
from tests.support.jobs import key_count

RETRY = RetryPolicy(retry_count=2, retry_delay=0.0)


@pytest.fixture
async def client(redis_server: ValkeyServer) -> AsyncIterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    yield c
    await c.aclose()


def make_store(client: redis.Redis, **limits: object) -> JobStore:
    options: dict[str, object] = {"require_known_type": False, **limits}
    return JobStore(client, queue="q", prefix=unique_prefix(), limits=JobLimits(**options))  # type: ignore[arg-type]


def job(store: JobStore, job_type: str = "t", data: object = None, **kw: object) -> NewJob:
    return new_job(job_type, data, retry=RETRY, limits=store.limits, **kw)  # type: ignore[arg-type]


async def test_high_jobs_are_claimed_before_normal_before_low_and_fifo_within_each(client: redis.Redis) -> None:
    store = make_store(client)
    order = [("low", 1), ("normal", 2), ("high", 3), ("low", 4), ("high", 5), ("normal", 6)]
    await store.enqueue_many([job(store, data=n, priority=p) for p, n in order])
    claimed = []
    while batch := await store.claim(["t"], 2, "w", 5000):
        claimed += [int(c.data) for c in batch]
    assert claimed == [3, 5, 2, 6, 1, 4]


async def test_enqueueing_the_same_id_twice_writes_once(client: redis.Redis) -> None:
    store = make_store(client)
    first = await store.enqueue(job(store, data={"v": 1}, job_id="order-42"))
    second = await store.enqueue(job(store, data={"v": 2}, job_id="order-42"))
    assert (first.duplicate, second.duplicate) == (False, True)
    claimed = await store.claim(["t"], 10, "w", 5000)
    assert [c.data for c in claimed] == [b'{"v":1}']
    await store.complete([(claimed[0].job_id, claimed[0].token, b"1")])
    third = await store.enqueue(job(store, data={"v": 3}, job_id="order-42"))
    assert third.duplicate and third.status is JobStatus.SUCCEEDED
    assert await store.claim(["t"], 10, "w", 5000) == []


async def test_job_data_reaches_the_worker_byte_for_byte_and_ids_never_repeat(client: redis.Redis) -> None:
    store = make_store(client)
    data = [{"text": "caf\u00e9 \u2603 \"quoted\" \\ back\nslash\u0000", "n": [1, 2.5, None, True]}, "", 0, None]
    jobs = [job(store, data=d) for d in data * 150]
    await store.enqueue_many(jobs)
    claimed = await store.claim(["t"], 1000, "w", 5000)
    assert [c.data for c in claimed] == [j.data for j in jobs]
    assert len({j.job_id for j in jobs}) == len(jobs) and all(len(j.job_id) == 32 for j in jobs)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"job_type": "no spaces"}, InvalidJobTypeError),
        ({"job_type": ""}, InvalidJobTypeError),
        ({"data": {"z": complex(1, 2)}}, InvalidJobDataError),
        ({"data": object()}, InvalidJobDataError),
        ({"data": {"x": math.nan}}, InvalidJobDataError),
        ({"data": [math.inf]}, InvalidJobDataError),
        ({"priority": "urgent"}, InvalidPriorityError),
        ({"job_id": "a b"}, InvalidJobIdError),
        ({"in_": -1.0}, ScheduleInPastError),
        ({"at": 1_000_000.0}, ScheduleInPastError),
        ({"at": 2e9, "in_": 5.0}, InvalidScheduleError),
        ({"retry_count": -1}, InvalidRetryPolicyError),
        ({"retry_delay": math.inf}, InvalidRetryPolicyError),
        ({"data": "x" * 2000}, PayloadTooLargeError),
    ],
)
async def test_bad_input_is_refused_with_a_typed_error_and_nothing_is_written(
    client: redis.Redis, kwargs: dict[str, object], error: type[Exception]
) -> None:
    store = make_store(client, max_payload_bytes=1024)
    fields: dict[str, object] = {"job_type": "t", "data": None, **kwargs}
    with pytest.raises(error) as raised:
        await store.enqueue(new_job(retry=RETRY, limits=store.limits, **fields))  # type: ignore[arg-type]
    assert raised.value.code  # type: ignore[attr-defined]
    assert await key_count(client, store.base.split(":")[0]) == 0


async def test_unknown_job_types_are_refused_until_a_worker_registers_them(client: redis.Redis) -> None:
    store = make_store(client, require_known_type=True)
    with pytest.raises(UnknownJobTypeError) as raised:
        await store.enqueue(job(store, "email"))
    assert raised.value.job_type == "email"
    assert await key_count(client, store.base.split(":")[0]) == 0
    await store.register_types(["email"])
    assert (await store.enqueue(job(store, "email"))).status is JobStatus.QUEUED


async def test_the_queue_depth_limit_refuses_whole_jobs_past_it(client: redis.Redis) -> None:
    store = make_store(client, max_queue_depth=3)
    results = await store.enqueue_many([job(store, data=i) for i in range(5)])
    assert [r.kind if isinstance(r, QueueFullError) else type(r).__name__ for r in results] == (
        ["Enqueued"] * 3 + ["queue_full"] * 2)
    assert isinstance(results[3], QueueFullError) and results[3].limit == 3
    assert (await store.stats()).normal == 3
    # Scheduled jobs count against their own limit, not the ready depth.
    assert (await store.enqueue(job(store, in_=60))).status is JobStatus.SCHEDULED


async def test_a_stale_worker_cannot_record_a_job_someone_else_now_holds(client: redis.Redis) -> None:
    store = make_store(client)
    await store.enqueue(job(store))
    [stale] = await store.claim(["t"], 1, "w1", 50)
    await asyncio.sleep(0.1)  # past the 50 ms lease
    [expired] = await store.requeue_expired()
    assert (expired.outcome, expired.attempts) == ("requeued", 1)
    [fresh] = await store.claim(["t"], 1, "w2", 5000)
    assert (fresh.job_id, fresh.attempt) == (stale.job_id, 2) and fresh.token != stale.token
    assert await store.renew([(stale.job_id, stale.token)], 5000) == [0]
    assert await store.complete([(stale.job_id, stale.token, b'"stale"')]) == [False]
    assert (await store.fail(stale.job_id, stale.token, "x", retry=True, delay_ms=0)).outcome == "lost"
    assert await store.complete([(fresh.job_id, fresh.token, b'"fresh"')]) == [True]
    info = await store.get(fresh.job_id)
    assert info is not None and info.status is JobStatus.SUCCEEDED and bytes(info.result) == b'"fresh"'


async def test_expired_leases_count_an_attempt_and_bury_the_job_when_none_are_left(client: redis.Redis) -> None:
    store = make_store(client)
    await store.enqueue(job(store, retry_count=1))
    outcomes = []
    for _ in range(2):
        await store.claim(["t"], 1, "w", 20)
        await asyncio.sleep(0.05)  # past the 20 ms lease
        outcomes += [(e.outcome, e.attempts) for e in await store.requeue_expired()]
    assert outcomes == [("requeued", 1), ("dead", 2)]
    dead, total = await store.dead()
    assert total == 1 and dead[0].status is JobStatus.DEAD and "lease expired" in (dead[0].error or "")


async def test_renewed_leases_do_not_expire(client: redis.Redis) -> None:
    store = make_store(client)
    await store.enqueue(job(store))
    [held] = await store.claim(["t"], 1, "w", 100)
    for _ in range(4):
        await asyncio.sleep(0.05)  # half the lease each time: only renewals keep it
        assert await store.renew([(held.job_id, held.token)], 100) == [1]
        assert await store.requeue_expired() == []


async def test_the_dead_letter_store_keeps_only_the_newest_up_to_its_cap(client: redis.Redis) -> None:
    store = make_store(client, dead_letter_max=3)
    await store.enqueue_many([job(store, data=i, job_id=f"j{i}", retry_count=0) for i in range(5)])
    for held in await store.claim(["t"], 5, "w", 5000):
        await store.fail(held.job_id, held.token, "boom", retry=True, delay_ms=0)
        await asyncio.sleep(0.002)  # distinct death times
    dead, total = await store.dead()
    assert total == 3 and [d.job_id for d in dead] == ["j4", "j3", "j2"]
    assert await store.get("j0") is None, "a dropped dead job's record goes with it"


async def test_dead_jobs_can_be_retried_with_fresh_attempts_and_purged(client: redis.Redis) -> None:
    store = make_store(client)
    await store.enqueue_many([job(store, job_id=f"d{i}", retry_count=0) for i in range(3)])
    for held in await store.claim(["t"], 3, "w", 5000):
        await store.fail(held.job_id, held.token, "boom", retry=False, delay_ms=0)
    assert await store.retry_dead(["d1"]) == [("d1", "t")]
    [again] = await store.claim(["t"], 5, "w", 5000)
    assert (again.job_id, again.attempt) == ("d1", 1)
    assert await store.purge_dead() == 2
    assert (await store.dead())[1] == 0 and await store.get("d0") is None


async def test_cancel_removes_queued_and_scheduled_jobs_and_flags_running_ones(client: redis.Redis) -> None:
    store = make_store(client)
    await store.enqueue_many([job(store, job_id="queued"), job(store, job_id="later", in_=60),
                              job(store, job_id="running")])
    assert (await store.cancel("queued"))[0] == "cancelled"
    assert (await store.cancel("later"))[0] == "cancelled"
    [held] = await store.claim(["t"], 5, "w", 5000)
    assert held.job_id == "running"
    assert (await store.cancel("running"))[0] == "cancelling"
    assert await store.renew([(held.job_id, held.token)], 5000) == [2]
    assert await store.finish_cancelled(held.job_id, held.token)
    assert (await store.cancel("running"))[:2] == ("final", "cancelled")
    assert (await store.cancel("nope"))[0] == "not_found"
    stats = await store.stats()
    assert (stats.normal, stats.scheduled, stats.running) == (0, 0, 0)


async def test_release_hands_a_job_back_to_the_front_without_counting_the_attempt(client: redis.Redis) -> None:
    store = make_store(client)
    await store.enqueue_many([job(store, job_id="first"), job(store, job_id="second")])
    [held] = await store.claim(["t"], 1, "w", 5000)
    assert await store.release([(held.job_id, held.token)]) == ["t"]
    [again] = await store.claim(["t"], 1, "w", 5000)
    assert (again.job_id, again.attempt) == ("first", 1) and again.token == held.token + 1


async def test_failed_attempts_back_off_in_the_scheduled_set_until_due(client: redis.Redis) -> None:
    store = make_store(client)
    await store.enqueue(job(store))
    [held] = await store.claim(["t"], 1, "w", 5000)
    outcome = await store.fail(held.job_id, held.token, "boom", retry=True, delay_ms=80)
    assert outcome.outcome == "scheduled"
    assert (await store.promote_due()).counts == {}
    await asyncio.sleep(0.1)  # past the 80 ms back-off
    promoted = await store.promote_due()
    assert promoted.counts == {"t": 1} and promoted.now_ms - promoted.earliest_ms >= 0
    [again] = await store.claim(["t"], 1, "w", 5000)
    assert again.attempt == 2


async def test_a_recurring_schedule_fires_once_per_time_with_two_schedulers(client: redis.Redis) -> None:
    store = make_store(client)
    other = JobStore(client, queue="q", prefix=store.base.split(":")[0], limits=store.limits)
    await store.add_recurring(RecurringJob(name="tick", cron="* * * * * *", job_type="t", priority=Priority.HIGH))
    fired = []
    for _ in range(12):
        both = await asyncio.gather(store.fire_due_recurring(), other.fire_due_recurring())
        fired += [result for listing, _ in both for _, result in listing]
        await asyncio.sleep(0.2)  # 12 rounds span two or three cron seconds
    ids = [r.job_id for r in fired if not isinstance(r, Exception)]
    assert 2 <= len(ids) <= 3 and len(set(ids)) == len(ids)
    assert (await store.stats()).high == len(ids)
    with pytest.raises(InvalidScheduleError):
        await store.add_recurring(RecurringJob(name="bad", cron="every minute", job_type="t"))
