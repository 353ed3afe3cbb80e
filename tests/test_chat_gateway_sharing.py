"""One gateway's members of a room share one set of NATS subscriptions: counted on a real nats-server's
monitoring endpoint, and each member still sees its history and every later feed event once, in order."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from proto.subjects import Subjects
from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
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


async def test_members_of_a_room_on_one_gateway_share_one_set_of_nats_subscriptions_until_the_last_leaves(
    redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path
) -> None:
    server = NatsServer(tmp_path / "nats", monitor_port=free_port())
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            harness = ChatHarness(server.url, redis_server.url, start_app)
            await harness.replica()
            gateway = GatewayApp(GatewaySettings.from_env(gateway_env(harness)))
            await start_app(gateway)
            chat = await harness.client()
            warm_up = await chat.create_room("Warm-up")
            crowd = await chat.create_room("Crowd")
            typing_subject = Subjects(harness.prefix).chat_room_events(crowd.id)
            # One member joins and leaves a room first, so the request inboxes of the gateway exist already.
            first = await WsChat.connect(session, gateway.http_url, "t-alice")
            await first.ok("chat_join", room="Warm-up")
            await first.ok("chat_leave", room="Warm-up")
            await first.close()
            warm_up_typing = Subjects(harness.prefix).chat_room_events(warm_up.id)  # unsubscribed last of the three
            await eventually(lambda: warm_up_typing not in gateway_subscriptions(server, harness.prefix),
                             what="the warm-up room's subscriptions gone")
            idle = len(gateway_subscriptions(server, harness.prefix))

            members = [await WsChat.connect(session, gateway.http_url, f"t-{user}") for user in USERS]
            for member in members:
                await member.ok("chat_join", room="Crowd")
                subjects = gateway_subscriptions(server, harness.prefix)
                assert len(subjects) == idle + 3, subjects  # feed, log and typing, once for everyone
                assert subjects.count(typing_subject) == 1
            await members[0].ok("chat_send", room="Crowd", text="hello, all of you")
            for member in members:
                seen = await member.events_until(of_type("user_message"))
                assert seen[-1]["event"]["text"] == "hello, all of you"

            for member in members[:-1]:
                await member.ok("chat_leave", room="Crowd")
                assert len(gateway_subscriptions(server, harness.prefix)) == idle + 3
            await members[-1].ok("chat_leave", room="Crowd")
            await eventually(lambda: len(gateway_subscriptions(server, harness.prefix)) == idle,
                             what="the room's subscriptions gone with its last member")
            assert typing_subject not in gateway_subscriptions(server, harness.prefix)
            for member in members:
                await member.close()
            await harness.close()
    finally:
        server.stop()


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
