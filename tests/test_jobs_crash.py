"""No job is lost: workers killed with SIGKILL mid-run, a worker cut off from Redis, Redis restarted."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import redis.asyncio as redis
from nats.aio.msg import Msg

from proto.jobs import JobRetried, JobStatus, job_lifecycle_decoder
from raaf.jobs import BackgroundProcessor, JobLimits, JobStore
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.env import service_env, unique_prefix
from tests.support.processes import WorkerProcess
from tests.support.proxy import TcpProxy
from tests.support.waiting import eventually

LEASE = 2.0


class KillRound:
    """Workers as child processes running ``work`` jobs; some are SIGKILLed while the round runs."""

    def __init__(self, nats_url: str, redis_url: str, prefix: str, tmp: Path, concurrency: int) -> None:
        self.env = {"NATS_URL": nats_url, "REDIS_URL": redis_url, "RAAF_PREFIX": prefix,
                    "JOBS_LEASE_SECONDS": str(LEASE), "BACKGROUND_WORKERS": str(concurrency),
                    "BACKGROUND_RETRY_COUNT": "5", "LOG_LEVEL": "warning"}
        self.tmp = tmp
        self.prefix = prefix
        self.workers: dict[str, WorkerProcess] = {}
        self.redis = redis.Redis.from_url(redis_url)
        self.store = JobStore(self.redis, queue="jobs", prefix=prefix)
        self.returned: dict[str, list[float]] = {}  # job id -> when expired leases sent it back
        self.kills: list[tuple[float, set[str]]] = []  # (time, jobs the killed worker held)

    def spawn_worker(self) -> WorkerProcess:
        name = f"worker-{len(self.workers)}"
        worker = WorkerProcess({**self.env, "INSTANCE_ID": name}, self.tmp / f"{name}.log")
        self.workers[name] = worker
        return worker

    async def busiest_worker(self) -> str:
        """The live worker holding the most jobs right now."""
        alive = [n for n, w in self.workers.items() if w.proc.poll() is None]
        counts = {name: len(await self.held_by(name)) for name in alive}
        return max(alive, key=lambda name: counts[name])

    async def held_by(self, name: str) -> set[str]:
        ids = [i.decode() for i in await self.redis.zrange(f"{self.store.base}leases", 0, -1)]
        owners = [await self.redis.hget(self.store.job_key(i), "worker") for i in ids]
        return {i for i, owner in zip(ids, owners, strict=True) if owner == name.encode()}

    async def kill(self, name: str) -> None:
        self.workers[name].kill()
        held = await self.held_by(name)  # after the kill: nothing can change its leases any more
        self.kills.append((time.time(), held))

    async def on_event(self, msg: Msg) -> None:
        event = job_lifecycle_decoder.decode(msg.data)
        if isinstance(event, JobRetried) and event.reason == "lease_expired":
            self.returned.setdefault(event.job_id, []).append(time.time())

    async def succeeded(self) -> int:
        return (await self.store.stats()).succeeded

    async def check(self, job_ids: list[str]) -> None:
        """Every job succeeded; every attempt's side effect happened at most once, the successful one's exactly
        once; the killed workers' jobs, and only they, came back, each within the lease of its worker's death."""
        returned_late = []
        for kill_time, held in self.kills:
            assert held, "each killed worker held jobs (else the round proves nothing)"
            for job_id in held:
                later = [t - kill_time for t in self.returned.get(job_id, []) if t > kill_time]
                assert later, f"{job_id} held by a killed worker never came back"
                returned_late.append(min(later))
        assert set(self.returned) == set().union(*(held for _, held in self.kills))
        assert returned_late and max(returned_late) <= LEASE + 0.5, returned_late
        infos = [await self.store.get(i) for i in job_ids]
        assert all(info is not None and info.status is JobStatus.SUCCEEDED for info in infos)
        async with self.redis.pipeline(transaction=False) as pipe:
            for info in infos:
                assert info is not None
                for attempt in range(1, info.attempts + 1):
                    pipe.get(f"{self.prefix}:effects:{info.job_id}:{attempt}")
            effects = iter(await pipe.execute())
        for info in infos:
            assert info is not None
            counts = [int(next(effects) or 0) for _ in range(info.attempts)]
            assert counts[-1] == 1, f"{info.job_id}: successful attempt's side effect counted {counts[-1]} times"
            assert all(c <= 1 for c in counts), f"{info.job_id}: an attempt ran twice: {counts}"
            if info.job_id not in self.returned:
                assert info.attempts == 1
        print(f"\nkill round: {len(job_ids)} jobs, {len(self.kills)} SIGKILLs, {len(self.returned)} jobs returned "
              f"by lease expiry {min(returned_late):.2f}-{max(returned_late):.2f}s after their worker died "
              f"(lease {LEASE}s), all succeeded, no attempt's side effect counted twice")

    async def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()
        await self.redis.aclose()


@pytest.fixture
async def scheduler_for(nats_server: NatsServer, start_app: Callable[[App], Awaitable[App]]
                        ) -> Callable[[str, str], Awaitable[SchedulerApp]]:
    async def start(redis_url: str, prefix: str) -> SchedulerApp:
        env = service_env(nats_server.url, redis_url, RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05")
        app = await start_app(SchedulerApp(SchedulerSettings.from_env(env)))
        assert isinstance(app, SchedulerApp)
        return app

    return start


async def run_kill_round(nats_url: str, redis_url: str, tmp: Path, jobs: int, workers: int, kills: int,
                         concurrency: int, scheduler_for: Callable[[str, str], Awaitable[SchedulerApp]]) -> None:
    prefix = unique_prefix()
    await scheduler_for(redis_url, prefix)
    round_ = KillRound(nats_url, redis_url, prefix, tmp, concurrency)
    nc = await nats.connect(nats_url)
    await nc.subscribe(f"{prefix}.jobs.lifecycle.retried", cb=round_.on_event)
    producer = BackgroundProcessor(redis_url, nats_url=nats_url, prefix=prefix, maintenance_interval=None)
    try:
        for _ in range(workers):
            await round_.spawn_worker().wait_ready()
        rng = random.Random(7)
        job_ids = await asyncio.gather(*(producer.enqueue_job("work", {"sleep": rng.uniform(0.01, 0.09)})
                                         for _ in range(jobs)))
        for k in range(kills):
            target = jobs * (k + 1) // (kills + 1)
            await eventually(lambda t=target: _at_least(round_.succeeded(), t), 60, what=f"{target} jobs done")
            await round_.kill(await round_.busiest_worker())
            round_.spawn_worker()  # the replacement starts while the others carry on
        await eventually(lambda: _at_least(round_.succeeded(), jobs), 60, what="every job done")
        await eventually(lambda: round_.returned.keys() >= set().union(*(held for _, held in round_.kills)), 5,
                         what="a lease_expired retry event for every job a killed worker held")
        await round_.check(list(job_ids))
    finally:
        await producer.stop()
        await nc.close()
        await round_.close()


async def _at_least(count: Awaitable[int], target: int) -> bool:
    return await count >= target


async def test_workers_killed_mid_run_lose_no_job_and_their_jobs_return_within_the_lease(
    nats_server: NatsServer, redis_server: ValkeyServer, tmp_path: Path,
    scheduler_for: Callable[[str, str], Awaitable[SchedulerApp]],
) -> None:
    await run_kill_round(nats_server.url, redis_server.url, tmp_path, jobs=300, workers=2, kills=2, concurrency=4,
                         scheduler_for=scheduler_for)


@pytest.mark.chaos
async def test_thousands_of_jobs_survive_repeated_worker_kills(
    nats_server: NatsServer, redis_server: ValkeyServer, tmp_path: Path,
    scheduler_for: Callable[[str, str], Awaitable[SchedulerApp]],
) -> None:
    await run_kill_round(nats_server.url, redis_server.url, tmp_path, jobs=5000, workers=3, kills=6,
                         concurrency=16, scheduler_for=scheduler_for)


@pytest.fixture
async def cut_off(redis_server: ValkeyServer) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(redis_server.host, redis_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_a_worker_cut_off_from_redis_stops_its_job_before_another_worker_takes_it(
    nats_server: NatsServer, redis_server: ValkeyServer, cut_off: TcpProxy,
    scheduler_for: Callable[[str, str], Awaitable[SchedulerApp]],
) -> None:
    prefix = unique_prefix()
    await scheduler_for(redis_server.url, prefix)
    timeline: dict[str, float] = {}
    options: dict[str, Any] = {"nats_url": nats_server.url, "prefix": prefix, "lease_seconds": 1.5,
                               "maintenance_interval": None}
    isolated = BackgroundProcessor(cut_off.url, **options)
    healthy = BackgroundProcessor(redis_server.url, **options)

    @isolated.handle_job("long")
    async def long_on_isolated(data: Any) -> None:
        timeline["isolated_started"] = time.time()
        try:
            await asyncio.sleep(30)
        finally:
            timeline["isolated_stopped"] = time.time()

    @healthy.handle_job("long")
    async def long_on_healthy(data: Any) -> str:
        timeline["healthy_started"] = time.time()
        return "done"

    try:
        await isolated.start()
        job_id = await isolated.enqueue_job("long")
        await eventually(lambda: "isolated_started" in timeline, 5, what="job started on the isolated worker")
        cut_off.partition()
        timeline["cut"] = time.time()
        await healthy.start()
        info = await healthy.wait_for_job(job_id, timeout=10)
        assert (info.status, info.attempts, info.worker) == (JobStatus.SUCCEEDED, 2, healthy.worker_id)
        assert timeline["isolated_stopped"] < timeline["healthy_started"], timeline
        assert timeline["isolated_stopped"] - timeline["cut"] <= 1.5, "stopped within its lease"
    finally:
        cut_off.heal()
        await healthy.stop(timeout=1)
        await isolated.stop(timeout=1)


async def enqueue_mixed(processor: BackgroundProcessor) -> list[str]:
    ids = [await processor.enqueue_job("work", {"n": n}, priority=p)
           for n, p in enumerate(["high", "normal", "low"] * 30)]
    ids.append(await processor.schedule_job("work", {"n": "later"}, in_=1.5))
    return ids


@pytest.mark.parametrize("crash", [False, True], ids=["graceful-restart", "kill-9-after-fsync"])
async def test_queued_jobs_survive_a_redis_restart(
    nats_server: NatsServer, private_redis: ValkeyServer, crash: bool,
    scheduler_for: Callable[[str, str], Awaitable[SchedulerApp]],
) -> None:
    prefix = unique_prefix()
    await scheduler_for(private_redis.url, prefix)
    limits = JobLimits(require_known_type=False)
    producer = BackgroundProcessor(private_redis.url, nats_url=nats_server.url, prefix=prefix, limits=limits,
                                   maintenance_interval=None)
    try:
        ids = await enqueue_mixed(producer)
        before = await producer.stats()
        if crash:
            await asyncio.sleep(1.2)  # appendfsync everysec: what was written a second ago is on disk
            private_redis.kill()
        else:
            private_redis.stop()
        private_redis.start()
        after = await wait_until_stats(producer)
        keys = ("high_priority_queue", "normal_priority_queue", "low_priority_queue", "scheduled_jobs")
        assert {k: after[k] for k in keys} == {k: before[k] for k in keys} == {
            "high_priority_queue": 30, "normal_priority_queue": 30, "low_priority_queue": 30, "scheduled_jobs": 1}

        done: list[Any] = []
        worker = BackgroundProcessor(private_redis.url, nats_url=nats_server.url, prefix=prefix, workers=20,
                                     maintenance_interval=None)
        worker.handle_job("work", lambda data: done.append(data["n"]))
        await worker.start()
        await eventually(lambda: len(done) == len(ids), 10, what="every job after the restart")
        assert sorted(map(str, done)) == sorted([str(n) for n in range(90)] + ["later"])
        await worker.stop()
    finally:
        await producer.stop()


async def wait_until_stats(processor: BackgroundProcessor) -> dict[str, Any]:
    async def stats() -> dict[str, Any] | None:
        try:
            return await processor.stats()
        except Exception:
            return None

    return await eventually(stats, 10, interval=0.1, what="the processor's stats (Redis answering again)")


async def test_workers_and_the_scheduler_carry_on_after_redis_comes_back(
    nats_server: NatsServer, private_redis: ValkeyServer,
    scheduler_for: Callable[[str, str], Awaitable[SchedulerApp]],
) -> None:
    prefix = unique_prefix()
    await scheduler_for(private_redis.url, prefix)
    done: list[int] = []
    worker = BackgroundProcessor(private_redis.url, nats_url=nats_server.url, prefix=prefix,
                                 maintenance_interval=None)
    worker.handle_job("work", lambda data: done.append(data))
    await worker.start()
    try:
        await worker.enqueue_job("work", 1)
        await eventually(lambda: done == [1], 5, what="first job")
        private_redis.kill()
        await asyncio.sleep(0.5)  # an outage the workers notice
        private_redis.start()
        await eventually(lambda: _enqueued(worker, 2), 10, what="enqueue after restart")
        await eventually(lambda: done == [1, 2], 10, what="second job after the restart")
        delayed = await worker.schedule_job("work", 3, in_=0.2)
        info = await worker.wait_for_job(delayed, timeout=5)
        assert info.status is JobStatus.SUCCEEDED
    finally:
        await worker.stop()


async def _enqueued(processor: BackgroundProcessor, data: int) -> bool:
    try:
        await processor.enqueue_job("work", data, job_id=f"retry-safe-{data}")  # a lost reply must not duplicate
        return True
    except Exception:
        return False
