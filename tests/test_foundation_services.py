"""Every service starts against real servers, reports readiness truthfully, and answers NATS micro pings."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.apps import FACTORIES, StartApp
from tests.support.env import service_env
from tests.support.waiting import eventually


async def readyz(session: aiohttp.ClientSession, app: App) -> int:
    try:
        async with session.get(f"{app.http_url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as resp:
            return resp.status
    except aiohttp.ClientError:
        return 0


async def wait_status(session: aiohttp.ClientSession, app: App, status: int, within: float) -> float:
    """Seconds until ``/readyz`` answers ``status``."""
    start = time.monotonic()

    async def answers() -> bool:
        return await readyz(session, app) == status

    await eventually(answers, within, interval=0.05, what=f"{app.service} /readyz becoming {status}")
    return time.monotonic() - start


@pytest.mark.parametrize("name", list(FACTORIES))
async def test_readiness_follows_nats_down_and_back_up(
    name: str, private_nats: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    app = await start_app(FACTORIES[name](service_env(private_nats.url, redis_server.url)))
    async with aiohttp.ClientSession() as session:
        assert await readyz(session, app) == 200
        private_nats.kill()
        assert await wait_status(session, app, 503, within=2.0) <= 2.0
        async with session.get(f"{app.http_url}/healthz") as resp:
            assert resp.status == 200, "liveness must not depend on NATS"
        private_nats.start()
        await wait_status(session, app, 200, within=10.0)


async def test_scheduler_is_not_ready_without_redis(
    nats_server: NatsServer, private_redis: ValkeyServer, start_app: StartApp
) -> None:
    app = await start_app(FACTORIES["scheduler"](service_env(nats_server.url, private_redis.url)))
    async with aiohttp.ClientSession() as session:
        assert await readyz(session, app) == 200
        private_redis.kill()
        await wait_status(session, app, 503, within=3.0)
        private_redis.start()
        await wait_status(session, app, 200, within=10.0)


async def until_sample(app: App, name: str, predicate: Callable[[float], bool], within: float) -> None:
    await eventually(lambda: predicate(app.metrics.registry.get_sample_value(name) or 0.0), within, interval=0.05,
                     what=f"{name} reaching the expected value")


async def test_nats_disconnects_and_reconnects_are_counted(
    private_nats: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    app = await start_app(FACTORIES["gateway"](service_env(private_nats.url, redis_server.url)))
    assert app.metrics.registry.get_sample_value("raaf_nats_reconnects_total") == 0
    private_nats.kill()
    await until_sample(app, "raaf_nats_disconnects_total", lambda v: v == 1, 5)
    assert app.metrics.registry.get_sample_value("raaf_nats_connected") == 0
    private_nats.start()
    await until_sample(app, "raaf_nats_reconnects_total", lambda v: v == 1, 10)
    assert app.metrics.registry.get_sample_value("raaf_nats_connected") == 1


async def test_a_clean_stop_is_neither_counted_nor_logged_as_a_nats_disconnect(
    nats_server: NatsServer, redis_server: ValkeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="raaf.nats")
    app = FACTORIES["gateway"](service_env(nats_server.url, redis_server.url))
    await asyncio.wait_for(app.start(), 30)
    await app.stop()
    assert app.metrics.registry.get_sample_value("raaf_nats_disconnects_total") == 0
    assert [r.getMessage() for r in caplog.records if r.name == "raaf.nats"] == ["nats connection closed"]


async def test_failed_redis_calls_of_the_scheduler_are_counted_without_any_health_check(
    nats_server: NatsServer, private_redis: ValkeyServer, start_app: StartApp
) -> None:
    app = await start_app(FACTORIES["scheduler"](service_env(nats_server.url, private_redis.url,
                                                             JOBS_TICK_INTERVAL="0.05")))
    assert app.metrics.registry.get_sample_value("raaf_redis_errors_total") == 0
    private_redis.kill()
    # Nobody asks /readyz here: the maintenance loop's failed calls are what is counted.
    await until_sample(app, "raaf_redis_errors_total", lambda v: v >= 3, 10)
    private_redis.start()


@pytest.mark.parametrize("name", list(FACTORIES))
async def test_metrics_endpoint_parses_as_prometheus_text(
    name: str, nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    app = await start_app(FACTORIES[name](service_env(nats_server.url, redis_server.url)))
    async with aiohttp.ClientSession() as session, session.get(f"{app.http_url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["raaf_nats_connected"].samples[0].value == 1
    assert families["raaf_service_ready"].samples[0].value == 1
    assert "process_resident_memory_bytes" in families


async def test_every_service_answers_srv_ping_with_its_name(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    prefix = f"t{time.monotonic_ns()}"
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix)
    for factory in FACTORIES.values():
        await start_app(factory(env))
    nc = await nats.connect(nats_server.url)
    try:
        inbox = nc.new_inbox()
        names: set[str] = set()
        sub = await nc.subscribe(inbox)
        await nc.publish("$SRV.PING", b"", reply=inbox)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=deadline - time.monotonic())
            except nats.errors.TimeoutError:
                break
            names.add(json.loads(msg.data)["name"])
        expected = {f"{prefix}-{name}" for name in FACTORIES}
        assert expected <= names
    finally:
        await nc.close()


async def test_stop_is_idempotent(nats_server: NatsServer, redis_server: ValkeyServer) -> None:
    app = FACTORIES["gateway"](service_env(nats_server.url, redis_server.url))
    await app.start()
    await app.stop()
    await app.stop()
    assert app._tasks == set()
