"""Chat rooms end to end: several real WebSocket clients, the gateway, the chat service, a real agent-runner
and the OpenAI mock, over a real nats-server."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proto.runs import AgentSpec
from raaf.testing import Match, OpenAIMock, Script, ToolCall
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.clients.chat import ChatClient
from shared.devstack.servers import NatsServer, ValkeyServer, free_port
from shared.service.app import App
from tests.support.chat import ChatHarness
from tests.support.chat_ws import WsChat, agent_messages, answered, kinds, of_type
from tests.support.processes import ServiceProcess
from tests.support.runs import runner_env

StartApp = Callable[[App], Awaitable[App]]
TOKENS = {
    "t-alice": {"sub": "alice", "rooms": ["*"]},  # granted every room, restricted ones included
    "t-bob": {"sub": "bob"},
    "t-carol": {"sub": "carol"},
    "t-dave": {"sub": "dave"},
    "t-mallory": {"sub": "mallory"},
}
AGENTS = [AgentSpec(name="support", instructions="You are the support agent."),
          AgentSpec(name="tech", instructions="You are the technical specialist.")]


@dataclass
class Platform:
    harness: ChatHarness
    mock: OpenAIMock
    gateway: GatewayApp
    session: aiohttp.ClientSession
    chat: ChatClient  # the operator's NATS-level client (creates rooms with agents)

    async def ws(self, user: str) -> WsChat:
        return await WsChat.connect(self.session, self.gateway.http_url, f"t-{user}")

    async def in_room(self, room: str, *users: str) -> list[WsChat]:
        clients = []
        for user in users:
            client = await self.ws(user)
            await client.ok("chat_join", room=room)
            clients.append(client)
        return clients


def gateway_env(harness: ChatHarness, **extra: str) -> dict[str, str]:
    return harness.env(GATEWAY_AUTH_MODE="token", GATEWAY_STATIC_TOKENS=json.dumps(TOKENS), **extra)


@pytest.fixture
async def platform(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path
                   ) -> AsyncIterator[Platform]:
    async with OpenAIMock(token_delay=0.002) as mock, aiohttp.ClientSession() as session:
        harness = ChatHarness(nats_server.url, redis_server.url, start_app)
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(nats_server.url, mock.url, harness.prefix, tmp_path))))
        await harness.replica(CHAT_TYPING_TIMEOUT="0.4", CHAT_MAX_MESSAGE_LENGTH="200", CHAT_RATE_LIMIT="5")
        gateway = GatewayApp(GatewaySettings.from_env(gateway_env(harness)))
        await start_app(gateway)
        yield Platform(harness, mock, gateway, session, await harness.client())
        await harness.close()


def seen_by(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The feed as one participant saw it (presence differs: each sees the others join)."""
    out = []
    for e in events:
        body = e["event"]
        if e.get("seq") is None:
            continue
        out.append((e.get("seq"), body["type"], body.get("text") or body.get("delta") or body.get("to_agent")))
    return out


async def test_everyone_in_a_room_sees_messages_and_streamed_answers_in_the_same_order(platform: Platform) -> None:
    await platform.chat.create_room("General Support", agents=AGENTS)
    alice, bob, carol = await platform.in_room("General Support", "alice", "bob", "carol")
    await asyncio.gather(alice.ok("chat_send", room="General Support", text="hello everyone"),
                         bob.ok("chat_send", room="General Support", text="how does streaming work?"),
                         carol.ok("chat_send", room="General Support", text="me too"))
    seen = await asyncio.gather(*(c.events_until(answered(3)) for c in (alice, bob, carol)))
    assert seen_by(seen[0]) == seen_by(seen[1]) == seen_by(seen[2])
    events = seen[0]
    assert kinds(events).count("user_message") == 3 and kinds(events).count("answer_started") == 3
    texts = {e["event"]["id"]: e["event"]["text"] for e in events if e["event"]["type"] == "user_message"}
    for answer in agent_messages(events):
        deltas = "".join(e["event"]["delta"] for e in events
                         if e["event"]["type"] == "answer_delta" and e["event"]["run_id"] == answer["id"])
        assert answer["status"] == "completed" and deltas == answer["text"]
        assert answer["text"] == f"You said: {texts[answer['in_reply_to']]}"
    feed = [e.get("seq") for e in events if e.get("seq") is not None]
    assert feed == sorted(feed) and len(feed) == len(set(feed))
    assert {e["event"]["user"] for e in events if e["event"]["type"] == "user_message"} == {"alice", "bob", "carol"}
    for client in (alice, bob, carol):
        await client.close()


