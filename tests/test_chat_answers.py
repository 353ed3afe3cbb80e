"""Agents answer in rooms: a real agent-runner and the OpenAI mock behind the chat service, over real NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from proto.chat import AgentHandoff, AgentMessage, AnswerDelta, AnswerStarted, BusyPolicy, UserMessage
from proto.runs import AgentSpec
from raaf.testing import Match, OpenAIMock, Script, ToolCall
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.chat import ChatApp
from shared.chat.errors import AgentBusy
from shared.clients.chat import ChatClient, FeedItem
from shared.devstack.servers import NatsServer, ValkeyServer, free_port
from shared.service.app import App
from tests.support.chat import ChatHarness, answered, answers, read_until, streamed_text
from tests.support.processes import ServiceProcess
from tests.support.runs import runner_env

StartApp = Callable[[App], Awaitable[App]]
AGENTS = [AgentSpec(name="support", instructions="You are the support agent."),
          AgentSpec(name="tech", instructions="You are the technical specialist.",
                    handoff_description="Deep technical questions.")]
SLOW = Script(text="This answer takes its time to arrive, word by word, so others can talk meanwhile.",
              token_delay=0.05)


@dataclass
class Stack:
    harness: ChatHarness
    mock: OpenAIMock
    chat: ChatClient
    app: ChatApp

    def handoffs(self, by: str) -> float:
        return self.app.chat_metrics.handoffs.labels(by=by)._value.get()  # type: ignore[no-any-return]


@pytest.fixture
async def make_stack(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path
                     ) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """A runner against the OpenAI mock and a chat replica (with ``env``), under a fresh prefix."""
    async with OpenAIMock(token_delay=0.002) as mock:
        harnesses: list[ChatHarness] = []

        async def make(**env: str) -> Stack:
            harness = ChatHarness(nats_server.url, redis_server.url, start_app)
            harnesses.append(harness)
            runner = AgentRunnerApp(AgentRunnerSettings.from_env(
                runner_env(nats_server.url, mock.url, harness.prefix, tmp_path)))
            await start_app(runner)
            app = await harness.replica(**env)
            return Stack(harness, mock, await harness.client(), app)

        yield make
        for harness in harnesses:
            await harness.close()


@pytest.fixture
async def stack(make_stack: Callable[..., Awaitable[Stack]]) -> Stack:
    return await make_stack()


async def join_all(chat: ChatClient, room: str, users: list[str]) -> dict[str, object]:
    readers = {}
    for user in users:
        readers[user] = await chat.feed(await chat.join(room, user, f"{user}-1"))
    return readers


def signature(items: list[FeedItem]) -> list[tuple[int, str, str]]:
    """What a participant saw: each event's feed sequence, type and text."""
    out = []
    for item in items:
        event = item.event
        text = getattr(event, "text", None) or getattr(event, "delta", None) or getattr(event, "to_agent", "")
        out.append((item.seq, type(event).__name__, str(text)))
    return out


async def test_everyone_in_a_room_sees_messages_and_streamed_answers_in_the_same_order(stack: Stack) -> None:
    chat = stack.chat
    await chat.create_room("General Support", agents=AGENTS)
    users = ["alice", "bob", "carol"]
    readers = await join_all(chat, "General Support", users)
    try:
        await asyncio.gather(chat.post("General Support", "alice", "alice-1", "hello everyone"),
                             chat.post("General Support", "bob", "bob-1", "what is streaming?"))
        seen = {user: await read_until(readers[user], answered(2)) for user in users}  # type: ignore[arg-type]
    finally:
        for reader in readers.values():
            await reader.close()  # type: ignore[attr-defined]
    assert signature(seen["alice"]) == signature(seen["bob"]) == signature(seen["carol"])
    items = seen["alice"]
    kinds = [type(item.event) for item in items]
    assert kinds.count(UserMessage) == 2 and kinds.count(AnswerStarted) == 2
    for answer in answers(items):
        assert answer.status == "completed" and answer.agent == "support"
        assert streamed_text(items, answer.id) == answer.text and answer.text.startswith("You said: ")
    first, second = answers(items)
    question = {item.event.id: item.event.text for item in items if isinstance(item.event, UserMessage)}
    assert first.text == f"You said: {question[first.in_reply_to]}"
    assert second.text == f"You said: {question[second.in_reply_to]}"
    assert kinds.index(AgentMessage) < len(kinds) - 1 - kinds[::-1].index(AnswerStarted), "one answer at a time"


