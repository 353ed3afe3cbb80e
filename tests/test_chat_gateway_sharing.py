"""One gateway's members of a room share one set of NATS subscriptions: counted on a real nats-server's
monitoring endpoint, and each member still sees its history and every later feed event once, in order."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proto.subjects import Subjects
from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.clients.chat import ChatClient
from shared.devstack.servers import NatsServer, ValkeyServer, free_port
from shared.service.app import App
from tests.support.chat import ChatHarness
from tests.support.chat_ws import WsChat, answered, of_type
from tests.support.runs import runner_env
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]
USERS = ("alice", "bob", "carol", "dave", "erin")
TOKENS = {f"t-{user}": {"sub": user} for user in USERS}


def gateway_env(harness: ChatHarness) -> dict[str, str]:
    return harness.env(GATEWAY_AUTH_MODE="token", GATEWAY_STATIC_TOKENS=json.dumps(TOKENS))


def gateway_subscriptions(server: NatsServer, prefix: str) -> list[str]:
    """The subjects the gateway's NATS connection is subscribed to, as the server's ``/connz`` reports them."""
    url = f"http://127.0.0.1:{server.monitor_port}/connz?subs=1&limit=1000"
    with urllib.request.urlopen(url, timeout=5) as resp:
        connz: dict[str, Any] = json.load(resp)
    gateways = [c for c in connz["connections"] if c.get("name", "").startswith(f"{prefix}-gateway")]
    assert len(gateways) == 1, [c.get("name") for c in connz["connections"]]
    return list(gateways[0].get("subscriptions_list", []))


@dataclass
class Monitored:
    server: NatsServer
    harness: ChatHarness
    gateway: GatewayApp
    session: aiohttp.ClientSession
    chat: ChatClient

    def subscriptions(self) -> list[str]:
        return gateway_subscriptions(self.server, self.harness.prefix)

    async def ws(self, user: str) -> WsChat:
        return await WsChat.connect(self.session, self.gateway.http_url, f"t-{user}")

    async def idle(self) -> int:
        """The gateway's subscriptions with no room followed, once one member joined and left a room (so its
        request inboxes exist already)."""
        warm_up = await self.chat.create_room("Warm-up")
        first = await self.ws("alice")
        await first.ok("chat_join", room="Warm-up")
        await first.ok("chat_leave", room="Warm-up")
        await first.close()
        typing = Subjects(self.harness.prefix).chat_room_events(warm_up.id)  # unsubscribed last of the three
        await eventually(lambda: typing not in self.subscriptions(), what="the warm-up room's subscriptions gone")
        return len(self.subscriptions())


@pytest.fixture
async def monitored(redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path) -> AsyncIterator[Monitored]:
    """A gateway and a chat replica on a nats-server of this test's own, with its monitoring port open."""
    server = NatsServer(tmp_path / "nats", monitor_port=free_port())
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            harness = ChatHarness(server.url, redis_server.url, start_app)
            await harness.replica()
            gateway = GatewayApp(GatewaySettings.from_env(gateway_env(harness)))
            await start_app(gateway)
            yield Monitored(server, harness, gateway, session, await harness.client())
            await harness.close()
    finally:
        server.stop()


async def test_members_of_a_room_on_one_gateway_share_one_set_of_nats_subscriptions_until_the_last_leaves(
    monitored: Monitored
) -> None:
    idle = await monitored.idle()
    crowd = await monitored.chat.create_room("Crowd")
    typing_subject = Subjects(monitored.harness.prefix).chat_room_events(crowd.id)
    members = [await monitored.ws(user) for user in USERS]

    def one_set() -> bool:  # feed, log and typing, once for everyone (a join's own barrier inbox may linger)
        subjects = monitored.subscriptions()
        return len(subjects) == idle + 3 and subjects.count(typing_subject) == 1

    for member in members:
        await member.ok("chat_join", room="Crowd")
        await eventually(one_set, what="one set of subscriptions for the room")
    await members[0].ok("chat_send", room="Crowd", text="hello, all of you")
    for member in members:
        seen = await member.events_until(of_type("user_message"))
        assert seen[-1]["event"]["text"] == "hello, all of you"

    for member in members[:-1]:
        await member.ok("chat_leave", room="Crowd")
        assert one_set()
    await members[-1].ok("chat_leave", room="Crowd")
    await eventually(lambda: len(monitored.subscriptions()) == idle,
                     what="the room's subscriptions gone with its last member")
    assert typing_subject not in monitored.subscriptions()
    for member in members:
        await member.close()


