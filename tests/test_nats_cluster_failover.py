"""A three-node NATS cluster with R3 streams: kill -9 the streams' leader while runs stream to WebSocket and SSE
clients and a chat room answers; every transcript stays complete and every service is ready again at once."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest

from proto.subjects import Subjects
from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.chat import ChatApp, ChatSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.clients.chat import ChatClient
from shared.devstack.nats_cluster import NatsCluster, stream_leader
from shared.devstack.servers import ValkeyServer
from shared.service.app import App
from tests.support.chat import answered, answers, read_until, streamed_text
from tests.support.env import service_env, unique_prefix
from tests.support.runs import runner_env
from tests.support.sse import sse_events
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]
TOKEN_DELAY = 0.03  # each run streams for a few seconds, so the kill lands in the middle of every one


@dataclass
class Transcript:
    """What one client received for one run, in arrival order."""

    expected: str
    events: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    first_token: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.arrivals.append(time.monotonic())
        if event.get("type") == "run_text_delta":
            self.first_token.set()

    def check(self, client: str) -> None:
        seqs = [e["seq"] for e in self.events]
        assert seqs == list(range(1, len(seqs) + 1)), f"{client}: gap or duplicate in {seqs}"
        assert self.events[-1]["type"] == "run_completed", f"{client}: ended with {self.events[-1]['type']}"
        text = "".join(e["delta"] for e in self.events if e["type"] == "run_text_delta")
        assert text == self.expected, f"{client}: {text!r} != {self.expected!r}"


def words(tag: str, count: int = 40) -> str:
    return " ".join(f"{tag}w{i}" for i in range(count))


async def over_websocket(session: aiohttp.ClientSession, gateway: str, text: str, out: Transcript) -> None:
    async with session.ws_connect(f"{gateway.replace('http', 'ws', 1)}/ws") as ws:
        assert (await ws.receive_json(timeout=15))["type"] == "welcome"
        await ws.send_str(json.dumps({"type": "agent_stream", "id": "q", "agent": "assistant", "input": text}))
        assert (await ws.receive_json(timeout=15))["type"] == "run_accepted"
        while True:
            event = await ws.receive_json(timeout=30)
            out.add(event)
            if event["type"] in ("run_completed", "run_failed", "run_cancelled"):
                return


async def over_sse(session: aiohttp.ClientSession, gateway: str, text: str, out: Transcript) -> None:
    async with session.post(f"{gateway}/v1/runs", json={"agent": "assistant", "input": text}) as resp:
        assert resp.status == 202, await resp.text()
        started = await resp.json()
    async with session.get(f"{gateway}/v1/runs/{started['run_id']}/events") as resp:
        assert resp.status == 200
        async for event in sse_events(resp):
            body = event.json()
            out.add({"type": event.event, **body})
            if event.event in ("run_completed", "run_failed", "run_cancelled"):
                return


@dataclass
class Figures:
    """What the round measured (seconds)."""

    leader_elected: float = 0.0  # from the kill to the runs stream having a leader on a live server
    ready_after_leader: float = 0.0  # from that leader to every service answering /readyz with 200
    longest_run: float = 0.0
    longest_pause: float = 0.0  # the longest wait of any client between two events of its run
    streams_moving: float = 0.0  # from that leader until every unfinished run's client got its next event


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


async def failover_round(cluster: NatsCluster, redis: ValkeyServer, start_app: StartApp, tmp_path: Path,
                         http: aiohttp.ClientSession, *, runs: int, victim: str = "leader") -> Figures:
    prefix = unique_prefix()
    env = {"JETSTREAM_REPLICAS": "3", "RAAF_PREFIX": prefix}
    async with OpenAIMock(token_delay=TOKEN_DELAY) as mock:
        runner = await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(cluster.url, mock.url, prefix, tmp_path, JETSTREAM_REPLICAS="3"))))
        gateway = await start_app(GatewayApp(GatewaySettings.from_env(service_env(
            cluster.url, "redis://127.0.0.1:1/0", GATEWAY_RUN_IDLE_CHECK="0.5", **env))))
        chat_app = await start_app(ChatApp(ChatSettings.from_env(service_env(cluster.url, redis.url, **env))))
        services: list[App] = [runner, gateway, chat_app]
        nc = await nats.connect(cluster.urls)
        try:
            chat = ChatClient(nc, prefix=prefix, timeout=15)
            await chat.create_room("Failover")
            reader = await chat.feed(await chat.join("Failover", "alice", "alice-1"))
            question = words("chat", 60)
            transcripts = {f"{'ws' if i % 2 == 0 else 'sse'}{i}": Transcript(f"You said: {words(f'r{i}')}")
                           for i in range(runs)}
            started = time.monotonic()
            clients = [asyncio.create_task((over_websocket if name.startswith("ws") else over_sse)(
                http, gateway.http_url, t.expected.removeprefix("You said: "), t)) for name, t in transcripts.items()]
            await chat.post("Failover", "alice", "alice-1", question)
            await asyncio.wait_for(asyncio.gather(*(t.first_token.wait() for t in transcripts.values())), 60)

            js = nc.jetstream(timeout=2)
            stream = Subjects(prefix).stream_name("runs")
            leader = await stream_leader(js, stream)
            assert leader is not None
            killed_name = leader if victim == "leader" else next(
                s.server_name for s in cluster.servers if s.server_name != leader)
            cluster.by_name(killed_name).kill()
            killed = time.monotonic()
            figures = Figures()

            async def new_leader() -> bool:
                return (await stream_leader(js, stream)) not in (None, killed_name)

            await eventually(new_leader, 30, interval=0.05, what="a leader of the runs stream on a live server")
            elected = time.monotonic()
            figures.leader_elected = elected - killed

            async def all_ready() -> bool:
                for app in services:
                    async with http.get(f"{app.http_url}/readyz") as resp:
                        if resp.status != 200:
                            return False
                return True

            await eventually(all_ready, 30, interval=0.05, what="every service ready")
            figures.ready_after_leader = time.monotonic() - elected

            await asyncio.wait_for(asyncio.gather(*clients), 120)
            figures.longest_run = time.monotonic() - started
            items = await read_until(reader, answered(1), within=60)
            await reader.close()
        finally:
            await nc.close()
    for name, transcript in transcripts.items():
        transcript.check(name)
    figures.streams_moving = max([next(at for at in t.arrivals if at > elected) - elected
                                  for t in transcripts.values() if t.arrivals[-1] > elected] or [0.0])
    figures.longest_pause = max(b - a for t in transcripts.values() for a, b in itertools.pairwise(t.arrivals))
    (answer,) = answers(items)
    assert answer.status == "completed" and answer.text == f"You said: {question}"
    assert streamed_text(items, answer.id) == answer.text, "the room's feed holds every token once"
    print(f"\nNATS {victim} kill, {runs} runs: new leader after {figures.leader_elected:.2f}s, every service ready "
          f"{figures.ready_after_leader:.2f}s after it and every stream moving {figures.streams_moving:.2f}s after it, "
          f"longest pause a client saw {figures.longest_pause:.2f}s, "
          f"longest run {figures.longest_run:.1f}s")
    assert figures.ready_after_leader <= 5.0 and figures.streams_moving <= 5.0
    return figures


@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_killing_the_streams_leader_or_a_follower_loses_no_token_of_websocket_sse_or_chat_clients(
    nats_cluster: NatsCluster, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path,
    http: aiohttp.ClientSession, victim: str
) -> None:
    await failover_round(nats_cluster, redis_server, start_app, tmp_path, http, runs=10, victim=victim)


@pytest.mark.chaos
async def test_fifty_runs_survive_the_streams_leader_being_killed(
    nats_cluster: NatsCluster, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path,
    http: aiohttp.ClientSession
) -> None:
    await failover_round(nats_cluster, redis_server, start_app, tmp_path, http, runs=50)