async def test_an_agent_handoff_moves_the_room_to_the_specialist_and_everyone_sees_it(stack: Stack) -> None:
    chat = stack.chat
    await chat.create_room("Help", agents=AGENTS)
    readers = await join_all(chat, "Help", ["alice", "bob"])
    stack.mock.add_rule(Script(tool_calls=[ToolCall(name="transfer_to_tech")]),
                        match=Match(user_contains="kernel panic", has_tool_results=False), once=True)
    try:
        await chat.post("Help", "alice", "alice-1", "my kernel panic will not go away")
        seen = [await read_until(readers[u], answered(1)) for u in ("alice", "bob")]  # type: ignore[arg-type]
        assert signature(seen[0]) == signature(seen[1])
        handoffs = [i.event for i in seen[0] if isinstance(i.event, AgentHandoff)]
        assert [(h.from_agent, h.to_agent, h.by) for h in handoffs] == [("support", "tech", "agent")]
        (answer,) = answers(seen[0])
        assert answer.agent == "tech" and answer.status == "completed"
        assert (await chat.room("Help")).agent == "tech"
        assert (stack.handoffs("agent"), stack.handoffs("user")) == (1, 0)
        # The next message goes to the specialist.
        stack.mock.clear_requests()
        await chat.post("Help", "bob", "bob-1", "thanks, one more question")
        (next_answer,) = answers(await read_until(readers["alice"], answered(1)))  # type: ignore[arg-type]
        assert next_answer.agent == "tech"
        assert stack.mock.requests[0]["messages"][0]["content"] == "You are the technical specialist."
    finally:
        for reader in readers.values():
            await reader.close()  # type: ignore[attr-defined]


async def test_a_user_asked_handoff_is_seen_by_all_and_the_next_answer_comes_from_that_agent(stack: Stack) -> None:
    chat = stack.chat
    await chat.create_room("Desk", agents=AGENTS)
    readers = await join_all(chat, "Desk", ["alice", "bob"])
    try:
        info = await chat.handoff("Desk", "alice", "alice-1", "tech", reason="need a specialist")
        assert info.agent == "tech"
        assert (stack.handoffs("agent"), stack.handoffs("user")) == (0, 1)
        for user in ("alice", "bob"):
            item = await readers[user].next(3)  # type: ignore[attr-defined]
            assert isinstance(item.event, AgentHandoff)
            assert (item.event.to_agent, item.event.by, item.event.user) == ("tech", "user", "alice")
        await chat.post("Desk", "bob", "bob-1", "hello tech")
        (answer,) = answers(await read_until(readers["bob"], answered(1)))  # type: ignore[arg-type]
        assert answer.agent == "tech"
    finally:
        for reader in readers.values():
            await reader.close()  # type: ignore[attr-defined]


async def test_busy_policy_reject_refuses_a_message_while_the_agent_answers(stack: Stack) -> None:
    chat = stack.chat
    await chat.create_room("Strict", agents=AGENTS, busy_policy=BusyPolicy.REJECT)
    (reader,) = (await join_all(chat, "Strict", ["alice"])).values()
    stack.mock.add_rule(SLOW, match=Match(user_contains="slow"), once=True)
    try:
        await chat.post("Strict", "alice", "alice-1", "a slow one please")
        with pytest.raises(AgentBusy) as busy:
            await chat.post("Strict", "alice", "alice-1", "are you there?")
        assert busy.value.code == "conflict" and busy.value.agent == "support"
        await read_until(reader, answered(1))  # type: ignore[arg-type]
        await chat.post("Strict", "alice", "alice-1", "now it is my turn")
    finally:
        await reader.close()  # type: ignore[attr-defined]