async def test_a_deleted_room_tells_its_members_and_its_subscriptions_go(monitored: Monitored) -> None:
    idle = await monitored.idle()
    await monitored.chat.create_room("Doomed")
    members = [await monitored.ws(user) for user in USERS[:3]]
    for member in members:
        await member.ok("chat_join", room="Doomed")
    await eventually(lambda: len(monitored.subscriptions()) == idle + 3, what="one set of subscriptions")
    await monitored.chat.delete_room("Doomed")
    for member in members:
        closed = (await member.events_until(of_type("room_closed")))[-1]
        assert closed["room"] == "Doomed"
    await eventually(lambda: len(monitored.subscriptions()) == idle, what="the deleted room's subscriptions gone")
    # The members are in it no more: a room of the same name is a new room they can join and use.
    await monitored.chat.create_room("Doomed")
    for member in members:
        await member.ok("chat_join", room="Doomed")
    await members[1].ok("chat_send", room="Doomed", text="a fresh start")
    for member in members:
        assert (await member.events_until(of_type("user_message")))[-1]["event"]["text"] == "a fresh start"
        await member.close()


def feed(events: list[dict[str, Any]]) -> list[tuple[int, str, bool]]:
    return [(e["seq"], e["event"]["type"], e.get("history", False)) for e in events if e.get("seq") is not None]


async def test_a_member_joining_while_an_answer_streams_sees_each_later_feed_event_once_in_order(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path
) -> None:
    async with OpenAIMock(token_delay=0.01) as mock, aiohttp.ClientSession() as session:
        harness = ChatHarness(nats_server.url, redis_server.url, start_app)
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(nats_server.url, mock.url, harness.prefix, tmp_path))))
        await harness.replica()
        gateway = GatewayApp(GatewaySettings.from_env(gateway_env(harness)))
        await start_app(gateway)
        chat = await harness.client()
        await chat.create_room("Streaming")
        alice = await WsChat.connect(session, gateway.http_url, "t-alice")
        await alice.ok("chat_join", room="Streaming")
        await alice.ok("chat_send", room="Streaming", text="an early message")
        await alice.events_until(answered(1))
        await alice.ok("chat_send", room="Streaming", text=" ".join(f"word{i}" for i in range(200)))
        await alice.events_until(of_type("answer_delta"))

        late = [await WsChat.connect(session, gateway.http_url, f"t-{user}") for user in ("bob", "carol")]
        await asyncio.gather(*(member.ok("chat_join", room="Streaming") for member in late))
        seen_by_alice = await alice.events_until(answered(1))
        for member in late:
            events = feed(await member.events_until(answered(2)))
            seqs = [seq for seq, _, _ in events]
            assert seqs == sorted(set(seqs)), "no feed event twice, none out of order"
            history = [(seq, kind) for seq, kind, old in events if old]
            assert [kind for _, kind in history] == ["user_message", "agent_message", "user_message"]
            live = [(seq, kind) for seq, kind, old in events if not old]
            assert live and all(seq > history[-1][0] for seq, _ in live)
            alice_from_then = [(seq, kind) for seq, kind, _ in feed(seen_by_alice) if seq >= live[0][0]]
            assert live == alice_from_then, "after its history, a late member sees what everyone sees"
            await member.close()
        await alice.close()
        await harness.close()
