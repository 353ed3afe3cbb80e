"""Jobs on highly available Redis: a Sentinel failover under load loses no acknowledged job, a cluster runs them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster

from proto.jobs import JobStatus, Priority, RecurringJob
from raaf.jobs import BackgroundProcessor, JobLimits, JobsClient, JobStore, current_job
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.redis_ha import SentinelGroup, ValkeyCluster, admin
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.errors import SettingsError
from shared.jobs.errors import JobError, JobNotReplicatedError, JobStoreUnavailableError
from shared.jobs.model import NewJob
from shared.redisconn import RedisTarget, RedisUrlError, connect_redis, parse_redis_url
from shared.service.app import App
from shared.service.settings import Env, RuntimeSettings
from tests.support.env import service_env, unique_prefix
from tests.support.waiting import eventually

# ---- REDIS_URL forms -------------------------------------------------------------------------------------------


def _runtime(redis_url: str) -> RuntimeSettings:
    return RuntimeSettings.from_env(Env({"REDIS_URL": redis_url}), default_http_port=8000)


def test_a_sentinel_url_names_every_sentinel_then_the_primarys_service_and_database() -> None:
    target = parse_redis_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2")
    assert target == RedisTarget("sentinel", target.url, (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)),
                                 "mymaster", 2, None, "s3cret", False)


def test_a_cluster_url_names_its_seed_nodes() -> None:
    target = parse_redis_url("rediss+cluster://app:pw@node-a:7000,node-b:7001")
    assert (target.kind, target.hosts, target.username, target.password, target.tls) == (
        "cluster", (("node-a", 7000), ("node-b", 7001)), "app", "pw", True)


@pytest.mark.parametrize(("url", "complaint"), [
    ("redis+sentinel://h1:26379,h2:26379", "names the primary's service"),
    ("redis+sentinel://h1:26379/mymaster/zero", "is not a number"),
    ("redis+cluster://h1:7000/3", "only database 0"),
    ("redis+cluster://h1:seven", "is not a number"),
    ("redis+cluster://h1:70000", "out of range"),
    ("redis+sentinel://:26379/m", "no host"),
    ("http://h1:6379", "expected a URL with scheme"),
    ("redis+cluster://h1:7000?ssl_cert_reqs=none", "takes no query options"),
])
def test_a_malformed_redis_url_is_refused_naming_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(RedisUrlError, match=complaint):
        parse_redis_url(url)
    with pytest.raises(SettingsError, match="REDIS_URL"):
        _runtime(url)


def test_a_refused_redis_url_is_reported_without_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        _runtime("redis+sentinel://app:s3cret@h1:26379,h2:26379")
    assert "s3cret" not in str(refused.value) and "app:***@h1" in str(refused.value)


def test_high_availability_urls_are_valid_settings_and_build_the_matching_client() -> None:
    sentinel = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0"
    assert _runtime(sentinel).redis_url == sentinel
    assert isinstance(connect_redis("redis+cluster://127.0.0.1:7000"), RedisCluster)
    assert type(connect_redis(sentinel).connection_pool).__name__ == "SentinelConnectionPool"


# ---- WAIT to a replica -----------------------------------------------------------------------------------------


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[ValkeyServer, ValkeyServer]]:
    primary = ValkeyServer(tmp_path / "primary")
    replica = ValkeyServer(tmp_path / "replica", replica_of=primary)
    try:
        primary.start()
        replica.start()
        deadline = time.monotonic() + 10
        while admin(replica, "INFO", "replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
        yield primary, replica
    finally:
        replica.kill()
        primary.kill()


def _job(job_id: str, job_type: str = "work") -> NewJob:
    return NewJob(job_id=job_id, job_type=job_type, data=b"{}", priority=Priority.NORMAL, max_attempts=3,
                  retry_delay_ms=0)


async def test_with_wait_replicas_an_enqueue_is_acknowledged_once_a_replica_has_it(
    primary_and_replica: tuple[ValkeyServer, ValkeyServer],
) -> None:
    primary, replica = primary_and_replica
    client = connect_redis(primary.url)
    store = JobStore(client, queue="q", prefix=unique_prefix(),
                     limits=JobLimits(require_known_type=False, wait_replicas=1, wait_timeout=2))
    try:
        await store.enqueue(_job("a"))
        # Acknowledged means on the replica already, with no replication delay to wait out.
        assert admin(replica, "HGET", store.job_key("a"), "status") == "queued"
    finally:
        await client.aclose()


async def test_with_too_few_replicas_enqueue_and_claim_fail_typed_and_claimed_jobs_go_back_uncounted(
    primary_and_replica: tuple[ValkeyServer, ValkeyServer],
) -> None:
    primary, _ = primary_and_replica
    client = connect_redis(primary.url)
    prefix = unique_prefix()
    plain = JobStore(client, queue="q", prefix=prefix, limits=JobLimits(require_known_type=False))
    strict = JobStore(client, queue="q", prefix=prefix,
                      limits=JobLimits(require_known_type=False, wait_replicas=2, wait_timeout=0.1))
    try:
        with pytest.raises(JobNotReplicatedError) as refused:
            await strict.enqueue(_job("a"))
        assert (refused.value.wanted, refused.value.confirmed) == (2, 1)
        assert isinstance(refused.value, JobStoreUnavailableError)  # every caller already backs off on these
        remote = JobError.from_wire(refused.value.to_wire())
        assert isinstance(remote, JobNotReplicatedError) and (remote.wanted, remote.confirmed) == (2, 1)
        await plain.enqueue(_job("b"))
        with pytest.raises(JobNotReplicatedError):
            await strict.claim(["work"], 10, "w1", 10_000)
        infos = [await plain.get(job_id) for job_id in ("a", "b")]
        assert [(i.status, i.attempts) for i in infos if i is not None] == [(JobStatus.QUEUED, 0)] * 2
    finally:
        await client.aclose()


# ---- Sentinel failover under load ------------------------------------------------------------------------------


class FailoverRound:
    """Workers in two processors (one Redis client each, from the Sentinel URL) run ``work`` jobs; each start and
    end is recorded here, so a job running twice at once cannot go unseen."""

    def __init__(self, group: SentinelGroup, nats_url: str, prefix: str) -> None:
        self.group = group
        self.prefix = prefix
        self.running: set[str] = set()
        self.overlaps: list[str] = []
        self.ran: dict[str, int] = {}
        self.acked: set[str] = set()
        self.refused = 0  # enqueues Redis did not acknowledge (retried with the same id)
        self.limits = JobLimits(wait_replicas=1, wait_timeout=0.5)
        self.processors = [
            BackgroundProcessor(group.url, nats_url=nats_url, prefix=prefix, workers=8, lease_seconds=2.0,
                                maintenance_interval=0.2, retry_count=5, retry_delay=0.1, limits=self.limits,
                                worker_id=f"w{i}", shutdown_timeout=2)
            for i in range(2)]
        for processor in self.processors:
            processor.handle_job("work", self.work)

    async def work(self, data: dict[str, Any]) -> None:
        job_id = current_job().job_id
        if job_id in self.running:
            self.overlaps.append(job_id)
        self.running.add(job_id)
        try:
            await asyncio.sleep(float(data["sleep"]))
        finally:
            self.running.discard(job_id)
        self.ran[job_id] = self.ran.get(job_id, 0) + 1

    async def enqueue_until_acknowledged(self, job_id: str) -> None:
        """Retry one enqueue (same id: idempotent) until Redis acknowledges it."""
        while True:
            try:
                await self.processors[0].enqueue_job("work", {"sleep": 0.02}, job_id=job_id)
            except JobStoreUnavailableError:
                self.refused += 1
                await asyncio.sleep(0.05)
                continue
            self.acked.add(job_id)
            return

    async def succeeded(self, store: JobStore, job_ids: list[str]) -> bool:
        try:
            infos = [await store.get(job_id) for job_id in job_ids]
        except JobStoreUnavailableError:
            return False
        return all(info is not None and info.status is JobStatus.SUCCEEDED for info in infos)


@pytest.fixture
async def scheduler_on(nats_server: NatsServer, start_app: Callable[[App], Awaitable[App]]
                       ) -> Callable[[str, str], Awaitable[SchedulerApp]]:
    async def start(redis_url: str, prefix: str) -> SchedulerApp:
        env = service_env(nats_server.url, redis_url, RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05",
                          REDIS_WAIT_REPLICAS="1", REDIS_WAIT_TIMEOUT="0.5", JOBS_LEASE_SECONDS="2")
        app = await start_app(SchedulerApp(SchedulerSettings.from_env(env)))
        assert isinstance(app, SchedulerApp)
        return app

    return start


async def _ready(app: App) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"{app.http_url}/readyz") as resp:
        return resp.status == 200


async def _failover_round(group: SentinelGroup, nats_url: str, scheduler: SchedulerApp, prefix: str,
                          jobs: int) -> None:
    round_ = FailoverRound(group, nats_url, prefix)
    for processor in round_.processors:
        await processor.start()
    watcher = connect_redis(group.url)
    store = JobStore(watcher, queue="jobs", prefix=prefix)
    try:
        job_ids = [f"job-{i}" for i in range(jobs)]
        producer = asyncio.create_task(_produce(round_, job_ids))
        await eventually(lambda: len(round_.ran) >= jobs // 4, 30, what="a quarter of the jobs ran")
        old = group.primary_address()
        assert not producer.done(), "the primary must die while enqueues are still coming"
        group.primary.kill()  # kill -9, jobs running and enqueues in flight
        killed_at = time.monotonic()
        new = await asyncio.to_thread(group.wait_for_failover, old)
        assert new != old
        await asyncio.wait_for(producer, 60)
        await eventually(lambda: round_.succeeded(store, job_ids), 60, interval=0.2, what="every job succeeded")
        assert round_.acked == set(job_ids)
        assert round_.refused > 0, "no enqueue was in flight during the failover"
        assert round_.overlaps == []
        assert set(round_.ran) == set(job_ids)
        await eventually(lambda: _ready(scheduler), 10, what="the scheduler is ready on the new primary")
        # The scheduler's own client found the new primary too: a job enqueued through its NATS API runs.
        await JobsClient(scheduler.nc, prefix=prefix).enqueue_job("work", {"sleep": 0}, job_id="via-scheduler")
        await eventually(lambda: "via-scheduler" in round_.ran, 10, what="the scheduler's job ran")
        print(f"\nfailover round: {jobs} jobs, primary {old} -> {new} "
              f"{time.monotonic() - killed_at:.1f}s to all done, {round_.refused} enqueues refused and retried, "
              f"{sum(n - 1 for n in round_.ran.values())} re-runs (completions the outage left unrecorded), "
              "none at once")
    finally:
        for processor in round_.processors:
            await processor.stop()
        await watcher.aclose()


async def _produce(round_: FailoverRound, job_ids: list[str]) -> None:
    for start in range(0, len(job_ids), 10):
        await asyncio.gather(*(round_.enqueue_until_acknowledged(i) for i in job_ids[start:start + 10]))
        await asyncio.sleep(0.01)


async def test_killing_the_primary_mid_round_loses_no_acknowledged_job_and_runs_none_twice_at_once(
    sentinel_group: SentinelGroup, nats_server: NatsServer,
    scheduler_on: Callable[[str, str], Awaitable[SchedulerApp]],
) -> None:
    prefix = unique_prefix()
    scheduler = await scheduler_on(sentinel_group.url, prefix)
    await _failover_round(sentinel_group, nats_server.url, scheduler, prefix, jobs=300)


@pytest.mark.chaos
async def test_a_large_failover_round_loses_no_acknowledged_job(
    sentinel_group: SentinelGroup, nats_server: NatsServer,
    scheduler_on: Callable[[str, str], Awaitable[SchedulerApp]],
) -> None:
    prefix = unique_prefix()
    scheduler = await scheduler_on(sentinel_group.url, prefix)
    await _failover_round(sentinel_group, nats_server.url, scheduler, prefix, jobs=5000)


# ---- a three-primary cluster -----------------------------------------------------------------------------------


@pytest.fixture
async def cluster_client(valkey_cluster: ValkeyCluster) -> AsyncIterator[Any]:
    client = connect_redis(valkey_cluster.url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("per_queue", [20, pytest.param(2000, marks=pytest.mark.chaos)])
async def test_jobs_across_several_queues_with_delays_and_cron_run_on_a_cluster(
    per_queue: int, valkey_cluster: ValkeyCluster, nats_server: NatsServer,
) -> None:
    prefix = unique_prefix()
    queues = ["alpha", "beta", "gamma", "delta"]
    done: dict[str, list[str]] = {q: [] for q in queues}
    processors = []
    for queue in queues:
        processor = BackgroundProcessor(valkey_cluster.url, nats_url=nats_server.url, prefix=prefix,
                                        queue_name=queue, workers=4, maintenance_interval=0.1, shutdown_timeout=2)

        async def work(data: dict[str, Any], queue: str = queue) -> None:
            done[queue].append(str(data["n"]))

        processor.handle_job("work", work)
        processors.append(processor)
        await processor.start()
    try:
        for processor in processors:
            for n in range(per_queue):
                await processor.enqueue_job("work", {"n": f"now-{n}"})
            await processor.schedule_job("work", {"n": "later"}, in_=0.5)
            await processor.schedule_recurring("tick", "work", {"n": "cron"}, cron="* * * * * *")
        await eventually(lambda: all(len([n for n in d if n.startswith("now-")]) == per_queue and "later" in d
                                     and "cron" in d for d in done.values()), 15 + per_queue / 100, interval=0.05,
                         what="immediate, delayed and cron jobs ran on every queue")
    finally:
        for processor in processors:
            await processor.stop()
    # The queues' tags spread them over the primaries, and each queue's keys stay on one.
    owners = {q: {i for i, node in enumerate(valkey_cluster.nodes)
                  if admin(node, "SCAN", 0, "MATCH", f"{prefix}:jobs:{{{q}}}:*", "COUNT", 10_000)[1]}
              for q in queues}
    assert all(len(nodes) == 1 for nodes in owners.values()), owners
    assert len(set().union(*owners.values())) > 1, owners


async def test_every_job_store_operation_keeps_to_its_queues_slot_on_a_cluster(cluster_client: Any) -> None:
    # A script touching a key outside the slot it was routed by fails on a cluster node, so each call here
    # would raise if one of them reached past its queue's hash tag.
    store = JobStore(cluster_client, queue="ops", prefix=unique_prefix(), limits=JobLimits(require_known_type=False))
    await store.register_types(["work"])
    assert await store.known_types() == {"work"}
    await store.enqueue_many([_job(f"j{i}") for i in range(4)])
    (first, second, third, fourth) = await store.claim(["work"], 4, "w1", 60_000)
    assert await store.renew([(first.job_id, first.token)], 60_000) == [1]
    assert await store.complete([(first.job_id, first.token, b"1")]) == [True]
    assert (await store.fail(second.job_id, second.token, "boom", retry=False, delay_ms=0)).outcome == "dead"
    assert await store.release([(third.job_id, third.token)]) == ["work"]
    assert (await store.cancel(fourth.job_id))[0] == "cancelling"
    assert await store.finish_cancelled(fourth.job_id, fourth.token)
    assert (await store.dead())[1] == 1
    assert await store.retry_dead() == [(second.job_id, "work")]
    assert await store.ready_types() == {"work": 2}
    assert (await store.requeue_expired()) == []
    await store.enqueue(NewJob(job_id="later", job_type="work", data=b"{}", priority=Priority.LOW, max_attempts=1,
                               retry_delay_ms=0, delay_ms=60_000))
    assert (await store.promote_due()).next_due_ms > 0
    claimed = await store.claim(["work"], 10, "w2", 60_000)
    for job in claimed:
        await store.fail(job.job_id, job.token, "again", retry=False, delay_ms=0)
    assert await store.purge_dead() == 2
    await store.add_recurring(RecurringJob(name="tick", cron="* * * * * *", job_type="work"))
    assert [r.name for r in await store.list_recurring()] == ["tick"]
    await asyncio.sleep(1.1)
    fired, _ = await store.fire_due_recurring()
    assert [spec.name for spec, _ in fired] == ["tick"]
    assert await store.remove_recurring("tick")
    stats = await store.stats()
    assert (stats.succeeded, stats.scheduled, stats.recurring) == (1, 1, 0)


async def test_on_a_cluster_wait_asks_the_node_that_owns_the_queue(cluster_client: Any) -> None:
    # These primaries have no replicas: the write happens, the WAIT (sent to the queue's node, on the connection
    # that wrote) counts none, and the enqueue is refused as unconfirmed.
    store = JobStore(cluster_client, queue="waited", prefix=unique_prefix(),
                     limits=JobLimits(require_known_type=False, wait_replicas=1, wait_timeout=0.05))
    with pytest.raises(JobNotReplicatedError) as refused:
        await store.enqueue(_job("a"))
    assert (refused.value.wanted, refused.value.confirmed) == (1, 0)
    info = await store.get("a")
    assert info is not None and info.status is JobStatus.QUEUED
