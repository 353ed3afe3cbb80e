"""A workload through every service and the libraries, for the metrics tests: each one's exposition after it.

Services run in this process; the libraries (an ``EventEmitter`` and a ``BackgroundProcessor`` job worker) use
registries of their own, exported under the catalogue's exporter names ``events`` and ``workers``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import raaf
from proto.events import Event
from proto.runs import RunCompleted, RunFailed
from raaf.jobs import BackgroundProcessor, PermanentJobError
from raaf.testing import OpenAIMock, Script, ToolCall
from shared.clients.chat import ChatClient
from shared.events.settings import EventSettings
from shared.service.app import App
from tests.support.apps import FACTORIES, StartApp
from tests.support.env import service_env, unique_prefix
from tests.support.runs import AGENTS_TOML, Runs
from tests.support.waiting import eventually

Expositions = dict[str, str]  # exporter (a service name, "events" or "workers") -> Prometheus text


async def scrape(app: App) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{app.http_url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and labels.items() <= s.labels.items())


@contextlib.asynccontextmanager
async def workload(nats_url: str, redis_url: str, mock: OpenAIMock, tmp_path: Path,
                   start_app: StartApp) -> AsyncIterator[Expositions]:
    """Start the five services, drive every feature the issue's metric list names, yield every exposition."""
    prefix = unique_prefix("wl")
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS_TOML)
    env = service_env(nats_url, redis_url, RAAF_PREFIX=prefix, METRICS_DISCOVERY_INTERVAL="0.2",
                      METRICS_GATHER_TIMEOUT="0.3", JOBS_REQUIRE_KNOWN_TYPE="false", JOBS_STATS_INTERVAL="0.1",
                      OPENAI_BASE_URL=mock.url, RAAF_AGENTS_FILE=str(agents), RAAF_TOOLS_MODULE="tests.support.tools",
                      RUN_RETRY_DELAY="0.01", CHAT_DEFAULT_AGENT="assistant")
    apps = {name: await start_app(factory(env)) for name, factory in FACTORIES.items()}
    libraries = {"events": CollectorRegistry(), "workers": CollectorRegistry()}
    nc = await nats.connect(nats_url)
    emitter = raaf.EventEmitter(settings=EventSettings.from_env({**env, "EVENTS_ENABLE_HISTORY": "false"}), nc=nc,
                                registry=libraries["events"])
    worker = BackgroundProcessor(redis_url, nats_url=nats_url, prefix=prefix, registry=libraries["workers"],
                                 retry_count=1, retry_delay=0.01, maintenance_interval=None)
    try:
        await event_workload(emitter, nc, prefix)
        await gateway_workload(apps["gateway"].http_url)
        await run_workload(mock, Runs(nc, prefix))
        await job_workload(worker, raaf.JobsClient(nc, prefix=prefix), apps)
        await chat_workload(ChatClient(nc, prefix=prefix), apps["chat"])
        await raaf.stats(nc=nc, prefix=prefix)  # answered by the metrics service, which asks every instance
        await raaf.health(nc=nc, prefix=prefix)
        exported = {name: await scrape(app) for name, app in apps.items()}
        exported |= {name: generate_latest(registry).decode() for name, registry in libraries.items()}
        yield exported
    finally:
        await worker.stop(timeout=1)
        await emitter.close()
        await nc.close()


async def event_workload(emitter: raaf.EventEmitter, nc: NATS, prefix: str) -> None:
    """Events from the EventEmitter (one listener fails) and from a plain NATS client."""
    await emitter.connect()
    delivered: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    await emitter.on("order.*", delivered.append)
    await emitter.on("order.*", broken)
    for n in range(2):
        await emitter.emit("order.created", {"n": n})
    for i in range(3):
        await nc.publish(f"{prefix}.events.user.login", b'{"user_id":"u%d"}' % i)
    await nc.flush()
    await eventually(lambda: len(delivered) == 2 and emitter.stats()["listener_errors"] == 2, 5,
                     what="both events delivered, the broken listener failing twice")