async def test_busy_policy_enqueue_answers_every_message_in_order(stack: Stack) -> None:
    chat = stack.chat
    await chat.create_room("Queue", agents=AGENTS, busy_policy=BusyPolicy.ENQUEUE)
    (reader,) = (await join_all(chat, "Queue", ["alice"])).values()
    stack.mock.add_rule(SLOW, match=Match(user_contains="first"), once=True)
    try:
        accepted = [await chat.post("Queue", "alice", "alice-1", text) for text in ("first", "second", "third")]
        assert [a.queued for a in accepted] == [False, True, True]
        items = await read_until(reader, answered(3), within=20)  # type: ignore[arg-type]
    finally:
        await reader.close()  # type: ignore[attr-defined]
    assert [a.in_reply_to for a in answers(items)] == [a.message_id for a in accepted]
    assert [a.status for a in answers(items)] == ["completed"] * 3


async def test_busy_policy_interrupt_cancels_the_answer_and_answers_the_newest_message(stack: Stack) -> None:
    chat = stack.chat
    await chat.create_room("Hasty", agents=AGENTS, busy_policy=BusyPolicy.INTERRUPT)
    (reader,) = (await join_all(chat, "Hasty", ["alice"])).values()
    stack.mock.add_rule(SLOW, match=Match(user_contains="long story"), once=True)
    try:
        first = await chat.post("Hasty", "alice", "alice-1", "tell me a long story")
        streaming = await read_until(reader, lambda items: any(isinstance(i.event, AnswerDelta) for i in items))  # type: ignore[arg-type]
        skipped = await chat.post("Hasty", "alice", "alice-1", "actually, never mind")
        newest = await chat.post("Hasty", "alice", "alice-1", "what time is it?")
        first_run = next(i.event.run_id for i in streaming if isinstance(i.event, AnswerDelta))
        assert skipped.interrupted == first_run and first_run.startswith("chat-") and first.message_id
        items = await read_until(
            reader, lambda seen: any(a.in_reply_to == newest.message_id for a in answers(seen)), within=20)  # type: ignore[arg-type]
    finally:
        await reader.close()  # type: ignore[attr-defined]
    by_message = {a.in_reply_to: a for a in answers(items)}
    cancelled = by_message[first.message_id]
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled")
    assert cancelled.text and SLOW.text.startswith(cancelled.text), "the part streamed before the cancel is kept"
    # The message in between is never answered to its end: skipped, or (if its answer began) cancelled too.
    assert skipped.message_id not in by_message or by_message[skipped.message_id].status == "cancelled"
    answer = by_message[newest.message_id]
    assert (answer.status, answer.text) == ("completed", "You said: what time is it?")
    assert not (await chat.room("Hasty")).answering


async def test_the_agent_sees_the_conversation_before_the_message_it_answers(stack: Stack) -> None:
    chat = stack.chat
    await chat.create_room("Context", agents=AGENTS)
    (reader,) = (await join_all(chat, "Context", ["alice"])).values()
    try:
        await chat.post("Context", "alice", "alice-1", "my name is Alice")
        await read_until(reader, answered(1))  # type: ignore[arg-type]
        stack.mock.clear_requests()
        await chat.post("Context", "alice", "alice-1", "what is my name?")
        await read_until(reader, answered(1))  # type: ignore[arg-type]
    finally:
        await reader.close()  # type: ignore[attr-defined]
    messages = stack.mock.requests[0]["messages"]
    assert messages[0] == {"role": "system", "content": "You are the support agent."}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[1]["content"] == "alice: my name is Alice"
    assert messages[2]["content"] == "You said: my name is Alice"
    assert messages[3]["content"] == "what is my name?"