async def test_a_handoff_is_seen_by_everyone_in_the_room(platform: Platform) -> None:
    await platform.chat.create_room("Help", agents=AGENTS)
    alice, bob = await platform.in_room("Help", "alice", "bob")
    platform.mock.add_rule(Script(tool_calls=[ToolCall(name="transfer_to_tech")]),
                           match=Match(user_contains="segfault", has_tool_results=False), once=True)
    await alice.ok("chat_send", room="Help", text="my build segfaults")
    seen = await asyncio.gather(alice.events_until(answered(1)), bob.events_until(answered(1)))
    for events in seen:
        handoffs = [e["event"] for e in events if e["event"]["type"] == "agent_handoff"]
        assert [(h["from_agent"], h["to_agent"], h["by"]) for h in handoffs] == [("support", "tech", "agent")]
        assert agent_messages(events)[0]["agent"] == "tech"
    # A participant asks for the other agent: everyone sees that handoff too.
    reply = await bob.ok("chat_handoff", room="Help", agent="support", reason="back to basics")
    assert reply["type"] == "chat_room" and reply["room"]["agent"] == "support"
    for client in (alice, bob):
        event = (await client.events_until(of_type("agent_handoff")))[-1]["event"]
        assert (event["to_agent"], event["by"], event["user"]) == ("support", "user", "bob")
        await client.close()


async def test_a_full_room_refuses_the_next_joiner_with_a_typed_error(platform: Platform) -> None:
    await platform.chat.create_room("Pair", max_participants=2)
    alice, bob = await platform.in_room("Pair", "alice", "bob")
    carol = await platform.ws("carol")
    refused = await carol.call("chat_join", room="Pair")
    assert refused["type"] == "error" and refused["code"] == "limit_exceeded"
    assert refused["details"]["kind"] == "room_full" and refused["details"]["limit"] == 2
    assert refused["ref"] is not None
    await bob.ok("chat_leave", room="Pair")
    await carol.ok("chat_join", room="Pair")
    for client in (alice, bob, carol):
        await client.close()


async def test_a_restricted_room_refuses_an_outsider(platform: Platform) -> None:
    await platform.chat.create_room("Staff", restricted=True, allowed=["bob"])
    alice = await platform.ws("alice")  # granted by her token
    bob = await platform.ws("bob")  # allowed by the room
    mallory = await platform.ws("mallory")
    await alice.ok("chat_join", room="Staff")
    await bob.ok("chat_join", room="Staff")
    for kind, fields in (("chat_join", {}), ("chat_history", {}), ("chat_send", {"text": "hi"})):
        refused = await mallory.call(kind, room="Staff", **fields)
        assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    assert mallory.events.empty()
    await alice.ok("chat_send", room="Staff", text="staff only")
    events = await bob.events_until(of_type("user_message"))
    assert events[-1]["event"]["text"] == "staff only"
    await asyncio.sleep(0.2)  # time for a leak to arrive, which must not
    assert mallory.events.empty(), "an outsider reads nothing of a restricted room"
    for client in (alice, bob, mallory):
        await client.close()


async def test_typing_indicators_arrive_and_expire_on_their_own(platform: Platform) -> None:
    await platform.chat.create_room("Typing")
    alice, bob = await platform.in_room("Typing", "alice", "bob")
    await alice.ok("chat_typing", room="Typing")
    started = (await bob.events_until(of_type("typing_started")))[-1]
    assert started["event"]["user"] == "alice" and started.get("seq") is None
    late = await platform.ws("carol")
    joined = await late.ok("chat_join", room="Typing")
    assert joined["typing"] == ["alice"]
    stopped = (await bob.events_until(of_type("typing_stopped"), timeout=3))[-1]["event"]
    assert (stopped["user"], stopped["reason"]) == ("alice", "expired")
    await alice.ok("chat_typing", room="Typing")
    await bob.events_until(of_type("typing_started"))
    await alice.ok("chat_typing", room="Typing", typing=False)
    assert (await bob.events_until(of_type("typing_stopped")))[-1]["event"]["reason"] == "stopped"
    for client in (alice, bob, late):
        await client.close()


async def test_over_length_and_over_rate_messages_get_typed_errors(platform: Platform) -> None:
    await platform.chat.create_room("Limits", busy_policy="enqueue")
    (alice,) = await platform.in_room("Limits", "alice")
    long = await alice.call("chat_send", room="Limits", text="x" * 201)
    assert (long["code"], long["details"]["kind"], long["details"]["limit"]) == ("too_large", "message_too_long", 200)
    for i in range(5):
        await alice.ok("chat_send", room="Limits", text=f"message {i}")
    limited = await alice.call("chat_send", room="Limits", text="one too many")
    assert (limited["code"], limited["details"]["kind"], limited["details"]["limit"]) == (
        "rate_limited", "rate_limited", 5)
    assert limited["details"]["retry_after"] > 50
    await alice.close()


