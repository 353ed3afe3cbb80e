"""A room's answer that waits for approval: the request shows in the room, a participant with the grant decides
it from the room, everyone sees the decision and the answer goes on (real runner, chat service and gateway)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.clients.chat import ChatClient
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.approvals import approvals_env
from tests.support.chat import ChatHarness
from tests.support.chat_ws import WsChat, agent_messages, answered, of_type
from tests.support.restart import calls, scripted_model

StartApp = Callable[[App], Awaitable[App]]
TOKENS = {"t-alice": {"sub": "alice"}, "t-bob": {"sub": "bob"}}


@dataclass
class Platform:
    gateway: GatewayApp
    session: aiohttp.ClientSession
    chat: ChatClient

    async def in_room(self, room: str, *users: str) -> list[WsChat]:
        clients = []
        for user in users:
            client = await WsChat.connect(self.session, self.gateway.http_url, f"t-{user}")
            await client.ok("chat_join", room=room)
            clients.append(client)
        return clients


@pytest.fixture
async def platform(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    monkeypatch.setenv("RESTART_TOOL_CALLS", str(tmp_path / "calls.log"))  # the tools run in this process
    async with OpenAIMock(token_delay=0.002, fallback=scripted_model) as mock, aiohttp.ClientSession() as session:
        harness = ChatHarness(nats_server.url, redis_server.url, start_app)
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            approvals_env(nats_server.url, mock.url, harness.prefix, tmp_path, "a"))))
        await harness.replica()
        gateway = GatewayApp(GatewaySettings.from_env(harness.env(
            GATEWAY_AUTH_MODE="token", GATEWAY_STATIC_TOKENS=json.dumps(TOKENS))))
        await start_app(gateway)
        yield Platform(gateway, session, await harness.client())
        await harness.close()


async def test_a_waiting_answer_shows_its_approval_in_the_room_and_the_rooms_creator_decides_it_from_there(
    platform: Platform, tmp_path: Path
) -> None:
    await platform.chat.create_room("Billing", agent="clerk", by="alice")
    alice, bob = await platform.in_room("Billing", "alice", "bob")
    await bob.ok("chat_send", room="Billing", text="charge:5000")
    asked = (await bob.events_until(of_type("answer_approval")))[-1]["event"]
    assert (asked["name"], asked["call_id"], asked["arguments"]) == (
        "charge", "call_1_charge", '{"amount":5000,"seconds":0}')
    assert asked["approvers"] == ["alice", "auditor"], "the room's creator is the run's owner"
    assert (await alice.events_until(of_type("answer_approval")))[-1]["event"] == asked, "every member sees it"

    refused = await bob.call("run_decide", run_id=asked["run_id"], call_id=asked["call_id"], approved=True)
    assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
    accepted = await alice.call("run_decide", run_id=asked["run_id"], call_id=asked["call_id"], approved=True)
    assert accepted["type"] == "decision_accepted" and accepted["seq"] == asked["seq"] + 1, accepted

    for member in (alice, bob):
        rest = await member.events_until(answered(1), timeout=30)
        (decision,) = [e["event"] for e in rest if e["event"]["type"] == "answer_decision"]
        assert (decision["decided_by"], decision["approved"], decision["seq"]) == ("alice", True, accepted["seq"])
        (answer,) = agent_messages(rest)
        assert answer["status"] == "completed" and "Done (charged 5000)" in answer["text"], answer
    assert calls(tmp_path) == ["charge 5000"]
