"""/stats keeps listening a short grace window after every known instance answered, for reporters it cannot know."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from proto.stats import ClusterStats
from proto.subjects import Subjects
from services.metrics import MetricsApp, MetricsSettings
from shared.devstack.servers import NatsServer
from shared.service.app import App
from shared.stats.responder import StatsResponder
from tests.support.env import service_env, unique_prefix

StartApp = Callable[[App], Awaitable[App]]
REPORTER_DELAY = 0.4  # the unknown reporter answers this long after the known instances


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    connection = await nats.connect(nats_server.url)
    yield connection
    await connection.close()


async def slow_reporter(nc: NATS, prefix: str) -> None:
    """A library stats reporter that never announced itself (so neither $SRV.PING nor discovery found it)."""
    async def figures() -> dict[str, Any]:
        await asyncio.sleep(REPORTER_DELAY)
        return {}

    responder = StatsResponder(service="event-emitter", instance="lib-1", version="0", http_url=None,
                               provider=figures)
    await responder.serve(nc, Subjects(prefix).service_stats)


async def stats_of(nats_server: NatsServer, nc: NATS, start_app: StartApp, grace: str) -> tuple[ClusterStats, float]:
    prefix = unique_prefix()
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, METRICS_GATHER_TIMEOUT="5",
                      METRICS_DISCOVERY_INTERVAL="3600", METRICS_GATHER_GRACE=grace)
    metrics = await start_app(MetricsApp(MetricsSettings.from_env(env)))
    assert isinstance(metrics, MetricsApp)
    await metrics.discover_now()  # a discovery round is over: the gather knows whom to wait for
    await slow_reporter(nc, prefix)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.get(f"{metrics.http_url}/stats") as response:
        assert response.status == 200
        stats = msgspec.json.decode(await response.read(), type=ClusterStats)
    return stats, time.monotonic() - started


async def test_a_reporter_answering_within_the_grace_window_is_counted_and_the_gather_still_ends_early(
    nats_server: NatsServer, nc: NATS, start_app: StartApp
) -> None:
    stats, took = await stats_of(nats_server, nc, start_app, grace="1.5")
    assert stats.services == {"metrics": 1, "event-emitter": 1}
    assert took < 3, f"the gather waited {took:.1f}s: the grace window did not end it early"


async def test_without_a_grace_window_the_gather_ends_before_the_unknown_reporter_answers(
    nats_server: NatsServer, nc: NATS, start_app: StartApp
) -> None:
    stats, took = await stats_of(nats_server, nc, start_app, grace="0")
    assert stats.services == {"metrics": 1}
    assert took < REPORTER_DELAY + 1