async def test_a_client_joining_late_receives_the_last_message_history_messages(platform: Platform) -> None:
    await platform.chat.create_room("History", message_history=4)
    (alice,) = await platform.in_room("History", "alice")
    for i in range(3):
        await alice.ok("chat_send", room="History", text=f"early {i}")
        await alice.events_until(answered(1))
    late = await platform.ws("dave")
    await late.ok("chat_join", room="History")
    history = await late.events_until(lambda events: len(events) >= 4)
    assert all(e.get("history", False) for e in history)
    assert [e["event"]["text"] for e in history] == ["early 1", "You said: early 1", "early 2",
                                                     "You said: early 2"]
    reply = await late.ok("chat_history", room="History", limit=2)
    assert [m["text"] for m in reply["messages"]] == ["early 2", "You said: early 2"]
    await alice.ok("chat_send", room="History", text="welcome, dave")
    live = (await late.events_until(of_type("user_message")))[-1]
    assert not live.get("history", False) and live["event"]["text"] == "welcome, dave"
    for client in (alice, late):
        await client.close()


async def test_a_closed_connection_leaves_its_rooms_and_the_others_see_it(platform: Platform) -> None:
    await platform.chat.create_room("Lobby")
    alice, bob = await platform.in_room("Lobby", "alice", "bob")
    await alice.events_until(of_type("participant_joined"))  # bob
    await bob.close()
    left = (await alice.events_until(of_type("participant_left")))[-1]["event"]
    assert (left["user"], left["reason"], left["last_session"]) == ("bob", "disconnected", True)
    assert [p.user for p in (await platform.chat.room("Lobby")).participants] == ["alice"]
    await alice.close()


async def test_rooms_and_stats_over_rest(platform: Platform) -> None:
    await platform.chat.create_room("General Support")
    (alice,) = await platform.in_room("General Support", "alice")
    headers = {"Authorization": "Bearer t-bob"}
    async with platform.session.get(f"{platform.gateway.http_url}/v1/chat/rooms", headers=headers) as resp:
        assert resp.status == 200
        rooms = (await resp.json())["rooms"]
    assert [(r["name"], r["participants"]) for r in rooms] == [("General Support", 1)]
    async with platform.session.get(f"{platform.gateway.http_url}/v1/chat/stats", headers=headers) as resp:
        stats = await resp.json()
    assert stats["rooms"] == {"General Support": {"type": "chat_room", "participants": 1, "messages": 0}}
    async with platform.session.get(f"{platform.gateway.http_url}/v1/chat/rooms") as resp:
        assert resp.status == 401
    async with platform.session.get(f"{platform.gateway.http_url}/rooms") as resp:
        assert resp.status == 200 and "chat_join" in await resp.text()
    await alice.close()


async def test_a_killed_chat_service_comes_back_with_rooms_history_and_counts_intact(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path,
    service_process: Callable[..., ServiceProcess]
) -> None:
    async with OpenAIMock(token_delay=0.001) as mock, aiohttp.ClientSession() as session:
        harness = ChatHarness(nats_server.url, redis_server.url, start_app)
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(nats_server.url, mock.url, harness.prefix, tmp_path))))
        port = free_port()
        chat_env = harness.env(HTTP_PORT=str(port))
        chat_service = service_process("services.chat", chat_env)
        await chat_service.wait_ready(f"http://127.0.0.1:{port}")
        gateway = GatewayApp(GatewaySettings.from_env(gateway_env(harness)))
        await start_app(gateway)
        platform = Platform(harness, mock, gateway, session, await harness.client())
        try:
            await platform.chat.create_room("Durable", agents=AGENTS, message_history=6)
            await platform.chat.create_room("Quiet", max_participants=3)
            alice, bob = await platform.in_room("Durable", "alice", "bob")
            (carol,) = await platform.in_room("Quiet", "carol")
            for i in range(3):
                await alice.ok("chat_send", room="Durable", text=f"before the crash {i}")
                await alice.events_until(answered(1))
            before = (await platform.chat.stats(), await platform.chat.room("Durable"),
                      await platform.chat.history("Durable", "alice"))

            chat_service.kill()  # SIGKILL: no goodbye, no drain
            down = await alice.call("chat_send", room="Durable", text="anyone?")
            assert down["type"] == "error" and down["code"] == "unavailable"
            restarted = service_process("services.chat", chat_env)
            await restarted.wait_ready(f"http://127.0.0.1:{port}")

            after = (await platform.chat.stats(), await platform.chat.room("Durable"),
                     await platform.chat.history("Durable", "alice"))
            assert after == before
            stats, room, history = after
            assert {n: (r.participants, r.messages) for n, r in stats.rooms.items()} == {
                "Durable": (2, 6), "Quiet": (1, 0)}
            assert [p.user for p in room.participants] == ["alice", "bob"] and len(history) == 6
            # The clients stayed connected to the gateway and the room goes on where it was.
            await bob.ok("chat_send", room="Durable", text="after the restart")
            events = await alice.events_until(answered(1))
            assert agent_messages(events)[-1]["text"] == "You said: after the restart"
            late = await platform.ws("dave")
            await late.ok("chat_join", room="Durable")
            replay = await late.events_until(lambda seen: len(seen) >= 6)
            assert replay[-1]["event"]["text"] == "You said: after the restart"
            assert all(e.get("history", False) for e in replay)
            for client in (alice, bob, carol, late):
                await client.close()
        finally:
            await harness.close()


