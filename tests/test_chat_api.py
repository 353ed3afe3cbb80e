"""``raaf.RealTimeChat`` works like the seed's: rooms, agents, configure, start, stats, and Python participants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

import raaf
from proto.chat import AgentHandoff, AgentMessage, UserMessage
from raaf.testing import Match, OpenAIMock, Script, ToolCall
from shared.chat.errors import MessageTooLong, RateLimited, RoomRestricted
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.chat import ChatHarness
from tests.support.chat_ws import WsChat, answered

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.001) as server:
        yield server


async def next_of(participant: raaf.ChatParticipant, kind: type, timeout: float = 10.0) -> object:
    while True:
        event = (await participant.next_event(timeout)).event
        if isinstance(event, kind):
            return event


async def test_real_time_chat_serves_rooms_with_agents_and_handoffs_like_the_seed(
    nats_server: NatsServer, redis_server: ValkeyServer, mock: OpenAIMock
) -> None:
    support = raaf.Agent(name="support", instructions="You are the support agent.")
    technical = raaf.Agent(name="technical", instructions="You know the internals.")
    chat = raaf.RealTimeChat(agent=support, websocket_port=0, websocket_host="127.0.0.1",
                             redis_url=redis_server.url, nats_url=nats_server.url, prefix=f"api{uuid.uuid4().hex[:8]}",
                             env={"OPENAI_BASE_URL": mock.url, "OPENAI_API_KEY": "test", "LOG_LEVEL": "warning"})
    chat.add_agent(technical)
    general = await chat.create_room("General Support", {"max_participants": 50, "message_history": 100})
    await chat.create_room("Technical Discussion", {"max_participants": 20, "message_history": 200,
                                                    "restricted": True})
    chat.configure(lambda config: setattr(config, "enable_handoffs", True))
    chat.configure(max_message_length=100, rate_limit=4)
    mock.add_rule(Script(tool_calls=[ToolCall(name="transfer_to_technical")]),
                  match=Match(user_contains="internals", has_tool_results=False), once=True)
    async with chat, aiohttp.ClientSession() as session:
        info = await general.info()
        assert (info.agent, info.agents, info.config.message_history) == ("support", ["support", "technical"], 100)
        alice = await general.join("alice")
        browser = await WsChat.connect(session, chat.url.replace("ws://", "http://", 1).removesuffix("/ws"))
        await browser.ok("chat_join", room="General Support")

        await alice.send("how do the internals work?")
        handoff = await next_of(alice, AgentHandoff)
        assert isinstance(handoff, AgentHandoff) and (handoff.to_agent, handoff.by) == ("technical", "agent")
        answer = await next_of(alice, AgentMessage)
        assert isinstance(answer, AgentMessage) and answer.agent == "technical" and answer.status == "completed"
        seen = await browser.events_until(answered(1))
        assert [e["event"]["type"] for e in seen if e["event"]["type"] in ("user_message", "agent_handoff")] == [
            "user_message", "agent_handoff"]

        with pytest.raises(MessageTooLong):
            await alice.send("x" * 101)
        for i in range(3):
            await alice.send(f"message {i}")
        with pytest.raises(RateLimited):
            await alice.send("one more")
        refused = await browser.call("chat_join", room="Technical Discussion")  # an anonymous browser
        assert (refused["code"], refused["details"]["kind"]) == ("forbidden", "room_restricted")
        with pytest.raises(RoomRestricted):
            await chat.client.join("Technical Discussion", "guest", "g1")

        stats = await chat.stats()
        assert set(stats) == {"connected_clients", "active_sessions", "active_streams", "available_agents",
                              "total_messages", "rooms"}
        assert stats["rooms"]["General Support"]["participants"] == 2
        assert stats["rooms"]["Technical Discussion"] == {"participants": 0, "messages": 0}
        assert stats["available_agents"] == 2 and stats["total_messages"] >= 5
        await alice.leave()
        await browser.close()
    assert not chat.running


async def test_real_time_chat_as_a_client_of_a_running_platform(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp
) -> None:
    harness = ChatHarness(nats_server.url, redis_server.url, start_app)
    await harness.replica()
    chat = raaf.RealTimeChat(nats_url=nats_server.url, prefix=harness.prefix, run_services=False)
    chat.configure(max_message_length=50, busy_policy="reject")
    room = await chat.create_room("Bridge", max_participants=3)
    await chat.start()
    try:
        info = await room.info()
        assert (info.config.max_message_length, info.config.busy_policy, info.config.max_participants) == (
            50, "reject", 3)
        bot = await room.join("bot")
        human = await room.join("human")
        await human.send("hello bot")
        event = await next_of(bot, UserMessage)
        assert isinstance(event, UserMessage) and (event.user, event.text) == ("human", "hello bot")
        assert [m.text for m in await room.history("bot") if isinstance(m, UserMessage)] == ["hello bot"]
        await chat.create_room("Bridge")  # again: the same room
        assert len(await chat.client.rooms()) == 1
    finally:
        await chat.stop()
        await harness.close()