async def test_a_killed_chat_service_resumes_the_answer_without_losing_or_repeating_a_token(
    nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path,
    service_process: Callable[..., ServiceProcess]
) -> None:
    async with OpenAIMock(token_delay=0.002) as mock:
        harness = ChatHarness(nats_server.url, redis_server.url, start_app)
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(nats_server.url, mock.url, harness.prefix, tmp_path))))
        port = free_port()
        env = harness.env(HTTP_PORT=str(port))
        chat_service = service_process("services.chat", env)
        await chat_service.wait_ready(f"http://127.0.0.1:{port}")
        chat = await harness.client()
        try:
            await chat.create_room("Resilient", agents=AGENTS)
            reader = await chat.feed(await chat.join("Resilient", "alice", "alice-1"))
            text = " ".join(f"token{i}" for i in range(40))
            mock.add_rule(Script(text=text, token_delay=0.04), match=Match(user_contains="long"), once=True)
            await chat.post("Resilient", "alice", "alice-1", "a long answer please")
            before = await read_until(reader, lambda items: sum(isinstance(i.event, AnswerDelta) for i in items) >= 5)
            chat_service.kill()  # SIGKILL, mid-answer: the run goes on in the runner
            await asyncio.sleep(0.5)  # chat stays down while the runner streams on
            restarted = service_process("services.chat", env)
            await restarted.wait_ready(f"http://127.0.0.1:{port}")
            after = await read_until(reader, answered(1), within=20)
            await reader.close()
        finally:
            await harness.close()
    items = before + after
    deltas = [i.event for i in items if isinstance(i.event, AnswerDelta)]
    run_seqs = [d.seq for d in deltas]
    assert run_seqs == sorted(set(run_seqs)), "every run event relayed once, in order"
    (answer,) = answers(items)
    assert answer.status == "completed" and answer.text == text == "".join(d.delta for d in deltas)


async def test_an_answer_over_the_answer_timeout_fails_with_a_typed_error_and_the_room_goes_on(
    make_stack: Callable[..., Awaitable[Stack]]
) -> None:
    stack = await make_stack(CHAT_ANSWER_TIMEOUT="1")
    chat = stack.chat
    await chat.create_room("Patient", agents=AGENTS)
    (reader,) = (await join_all(chat, "Patient", ["alice"])).values()
    stack.mock.add_rule(Script(text=" ".join(["slow"] * 60), token_delay=0.05), match=Match(user_contains="essay"),
                        once=True)
    try:
        await chat.post("Patient", "alice", "alice-1", "write an essay")
        (failed,) = answers(await read_until(reader, answered(1), within=10))  # type: ignore[arg-type]
        assert (failed.status, failed.error) == ("failed", "timeout") and failed.text.startswith("slow")
        await chat.post("Patient", "alice", "alice-1", "short one")
        (ok,) = answers(await read_until(reader, answered(1)))  # type: ignore[arg-type]
        assert ok.status == "completed"
    finally:
        await reader.close()  # type: ignore[attr-defined]


async def test_the_agent_gets_at_most_context_messages_of_the_conversation(
    make_stack: Callable[..., Awaitable[Stack]]
) -> None:
    stack = await make_stack(CHAT_CONTEXT_MESSAGES="2")
    chat = stack.chat
    await chat.create_room("Short memory", agents=AGENTS)
    (reader,) = (await join_all(chat, "Short memory", ["alice"])).values()
    try:
        for text in ("one", "two", "three"):
            stack.mock.clear_requests()
            await chat.post("Short memory", "alice", "alice-1", text)
            await read_until(reader, answered(1))  # type: ignore[arg-type]
    finally:
        await reader.close()  # type: ignore[attr-defined]
    messages = stack.mock.requests[0]["messages"]
    assert [m["content"] for m in messages[1:]] == ["alice: two", "You said: two", "three"]
