"""Jobs over HTTP through a real gateway, scheduler, worker, NATS and Valkey."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest

from raaf.jobs import BackgroundProcessor
from services.gateway import GatewayApp, GatewaySettings
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.env import service_env, unique_prefix
from tests.support.waiting import eventually

SECRET = "jobs-test-secret-that-is-long-enough-for-hs256"
StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture
async def stack(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, BackgroundProcessor]]:
    prefix = unique_prefix()
    monkeypatch.setenv("GATEWAY_JOBS_MAX_BODY_BYTES", "2048")
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05",
                      GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET)
    await start_app(SchedulerApp(SchedulerSettings.from_env(env)))
    gateway = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    worker = BackgroundProcessor(redis_server.url, nats_url=nats_server.url, prefix=prefix,
                                 maintenance_interval=None, retry_count=0)

    @worker.handle_job("resize")
    async def resize(data: dict[str, Any]) -> dict[str, int]:
        return {"width": data["width"] // 2}

    await worker.start()
    yield gateway.http_url, worker
    await worker.stop(timeout=1)


def token(*roles: str) -> str:
    return jwt.encode({"sub": "alice", "roles": list(roles), "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


async def test_jobs_are_enqueued_looked_up_and_managed_over_http(stack: tuple[str, BackgroundProcessor]) -> None:
    url, _ = stack
    auth = {"Authorization": f"Bearer {token('admin')}"}  # dead letters and statistics are for admins
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(f"{url}/v1/jobs", json={"job_type": "resize", "data": {"width": 640},
                                                     "job_id": "img-1", "priority": "high"}) as resp:
            assert resp.status == 202
            accepted = await resp.json()
        img = accepted["job_id"]  # the chosen id, in alice's namespace
        assert (accepted["type"], img.endswith(":img-1"), accepted["status"]) == ("job_accepted", True, "queued")
        async with http.post(f"{url}/v1/jobs", json={"job_type": "resize", "data": {"width": 1},
                                                     "job_id": "img-1"}) as resp:
            assert resp.status == 200 and (await resp.json())["duplicate"] is True

        async def finished() -> bool:
            async with http.get(f"{url}/v1/jobs/{img}") as r:
                return bool((await r.json())["status"] == "succeeded")

        await eventually(finished, 5, what="img-1 finished")
        async with http.get(f"{url}/v1/jobs/{img}") as resp:
            job = await resp.json()
        assert (job["result"], job["attempts"], job["priority"]) == ({"width": 320}, 1, "high")

        async with http.post(f"{url}/v1/jobs", json={"job_type": "resize", "data": {}, "delay": 60}) as resp:
            later = (await resp.json())["job_id"]
        async with http.delete(f"{url}/v1/jobs/{later}") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
        async with http.delete(f"{url}/v1/jobs/{later}") as resp:
            assert resp.status == 409 and (await resp.json())["code"] == "conflict"

        async with http.post(f"{url}/v1/jobs", json={"job_type": "resize", "data": {"height": 1},
                                                     "retry_count": 0}) as resp:
            broken = (await resp.json())["job_id"]  # KeyError in the handler, no retries: dead

        async def dead_listed() -> bool:
            async with http.get(f"{url}/v1/jobs/dead?limit=10") as r:
                return bool((await r.json())["total"] == 1)

        await eventually(dead_listed, 5, what="dead job listed")
        async with http.get(f"{url}/v1/jobs/dead") as resp:
            assert (await resp.json())["jobs"][0]["job_id"] == broken
        async with http.post(f"{url}/v1/jobs/dead/retry", json={"job_ids": [broken]}) as resp:
            assert (await resp.json())["count"] == 1
        await eventually(dead_listed, 5, what="dead again after the retry")
        async with http.delete(f"{url}/v1/jobs/dead") as resp:
            assert (await resp.json())["count"] == 1

        async with http.put(f"{url}/v1/jobs/recurring/hourly",
                            json={"cron": "0 * * * *", "job_type": "resize", "data": {"width": 2}}) as resp:
            assert resp.status == 200 and (await resp.json())["next_run_at"] > time.time()
        async with http.get(f"{url}/v1/jobs/recurring") as resp:
            assert [s["name"].endswith(".hourly") for s in (await resp.json())["schedules"]] == [True]
        async with http.delete(f"{url}/v1/jobs/recurring/hourly") as resp:
            assert resp.status == 204

        async with http.get(f"{url}/v1/jobs/stats") as resp:
            stats = await resp.json()
        assert (stats["type"], stats["succeeded_jobs"], stats["failed_jobs"]) == ("job_stats", 1, 0)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (b'{"job_type": "unknown-type"}', 400, "bad_request"),
        (b'{"job_type": "resize", "priority": "now"}', 400, "bad_request"),
        (b'{"job_type": "resize", "run_at": 5}', 400, "bad_request"),
        (b'{"job_type": "resize", "queue": "nope"}', 404, "not_found"),
        (b'{"job_type": "resize", "data": "' + b"x" * 3000 + b'"}', 413, "too_large"),
    ],
)
async def test_bad_http_enqueues_get_typed_errors_with_matching_statuses(
    stack: tuple[str, BackgroundProcessor], body: bytes, status: int, code: str
) -> None:
    url, worker = stack
    before = await worker.stats()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token('admin')}"}) as http, \
            http.post(f"{url}/v1/jobs", data=body, headers={"Content-Type": "application/json"}) as resp:
        answer = await resp.json()
    assert (resp.status, answer["type"], answer["code"]) == (status, "error", code), answer
    after = await worker.stats()
    assert (after["normal_priority_queue"], after["scheduled_jobs"], after["succeeded_jobs"]) == (
        before["normal_priority_queue"], before["scheduled_jobs"], before["succeeded_jobs"])


async def test_http_jobs_need_a_token_when_the_gateway_requires_auth(stack: tuple[str, BackgroundProcessor]) -> None:
    url, _ = stack
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/jobs", json={"job_type": "resize"}) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"
        async with http.get(f"{url}/v1/jobs/stats") as resp:
            assert resp.status == 401
