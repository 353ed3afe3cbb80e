"""Runs over the gateway's WebSocket: agent_stream, resume after a killed gateway, cancel, limits, ownership."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raaf.testing import OpenAIMock, Script
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer, free_port
from shared.service.app import App
from tests.support.env import service_env
from tests.support.processes import ServiceProcess
from tests.support.runs import runner_env

StartApp = Callable[[App], Awaitable[App]]
TOKENS = "alice-token:alice,bob-token:bob"


@pytest.fixture
async def runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp
                 ) -> App:
    env = runner_env(nats_server.url, mock.url, prefix, tmp_path)
    return await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(env)))


def gateway_env(nats_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return service_env(nats_url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5", **extra)


@pytest.fixture
async def gateway(nats_server: NatsServer, prefix: str, runner: App, start_app: StartApp) -> str:
    env = gateway_env(nats_server.url, prefix, GATEWAY_RUN_MAX_STREAMS_PER_CONNECTION="2")
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    return app.http_url


class Client:
    """A WebSocket client of /ws that keeps every frame it got."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[bytes] = []

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=15)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        raw = msg.data.encode()
        self.frames.append(raw)
        decoded: dict[str, Any] = json.loads(raw)
        return decoded

    async def until(self, *types: str) -> list[dict[str, Any]]:
        got = []
        while True:
            message = await self.next()
            got.append(message)
            if message["type"] in types:
                return got


async def connect(session: aiohttp.ClientSession, base: str, token: str | None = None) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await session.ws_connect(f"{base.replace('http', 'ws', 1)}/ws", headers=headers)
    client = Client(ws)
    assert (await client.next())["type"] == "welcome"
    return client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def test_agent_stream_answers_run_accepted_then_every_event_in_order(
    mock: OpenAIMock, gateway: str, session: aiohttp.ClientSession
) -> None:
    text = "Over the gateway's socket, token by token."
    mock.enqueue(Script(text=text, token_delay=0.002))
    client = await connect(session, gateway)
    await client.send(type="agent_stream", id="q1", agent="assistant", input="hello")
    accepted = await client.next()
    assert accepted["type"] == "run_accepted" and accepted["ref"] == "q1"
    events = await client.until("run_completed")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["run_id"] for e in events} == {accepted["run_id"]}
    assert "".join(e["delta"] for e in events if e["type"] == "run_text_delta") == text
    await client.ws.close()


async def test_a_killed_gateway_loses_no_token_when_the_websocket_client_resumes(
    mock: OpenAIMock, runner: App, nats_server: NatsServer, prefix: str, session: aiohttp.ClientSession,
    service_process: Callable[..., ServiceProcess]
) -> None:
    text = " ".join(f"w{i}" for i in range(150))
    mock.enqueue(Script(text=text, token_delay=0.01))
    urls, processes = [], []
    for _ in range(2):
        port = free_port()
        process = service_process("services.gateway", gateway_env(nats_server.url, prefix, WEBSOCKET_PORT=str(port)))
        await process.wait_ready(f"http://127.0.0.1:{port}")
        urls.append(f"http://127.0.0.1:{port}")
        processes.append(process)
    first = await connect(session, urls[0])
    await first.send(type="agent_stream", agent="assistant", input="count")
    run_id = (await first.next())["run_id"]
    before = first.frames[-1:]  # run_accepted, not part of the run's transcript
    got = []
    while len(got) < 25:
        got.append(await first.next())
    processes[0].kill()
    second = await connect(session, urls[1])
    await second.send(type="resume", run_id=run_id, last_seq=got[-1]["seq"])
    rest = await second.until("run_completed")
    transcript = first.frames[len(before) + 1:] + second.frames[1:]
    replay = await connect(session, urls[1])
    await replay.send(type="resume", run_id=run_id, last_seq=0)
    await replay.until("run_completed")
    assert b"".join(transcript) == b"".join(replay.frames[1:]), "byte-identical"
    assert [m["seq"] for m in got + rest] == list(range(1, len(got + rest) + 1))
    assert "".join(m["delta"] for m in got + rest if m["type"] == "run_text_delta") == text


async def test_cancel_over_the_websocket_closes_upstream_and_ends_with_cancelled(
    mock: OpenAIMock, gateway: str, session: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text="word " * 300, token_delay=0.02))
    client = await connect(session, gateway)
    await client.send(type="agent_stream", agent="assistant", input="long")
    run_id = (await client.next())["run_id"]
    await client.until("run_text_delta")
    await client.send(type="cancel", id="c1", run_id=run_id, reason="stop it")
    got = await client.until("run_cancelled")
    assert got[-1]["reason"] == "stop it" and any(m["type"] == "cancel_accepted" for m in got)
    await mock.wait_for_disconnect(timeout=5)


async def test_bad_run_messages_get_typed_errors_and_the_connection_stays_usable(
    mock: OpenAIMock, gateway: str, session: aiohttp.ClientSession
) -> None:
    mock.add_rule(Script(text="slow " * 50, token_delay=0.05))
    client = await connect(session, gateway)
    cases = [
        ({"type": "agent_stream", "id": "a", "agent": "nobody", "input": "x"}, "not_found"),
        ({"type": "agent_stream", "id": "b", "agent": "assistant"}, "bad_request"),
        ({"type": "agent_stream", "id": "c", "agent": "assistant", "input": "x", "run_id": "a b"}, "bad_request"),
        ({"type": "resume", "id": "d", "run_id": "nosuchrun", "last_seq": 0}, "not_found"),
        ({"type": "resume", "id": "e", "run_id": "x", "last_seq": -1}, "bad_request"),
        ({"type": "cancel", "id": "f", "run_id": "nosuchrun"}, "not_found"),
    ]
    for message, code in cases:
        await client.send(**message)
        error = await client.next()
        assert error["type"] == "error" and error["code"] == code and error["ref"] == message["id"], (message, error)
    for _ in range(2):
        await client.send(type="agent_stream", agent="assistant", input="x")
        await client.until("run_accepted")
    await client.send(type="agent_stream", id="g", agent="assistant", input="x")
    while (message := await client.next())["type"] != "error":
        pass
    assert message["code"] == "limit_exceeded" and message["ref"] == "g"


async def test_runs_belong_to_the_subject_that_started_them(
    mock: OpenAIMock, runner: App, nats_server: NatsServer, prefix: str, start_app: StartApp,
    session: aiohttp.ClientSession
) -> None:
    env = gateway_env(nats_server.url, prefix, GATEWAY_AUTH_MODE="token", GATEWAY_STATIC_TOKENS=TOKENS)
    gateway = (await start_app(GatewayApp(GatewaySettings.from_env(env)))).http_url
    mock.enqueue(Script(text="for alice only"))
    alice = await connect(session, gateway, "alice-token")
    await alice.send(type="agent_stream", agent="assistant", input="secret")
    run_id = (await alice.next())["run_id"]
    await alice.until("run_completed")
    bob = await connect(session, gateway, "bob-token")
    await bob.send(type="resume", id="peek", run_id=run_id)
    assert (await bob.next())["code"] == "forbidden"
    async with session.get(f"{gateway}/v1/runs/{run_id}/events", headers={"Authorization": "Bearer bob-token"}) as r:
        assert r.status == 403
    async with session.get(f"{gateway}/v1/runs/{run_id}/events") as anonymous:
        assert anonymous.status == 401
    async with session.get(f"{gateway}/v1/runs/{run_id}", headers={"Authorization": "Bearer alice-token"}) as mine:
        assert (await mine.json())["output"] == "for alice only"
