"""Two schedulers and two metrics services side by side: every job runs once, a cron schedule fires once per
tick (also after one scheduler is killed), and the cluster's job counters add up to exactly the jobs there were."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import nats
from prometheus_client.parser import text_string_to_metric_families

from raaf.jobs import BackgroundProcessor, JobsClient, current_job
from services.metrics import MetricsApp, MetricsSettings
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer, free_port
from shared.service.app import App
from tests.support.env import service_env
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]
JOBS = 40  # immediate ones; as many again are delayed, so the schedulers' promotion moves them


async def counter_sum(apps: list[App], name: str, **labels: str) -> float:
    """``name`` summed over every replica's /metrics (what a dashboard's sum() shows)."""
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for app in apps:
            async with session.get(f"{app.http_url}/metrics") as resp:
                text = await resp.text()
            total += sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                         if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
    return total


async def test_two_schedulers_and_two_metrics_services_run_each_job_once_and_count_it_once(
    nats_server: NatsServer, redis_server: ValkeyServer, prefix: str, start_app: StartApp,
    service_process: Callable[..., ServiceProcess]
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05")
    port = free_port()
    victim = service_process("services.scheduler", {**env, "HTTP_PORT": str(port), "INSTANCE_ID": "victim"})
    await victim.wait_ready(f"http://127.0.0.1:{port}")
    await start_app(SchedulerApp(SchedulerSettings.from_env({**env, "INSTANCE_ID": "survivor"})))
    metrics = [await start_app(MetricsApp(MetricsSettings.from_env({**env, "INSTANCE_ID": f"m{i}"})))
               for i in range(2)]
    ran: list[str] = []
    ran_at: dict[str, float] = {}
    workers = []
    for _ in range(2):
        # No maintenance of their own: promotion and cron are the schedulers' work here.
        worker = BackgroundProcessor(redis_server.url, nats_url=nats_server.url, prefix=prefix,
                                     maintenance_interval=None)

        @worker.handle_job("work")
        async def work(data: Any) -> None:
            ran.append(current_job().job_id)
            ran_at[current_job().job_id] = time.time()

        await worker.start()
        workers.append(worker)
    nc = await nats.connect(nats_server.url)
    try:
        jobs = JobsClient(nc, prefix=prefix)
        await jobs.add_recurring("every-second", "work", cron="* * * * * *")
        for n in range(JOBS):
            await jobs.enqueue_job("work", {"n": n}, job_id=f"now-{n}")
            await jobs.enqueue_job("work", {"n": n}, job_id=f"later-{n}", delay=0.5 + n * 0.05)

        def fires() -> list[int]:
            return sorted(int(job_id.rsplit(":", 1)[1]) for job_id in ran if job_id.startswith("cron:"))

        async def both_kinds_done_and_three_ticks() -> bool:
            return sum(1 for j in ran if not j.startswith("cron:")) >= 2 * JOBS and len(fires()) >= 3

        await eventually(both_kinds_done_and_three_ticks, 30, interval=0.05, what="every job and three cron ticks")
        # One scheduler is killed; the other keeps the schedule, still once per tick.
        victim.kill()
        ticks_before = len(fires())

        async def three_more_ticks() -> bool:
            return len(fires()) >= ticks_before + 3

        await eventually(three_more_ticks, 15, interval=0.05, what="three more ticks from the remaining scheduler")
        await jobs.remove_recurring("every-second")
        await asyncio.sleep(1.2)  # time passing is the subject: a duplicate run or tick would show by now
    finally:
        await nc.close()
        for worker in workers:
            await worker.stop(timeout=1)

    counts = Counter(ran)
    assert [job for job, times in counts.items() if times > 1] == [], "no job ran twice"
    assert {f"now-{n}" for n in range(JOBS)} | {f"later-{n}" for n in range(JOBS)} <= counts.keys()
    due = fires()
    late = max(at - int(job.rsplit(":", 1)[1]) / 1000 for job, at in ran_at.items() if job.startswith("cron:"))
    print(f"\ntwo schedulers, one killed -9 midway: {len(due)} cron fires, one per second, each ran at most "
          f"{late:.2f}s after its due time")
    assert all(b - a == 1000 for a, b in itertools.pairwise(due)), f"one fire per tick, none skipped: {due}"
    finished = len(ran)

    async def counted() -> bool:
        return await counter_sum(metrics, "raaf_cluster_job_successes_total", job_type="work") == finished

    await eventually(counted, 10, interval=0.1, what="the metrics replicas counted every success")
    assert await counter_sum(metrics, "raaf_cluster_job_enqueues_total", job_type="work") == finished
    started = time.monotonic()
    await asyncio.sleep(0.3)  # time passing is the subject: a double count would show by now
    assert await counter_sum(metrics, "raaf_cluster_job_successes_total", job_type="work") == finished, (
        f"still {finished} after {time.monotonic() - started:.1f}s: each event counted by one replica")