async def gateway_workload(http_url: str) -> None:
    """Two WebSocket clients on one channel; one publishes and sends one bad frame, then both leave."""
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{http_url}/ws") for _ in range(2)]
        for ws in sockets:
            await ws.receive_json(timeout=5)  # welcome
            await ws.send_json({"type": "subscribe", "id": "1", "channel": "metrics-demo"})
            assert (await ws.receive_json(timeout=5))["type"] == "ack"
        await sockets[0].send_json({"type": "publish", "id": "2", "channel": "metrics-demo", "data": {"n": 1}})
        await sockets[0].send_str("{not json")
        seen: set[str] = set()
        while not {"message", "error"} <= seen:
            seen.add((await sockets[0].receive_json(timeout=5))["type"])
        while (await sockets[1].receive_json(timeout=5))["type"] != "message":
            pass
        for ws in sockets:
            await ws.close()


async def run_workload(mock: OpenAIMock, runs: Runs) -> None:
    """A run with a tool call, one with a handoff, one the model refuses (a failure with a code)."""
    mock.enqueue(Script(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Oslo"})]))
    mock.enqueue(Script(text="It is mild in Oslo today.", token_delay=0.001))
    assert isinstance((await runs.run("weather in Oslo?"))[-1], RunCompleted)
    mock.enqueue(Script(tool_calls=[ToolCall(name="transfer_to_billing")]))
    mock.enqueue(Script(text="Billing here: your invoice is paid."))
    assert isinstance((await runs.run("my invoice?"))[-1], RunCompleted)
    mock.enqueue(Script(http_status=401))
    assert isinstance((await runs.run("hi", retry_count=0))[-1], RunFailed)


async def job_workload(worker: BackgroundProcessor, jobs: raaf.JobsClient, apps: dict[str, App]) -> None:
    """Jobs through the scheduler: one succeeds, one fails once, one dies, one waits (no worker), one later."""
    attempts: list[str] = []

    @worker.handle_job("ok")
    async def ok(data: Any) -> None:
        return None

    @worker.handle_job("flaky")
    async def flaky(data: Any) -> None:
        attempts.append("flaky")
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    @worker.handle_job("doomed")
    async def doomed(data: Any) -> None:
        raise PermanentJobError("never works")

    await worker.start()
    await jobs.enqueue_job("ok", {"n": 1}, priority="high")
    await jobs.enqueue_job("flaky", {"n": 2})
    await jobs.enqueue_job("doomed", {"n": 3}, priority="low")
    await jobs.enqueue_job("unhandled", {"n": 4}, priority="low")  # stays ready: queue depth by priority
    await jobs.enqueue_job("ok", {"n": 5}, delay=60)

    async def settled() -> bool:
        metrics, scheduler = await scrape(apps["metrics"]), await scrape(apps["scheduler"])
        return (sample(metrics, "raaf_cluster_job_successes_total", job_type="flaky") == 1
                and sample(metrics, "raaf_cluster_job_dead_letters_total", job_type="doomed") == 1
                and sample(scheduler, "raaf_jobs_dead") == 1
                and sample(scheduler, "raaf_jobs_queue_length", priority="low") == 1)

    await eventually(settled, 15, interval=0.1, what="jobs done and counted by the metrics service and scheduler")


async def chat_workload(chat: ChatClient, app: App) -> None:
    """A room, a participant, a message (the room's agent answers it; the metrics here do not wait for that)."""
    await chat.create_room("Lobby")
    await chat.join("Lobby", "alice", "s1")
    await chat.post("Lobby", "alice", "s1", "hello")

    async def folded() -> bool:  # the chat's gauges read its fold of JetStream events, which follows shortly
        text = await scrape(app)
        return sample(text, "raaf_chat_rooms") >= 1 and sample(text, "raaf_chat_participants") >= 1

    await eventually(folded, 10, interval=0.05, what="the chat's fold has the room and its participant")