async def test_joining_more_rooms_than_the_subscription_limit_allows_is_refused(
    platform: Platform, start_app: StartApp
) -> None:
    tight = GatewayApp(GatewaySettings.from_env(gateway_env(platform.harness, WEBSOCKET_MAX_SUBSCRIPTIONS="1")))
    await start_app(tight)
    for name in ("First", "Second"):
        await platform.chat.create_room(name)
    alice = await WsChat.connect(platform.session, tight.http_url, "t-alice")
    await alice.ok("chat_join", room="First")  # a room counts as one subscription
    refused = await alice.call("chat_join", room="Second")
    assert refused["type"] == "error" and refused["code"] == "limit_exceeded", refused
    assert [p.user for p in (await platform.chat.room("Second")).participants] == []
    await alice.ok("chat_leave", room="First")
    await alice.ok("chat_join", room="Second")
    await alice.close()


async def test_the_rooms_page_renders_rooms_streamed_answers_handoffs_and_typing(platform: Platform) -> None:
    """The page's own script, under node with a minimal DOM, fed what a real gateway sent a real client."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    await platform.chat.create_room("Help", agents=AGENTS)
    alice, bob = await platform.in_room("Help", "alice", "bob")
    rooms = await alice.ok("chat_rooms")
    platform.mock.add_rule(Script(tool_calls=[ToolCall(name="transfer_to_tech")]),
                           match=Match(user_contains="kernel", has_tool_results=False), once=True)
    await bob.ok("chat_send", room="Help", text="my kernel panics")
    await alice.events_until(answered(1))
    await bob.ok("chat_typing", room="Help")
    await alice.events_until(of_type("typing_started"))
    joined = next(m for m in alice.received if m["type"] == "chat_joined")
    events = [m for m in alice.received if m["type"] == "chat_event"]
    steps: list[dict[str, Any]] = [
        {"click": "connect"}, {"open": True}, {"receive": alice.welcome},
        {"reply_to": "chat_rooms", "with": rooms}, {"click_room": 0},
        {"reply_to": "chat_join", "with": joined}, *({"receive": e} for e in events),
        {"input": ["text", "thanks!"]}, {"key": ["text", "Enter"]},
    ]
    html = (Path(__file__).parent.parent / "services/gateway/static/rooms.html").read_text()
    done = await asyncio.create_subprocess_exec(
        node, str(Path(__file__).parent / "support" / "chat_page_harness.js"), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(done.communicate(json.dumps({"html": html, "steps": steps}).encode()), 20)
    assert done.returncode == 0, err.decode()
    page = json.loads(out)
    answer = agent_messages(events)[0]
    lines = [text for _, text in page["items"]]
    assert "bobmy kernel panics" in lines
    assert "support handed the conversation to tech" in lines
    assert f"tech{answer['text']}" in lines, lines
    assert page["text"]["typing"] == "bob is typing…"
    assert "Help" in page["text"]["rooms"] and "tech (answering)" in page["text"]["agents"]
    assert page["sent"][-1] | {"id": None, "client_id": None} == {
        "type": "chat_send", "room": "Help", "text": "thanks!", "id": None, "client_id": None}
    for client in (alice, bob):
        await client.close()


def test_the_rooms_page_sends_its_token_in_an_auth_message_never_in_the_url() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    steps: list[dict[str, Any]] = [
        {"input": ["token", "t-secret"]}, {"click": "connect"}, {"open": True},
        {"receive": {"type": "welcome", "connection_id": "c1", "auth_required": True, "subject": None}},
        {"reply_to": "auth", "with": {"type": "authenticated", "subject": "alice", "roles": []}},
    ]
    html = (Path(__file__).parent.parent / "services/gateway/static/rooms.html").read_text()
    done = subprocess.run([node, str(Path(__file__).parent / "support" / "chat_page_harness.js")],
                          input=json.dumps({"html": html, "steps": steps}), capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["url"] == "ws://gateway.test/ws"
    assert [m["type"] for m in page["sent"]][:2] == ["auth", "chat_rooms"] and page["sent"][0]["token"] == "t-secret"
