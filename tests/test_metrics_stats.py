"""The metrics service adds up every replica's figures, lists every instance's health, and survives losing some."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import msgspec
import nats
import pytest

import raaf
from proto.stats import ClusterHealth, ClusterStats, instance_stats_decoder
from services.gateway import GatewayApp, GatewaySettings
from services.metrics import MetricsApp, MetricsSettings
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.env import ROOT, service_env, unique_prefix
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]


class ReportingGateway(GatewayApp):
    """A gateway whose figures the test sets (the contract under test is the stats hook, not the gateway)."""

    figures: Mapping[str, Any] = {}

    async def stats(self) -> Mapping[str, Any]:
        return self.figures


class ReportingScheduler(SchedulerApp):
    figures: Mapping[str, Any] = {}

    def stats(self) -> Mapping[str, Any]:
        return self.figures


def gateway(env: dict[str, str], instance: str, figures: Mapping[str, Any]) -> ReportingGateway:
    app = ReportingGateway(GatewaySettings.from_env({**env, "INSTANCE_ID": instance}))
    app.figures = figures
    return app


def metrics_app(env: dict[str, str], **extra: str) -> MetricsApp:
    return MetricsApp(MetricsSettings.from_env({**env, "METRICS_GATHER_TIMEOUT": "0.5", **extra}))


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, json.loads(await resp.read())


async def test_stats_adds_up_figures_from_two_gateway_replicas(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    await start_app(gateway(env, "gw-a", {"websocket_server": {"running": True, "connections": 3,
                                                               "messages_sent": 10, "channels": 2}}))
    await start_app(gateway(env, "gw-b", {"websocket_server": {"running": False, "connections": 4,
                                                               "messages_sent": 5, "channels": 7}}))
    metrics = await start_app(metrics_app(env))
    status, body = await get_json(f"{metrics.http_url}/stats")
    assert status == 200
    stats = msgspec.convert(body, ClusterStats)
    assert stats.websocket_server.connections == 7
    assert stats.websocket_server.messages_sent == 15
    assert stats.websocket_server.running is True
    assert stats.websocket_server.channels == 7, "distinct channels per gateway combine by max, not sum"
    assert stats.services == {"gateway": 2, "metrics": 1}
    assert set(body) >= {"websocket_server", "async_runner", "background_processor", "message_queue",
                         "event_emitter", "chat_system"}
    via_api = await raaf.stats(nats_url=nats_server.url, prefix=env["RAAF_PREFIX"])
    assert msgspec.structs.replace(via_api, at=0) == msgspec.structs.replace(stats, at=0)


async def test_figures_read_from_shared_redis_are_not_counted_twice(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    for instance, workers in (("sch-a", 2), ("sch-b", 3)):
        app = ReportingScheduler(SchedulerSettings.from_env({**env, "INSTANCE_ID": instance}))
        app.figures = {"background_processor": {"running": True, "workers": workers, "high_priority_queue": 9,
                                                 "failed_jobs": 1}}
        await start_app(app)
    stats = await raaf.stats(nats_url=nats_server.url, prefix=env["RAAF_PREFIX"], gather_timeout=0.3)
    assert stats.background_processor.workers == 5
    assert stats.background_processor.high_priority_queue == 9
    assert stats.background_processor.failed_jobs == 1
    assert stats.services == {"scheduler": 2}


async def test_chat_rooms_merge_across_replicas(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    room = {"participants": 20, "messages": 450}
    await start_app(gateway(env, "a", {"chat_system": {"connected_clients": 5, "rooms": {"General Support": room}}}))
    await start_app(gateway(env, "b", {"chat_system": {"connected_clients": 2, "rooms": {
        "General Support": room, "Technical Discussion": {"participants": 8, "messages": 120}}}}))
    stats = await raaf.stats(nats_url=nats_server.url, prefix=env["RAAF_PREFIX"], gather_timeout=0.3)
    chat = stats.chat_system
    # Every chat figure is the fold of the chat's JetStream events, which each replica holds whole: replicas
    # report the same clients, so the cluster takes the largest (proto.stats.ChatSystemStats.shared_fields).
    assert chat.connected_clients == 5
    assert {name: (r.participants, r.messages) for name, r in chat.rooms.items()} == {
        "General Support": (20, 450), "Technical Discussion": (8, 120)}


@pytest.mark.parametrize("figures, error", [
    ({"websocket_server": {"connections": "many"}}, "Expected `int`"),
    ({"no_such_section": {}}, "unknown stats sections"),
])
async def test_bad_figures_from_one_instance_are_reported_not_fatal(
    figures: Mapping[str, Any], error: str, nats_server: NatsServer, redis_server: ValkeyServer,
    start_app: StartApp,
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    await start_app(gateway(env, "good", {"websocket_server": {"connections": 1}}))
    await start_app(gateway(env, "bad", figures))
    metrics = await start_app(metrics_app(env))
    status, body = await get_json(f"{metrics.http_url}/stats")
    assert status == 200
    stats = msgspec.convert(body, ClusterStats)
    assert stats.websocket_server.connections == 1
    assert [(e.instance, error in (e.error or "")) for e in stats.errors] == [("bad", True)]


async def test_a_provider_that_hangs_is_cut_off_by_stats_timeout(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    class Hanging(GatewayApp):
        async def stats(self) -> Mapping[str, Any]:
            await asyncio.sleep(30)
            return {}

    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix(), STATS_TIMEOUT="0.2")
    await start_app(Hanging(GatewaySettings.from_env({**env, "INSTANCE_ID": "slow"})))
    started = time.monotonic()
    stats = await raaf.stats(nats_url=nats_server.url, prefix=env["RAAF_PREFIX"], gather_timeout=1.0)
    assert time.monotonic() - started < 2.5
    assert [e.instance for e in stats.errors] == ["slow"]
    assert "longer than 0.2s" in (stats.errors[0].error or "")


async def test_stats_keeps_working_when_a_replica_is_killed(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, service_process: Callable[..., Any]
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    await start_app(gateway(env, "survivor", {"websocket_server": {"connections": 2}}))
    child = service_process("services.gateway", {**env, "INSTANCE_ID": "doomed", "WEBSOCKET_PORT": "0"})
    metrics = await start_app(metrics_app(env, METRICS_DISCOVERY_INTERVAL="0.2", METRICS_INSTANCE_TTL="60"))

    async def knows_doomed() -> bool:
        return ("gateway", "doomed") in metrics.instances

    await eventually(knows_doomed, 15, interval=0.05, what="the metrics service learns of the child gateway")
    child.kill()  # SIGKILL: no stopping announcement
    status, body = await get_json(f"{metrics.http_url}/stats")
    assert status == 200
    stats = msgspec.convert(body, ClusterStats)
    assert stats.websocket_server.connections == 2
    assert [(r.service, r.instance) for r in stats.unanswered] == [("gateway", "doomed")]
    status, body = await get_json(f"{metrics.http_url}/health")
    health = msgspec.convert(body, ClusterHealth)
    assert status == 200 and health.status == "degraded"
    doomed = next(i for i in health.instances if i.instance == "doomed")
    assert not doomed.ready and doomed.error is not None and "unreachable" in doomed.error


async def test_health_lists_every_instance_with_its_readiness(
    nats_server: NatsServer, private_redis: ValkeyServer, start_app: StartApp
) -> None:
    env = service_env(nats_server.url, private_redis.url, RAAF_PREFIX=unique_prefix())
    await start_app(SchedulerApp(SchedulerSettings.from_env({**env, "INSTANCE_ID": "sch"})))
    await start_app(GatewayApp(GatewaySettings.from_env({**env, "INSTANCE_ID": "gw"})))
    metrics = await start_app(metrics_app(env, METRICS_DISCOVERY_INTERVAL="0.2"))

    async def all_known() -> bool:
        return len(metrics.instances) == 3

    await eventually(all_known, 10, interval=0.05, what="three instances known")
    status, body = await get_json(f"{metrics.http_url}/health")
    health = msgspec.convert(body, ClusterHealth)
    assert (status, health.status) == (200, "ok")
    assert {(i.service, i.ready) for i in health.instances} == {("gateway", True), ("scheduler", True),
                                                               ("metrics", True)}
    private_redis.kill()
    health = await raaf.health(nats_url=nats_server.url, prefix=env["RAAF_PREFIX"])
    scheduler = next(i for i in health.instances if i.service == "scheduler")
    assert health.status == "degraded"
    assert (scheduler.ready, scheduler.status, scheduler.checks) == (False, 503, {"nats": True, "redis": False})


async def test_metrics_service_learns_of_instances_from_lifecycle_events(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    # Discovery rounds far apart: only the started/stopping announcements can explain what it knows.
    metrics = await start_app(metrics_app(env, METRICS_DISCOVERY_INTERVAL="3600"))
    gw = await start_app(GatewayApp(GatewaySettings.from_env({**env, "INSTANCE_ID": "late"})))

    async def knows(present: bool) -> bool:
        return (("gateway", "late") in metrics.instances) is present

    await eventually(lambda: knows(True), 2, interval=0.05, what="started announcement seen")
    await gw.stop()
    await eventually(lambda: knows(False), 2, interval=0.05, what="stopping announcement seen")


async def test_silent_instances_are_forgotten_after_their_ttl(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, service_process: Callable[..., Any]
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    child = service_process("services.gateway", {**env, "INSTANCE_ID": "ghost"})
    metrics = await start_app(metrics_app(env, METRICS_DISCOVERY_INTERVAL="0.2", METRICS_INSTANCE_TTL="1",
                                          METRICS_GATHER_TIMEOUT="0.2"))

    async def knows(present: bool) -> bool:
        return (("gateway", "ghost") in metrics.instances) is present

    await eventually(lambda: knows(True), 15, interval=0.05, what="child gateway discovered")
    child.kill()
    await eventually(lambda: knows(False), 5, interval=0.05, what="killed gateway forgotten after its TTL")


async def test_event_bus_throughput_is_counted(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    prefix = unique_prefix()
    metrics = await start_app(metrics_app(service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix)))
    nc = await nats.connect(nats_server.url)
    try:
        for _ in range(5):
            await nc.publish(f"{prefix}.events.user.login", b'{"user_id":"u1"}')
        await nc.flush()
    finally:
        await nc.close()

    async def counted() -> bool:
        return metrics.bus_messages._value.get() == 5

    await eventually(counted, 2, interval=0.05, what="five events counted")
    assert metrics.bus_bytes._value.get() == 5 * len(b'{"user_id":"u1"}')


async def test_srv_stats_shows_the_last_figures(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    await start_app(gateway(env, "micro", {"websocket_server": {"connections": 6}}))
    nc = await nats.connect(nats_server.url)
    try:
        answer = instance_stats_decoder.decode((await nc.request(f"{env['RAAF_PREFIX']}.svc.stats", b"")).data)
        assert answer.websocket_server is not None and answer.websocket_server.connections == 6
        reply = await nc.request(f"$SRV.STATS.{env['RAAF_PREFIX']}-gateway", b"", timeout=2)
        endpoints = {e["name"]: e for e in json.loads(reply.data)["endpoints"]}
        assert endpoints["stats"]["data"]["websocket_server"]["connections"] == 6
        assert endpoints["stats"]["num_requests"] == 1
    finally:
        await nc.close()


async def test_raaf_stats_raises_a_typed_error_when_nats_is_unreachable() -> None:
    with pytest.raises(raaf.ConnectionError) as info:
        await raaf.stats(nats_url="nats://127.0.0.1:1", timeout=0.5)
    assert info.value.code == "connection_error"


def test_metrics_settings_name_the_bad_variable() -> None:
    from shared.errors import SettingsError

    for name, value in (("METRICS_GATHER_TIMEOUT", "0"), ("METRICS_MAX_INSTANCES", "lots"),
                        ("METRICS_OBSERVE_EVENTS", "maybe"), ("STATS_TIMEOUT", "-1")):
        with pytest.raises(SettingsError) as info:
            MetricsSettings.from_env({name: value})
        assert info.value.variable == name


async def test_raaf_stats_cli_prints_text_and_json(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    await start_app(gateway(env, "cli", {"websocket_server": {"connections": 11},
                                         "chat_system": {"rooms": {"General": {"participants": 3}}}}))
    await start_app(metrics_app(env))
    cmd = [sys.executable, "-m", "raaf", "stats", "--nats-url", nats_server.url, "--prefix", env["RAAF_PREFIX"]]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *extra], capture_output=True, text=True, cwd=ROOT, timeout=90)

    text, as_json, health = await asyncio.gather(*(asyncio.to_thread(run, *a) for a in ((), ("--json",),
                                                                                          ("--health",))))
    assert text.returncode == 0, text.stderr
    assert "websocket_server" in text.stdout and "connections" in text.stdout and " 11" in text.stdout
    assert "General" in text.stdout
    assert msgspec.json.decode(as_json.stdout, type=ClusterStats).websocket_server.connections == 11
    assert health.returncode == 0 and "gateway" in health.stdout and "yes" in health.stdout
    down = subprocess.run([sys.executable, "-m", "raaf", "stats", "--nats-url", "nats://127.0.0.1:1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert down.returncode == 1 and "cannot reach NATS" in down.stderr


async def test_stats_of_an_empty_deployment_come_back_at_once(nats_server: NatsServer) -> None:
    started = time.monotonic()
    stats = await raaf.stats(nats_url=nats_server.url, prefix=unique_prefix(), gather_timeout=5)
    assert stats.services == {} and stats.websocket_server.connections == 0
    # $SRV.PING waits its window (other deployments may answer); the stats request itself ends on
    # NATS's no-responders status instead of waiting out its 5 s.
    assert time.monotonic() - started < 5.5


async def test_stats_add_up_two_real_agent_runners(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    from services.agent_runner import AgentRunnerApp, AgentRunnerSettings

    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=unique_prefix())
    for instance, pool in (("runner-a", "3"), ("runner-b", "4")):
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            {**env, "INSTANCE_ID": instance, "ASYNC_POOL_SIZE": pool, "ASYNC_QUEUE_SIZE": "10"})))
    metrics = await start_app(metrics_app(env))
    status, body = await get_json(f"{metrics.http_url}/stats")
    runner = msgspec.convert(body, ClusterStats).async_runner
    assert status == 200 and body["services"]["agent-runner"] == 2
    assert (runner.running, runner.pool_size, runner.queue_size, runner.active_runs) == (True, 7, 20, 0)


async def test_stats_add_up_real_websocket_connections_on_two_gateways(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    prefix = unique_prefix()
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix)
    gateways = [await start_app(GatewayApp(GatewaySettings.from_env({**env, "INSTANCE_ID": f"gw-{i}"})))
                for i in range(2)]
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{gateways[i].http_url}/ws") for i in (0, 0, 1)]
        for ws in sockets:
            await ws.receive_json(timeout=5)  # welcome
        await sockets[2].send_json({"type": "subscribe", "id": "s", "channel": "lobby"})
        assert (await sockets[2].receive_json(timeout=5))["type"] == "ack"
        nc = await nats.connect(nats_server.url)
        try:
            stats = await raaf.stats(nc=nc, prefix=prefix)
        finally:
            await nc.close()
        for ws in sockets:
            await ws.close()
    section = stats.websocket_server
    assert (section.running, section.connections, section.subscriptions) == (True, 3, 1)
    assert section.max_connections == 2 * gateways[0].gateway_settings.max_connections


async def test_library_reporters_are_in_every_stats_answer_and_the_gather_still_returns_early(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    from prometheus_client import CollectorRegistry

    from raaf.jobs import MessageQueue
    from shared.events.settings import EventSettings

    prefix = unique_prefix()
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix)
    await start_app(gateway(env, "gw", {"websocket_server": {"connections": 1}}))
    # A long gather window: only an early return (everyone known answered) keeps each request quick.
    metrics = await start_app(metrics_app(env, METRICS_GATHER_TIMEOUT="3", METRICS_DISCOVERY_INTERVAL="3600"))
    assert isinstance(metrics, MetricsApp)

    async def discovered() -> bool:
        return metrics.discovered

    await eventually(discovered, 10, interval=0.05, what="the first discovery round is over")
    nc = await nats.connect(nats_server.url)
    settings = EventSettings.from_env({**env, "EVENTS_ENABLE_HISTORY": "false"})
    try:
        for _ in range(10):  # reporters that connect just before the request, each round anew
            emitter = raaf.EventEmitter(settings=settings, nc=nc, registry=CollectorRegistry())
            queue = MessageQueue(redis_server.url, prefix=prefix, name="orders", nc=nc)
            try:
                await emitter.connect()
                await emitter.on("order.*", lambda event: None)
                await queue.start()
                started = time.monotonic()
                status, body = await get_json(f"{metrics.http_url}/stats")
                took = time.monotonic() - started
                stats = msgspec.convert(body, ClusterStats)
                assert status == 200
                assert stats.services == {"gateway": 1, "metrics": 1, "event-emitter": 1, "message-queue": 1}
                assert (stats.event_emitter.listeners, stats.message_queue.queues) == (1, 1)
                assert took < 1.5, f"the gather waited {took:.1f}s: it did not know every instance it heard"
                health = msgspec.convert((await get_json(f"{metrics.http_url}/health"))[1], ClusterHealth)
                assert {i.service for i in health.instances} == {"gateway", "metrics"}, "reporters have no /readyz"
                assert health.status == "ok"
            finally:
                await queue.close()
                await emitter.close()
            stats = msgspec.convert((await get_json(f"{metrics.http_url}/stats"))[1], ClusterStats)
            assert stats.services == {"gateway": 1, "metrics": 1} and not stats.unanswered, "closed ones are gone"
    finally:
        await nc.close()


async def test_reporters_running_before_the_metrics_service_are_found_by_its_discovery(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    from raaf.jobs import MessageQueue

    prefix = unique_prefix()
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix)
    nc = await nats.connect(nats_server.url)
    queues = [MessageQueue(redis_server.url, prefix=prefix, name=f"q{i}", nc=nc) for i in range(2)]
    try:
        for queue in queues:
            await queue.start()
        metrics = await start_app(metrics_app(env, METRICS_GATHER_TIMEOUT="2", METRICS_DISCOVERY_INTERVAL="3600"))
        assert isinstance(metrics, MetricsApp)

        async def discovered() -> bool:
            return metrics.discovered

        await eventually(discovered, 10, interval=0.05, what="the first discovery round is over")
        assert {(k.service, k.reporter) for k, _ in metrics.instances.instances()} == {
            ("message-queue", True), ("metrics", False)}
        started = time.monotonic()
        stats = msgspec.convert((await get_json(f"{metrics.http_url}/stats"))[1], ClusterStats)
        assert stats.services == {"message-queue": 2, "metrics": 1}
        assert stats.message_queue.queues == 2, "two different queues, each counted once"
        assert time.monotonic() - started < 1.0
        # Without a metrics service, raaf.stats() finds them the same way.
        await metrics.stop()
        stats = await raaf.stats(nc=nc, prefix=prefix, gather_timeout=0.5)
        assert stats.services == {"message-queue": 2}
    finally:
        for queue in queues:
            await queue.close()
        await nc.close()
