"""The Python API (Runner, AsyncRunner, StreamingSession) against a running agent-runner over real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import raaf
from proto.runs import RunStarted, TextDelta
from raaf import Agent, AsyncRunner, Runner
from raaf.testing import OpenAIMock, Script, ToolCall
from services.agent_runner import AgentRunnerApp
from shared.devstack.servers import NatsServer
from tests.support.waiting import eventually


@pytest.fixture
async def runner(nats_server: NatsServer, prefix: str, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
                 ) -> AsyncIterator[Runner]:
    await start_runner()
    async with Runner("assistant", nats_url=nats_server.url, prefix=prefix) as client:
        yield client


async def test_run_with_stream_true_yields_chunks_with_content_and_tool_calls(mock: OpenAIMock, runner: Runner
                                                                              ) -> None:
    mock.enqueue(Script(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Lima"})]))
    mock.enqueue(Script(text="Warm in Lima."))
    text, calls = "", []
    async for chunk in runner.run("What's the weather?", stream=True):
        if chunk.tool_calls:
            calls.extend(chunk.tool_calls)
        elif chunk.content:
            text += chunk["content"]
    assert text == "Warm in Lima."
    assert [(c.name, c.arguments) for c in calls if c.output is None] == [("get_weather", '{"city":"Lima"}')]
    assert next(c.output for c in calls if c.output is not None).startswith('{"city":"Lima"')


async def test_run_returns_a_result_that_reads_like_the_seeds(mock: OpenAIMock, runner: Runner) -> None:
    mock.enqueue(Script(text="Forty-two."))
    result = await runner.run("The answer?")
    assert result.messages[-1]["content"] == "Forty-two." == result.output
    assert result.usage.total_tokens > 0 and result.agent == "assistant"
    assert isinstance(result.events[0], RunStarted)


async def test_agents_declared_in_python_run_and_hand_off(mock: OpenAIMock, runner: Runner, nats_server: NatsServer,
                                                          prefix: str) -> None:
    refunds = Agent(name="refunds", instructions="You process refunds.", model="gpt-4o")
    triage = Agent(name="triage", instructions="Route the customer.", handoffs=[refunds], tools=["add"])
    mock.enqueue(Script(tool_calls=[ToolCall(name="transfer_to_refunds")]))
    mock.enqueue(Script(text="Refund issued."))
    async with Runner(triage, nats_url=nats_server.url, prefix=prefix) as python_agents:
        result = await python_agents.run("I want my money back")
    assert result.agent == "refunds" and result.output == "Refund issued."
    assert mock.requests[0]["messages"][0]["content"] == "Route the customer."
    assert mock.requests[1]["messages"][0]["content"] == "You process refunds."
    assert mock.requests[1]["model"] == "gpt-4o"


async def test_failures_raise_typed_errors(mock: OpenAIMock, runner: Runner, nats_server: NatsServer, prefix: str
                                           ) -> None:
    async with Runner("nobody", nats_url=nats_server.url, prefix=prefix) as unknown:
        with pytest.raises(raaf.NotFoundError):
            await unknown.run("hi")
    mock.enqueue(Script(text="a b c d", error_after_tokens=1))
    got = []
    with pytest.raises(raaf.ProviderError) as failed:
        async for chunk in runner.run("hi", stream=True):
            got.append(chunk.content)
    assert "a" in got and failed.value.code == "provider_error" and failed.value.ref
    with pytest.raises(raaf.ConnectionError):
        await Runner(nats_url="nats://127.0.0.1:1", prefix=prefix).run("hi")


async def test_leaving_a_stream_early_cancels_the_run_upstream(mock: OpenAIMock, runner: Runner) -> None:
    mock.enqueue(Script(text="word " * 300, token_delay=0.02))
    async for chunk in runner.run("long", stream=True):
        if isinstance(chunk.event, TextDelta):
            break
    await mock.wait_for_disconnect(timeout=5)


async def test_async_runner_runs_in_the_background_with_callbacks_and_waits(
    mock: OpenAIMock, runner: Runner, nats_server: NatsServer, prefix: str
) -> None:
    mock.add_rule(Script(text="async answer"))
    seen: list[str] = []
    async with AsyncRunner(pool_size=4, queue_size=10, nats_url=nats_server.url, prefix=prefix) as pool:
        first = pool.process_async("assistant", "one", lambda result: seen.append(result.output))

        async def record(agent: Agent | str, result: raaf.RunResult) -> None:
            seen.append(f"{agent}:{result.agent}")

        others = pool.process_concurrent(["assistant", "billing"], "same message", record)
        results = await pool.wait_for_tasks([first, *others], timeout=10)
    assert all(isinstance(r, raaf.RunResult) and r.output == "async answer" for r in results.values())
    assert sorted(seen) == ["assistant:assistant", "async answer", "billing:billing"]


async def test_async_runner_is_bounded_and_reports_timeouts(
    mock: OpenAIMock, runner: Runner, nats_server: NatsServer, prefix: str
) -> None:
    mock.add_rule(Script(text="slow " * 20, token_delay=0.05))
    async with AsyncRunner(pool_size=1, queue_size=1, nats_url=nats_server.url, prefix=prefix) as pool:
        a = pool.process_async("assistant", "a")
        b = pool.process_async("assistant", "b")
        with pytest.raises(raaf.OverloadedError):
            pool.process_async("assistant", "c")
        early = await pool.wait_for_tasks([a, b], timeout=0.2)
        assert all(isinstance(r, raaf.TimeoutError) for r in early.values())
        late = await pool.wait_for_tasks([a, b], timeout=15)
        assert all(isinstance(r, raaf.RunResult) for r in late.values())
        assert pool.stats()["completed"] == 2


async def test_process_with_retry_outlasts_provider_errors_and_a_full_runner(
    mock: OpenAIMock, nats_server: NatsServer, prefix: str, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner(ASYNC_POOL_SIZE="1", ASYNC_QUEUE_SIZE="0", RUN_RETRY_COUNT="0")
    mock.enqueue(Script(text="blocking " * 10, token_delay=0.03))
    mock.enqueue(Script(http_status=500))
    mock.enqueue(Script(http_status=429, retry_after=0))
    mock.enqueue(Script(text="made it"))
    async with AsyncRunner(nats_url=nats_server.url, prefix=prefix) as pool:
        blocker = pool.process_async("assistant", "first")
        await eventually(lambda: mock.stats.requests == 1, what="the first run holding the runner's one slot")
        retried = pool.process_with_retry("assistant", "second", retry_count=4, retry_delay=0.05)
        results = await pool.wait_for_tasks([blocker, retried], timeout=15)
    assert isinstance(results[retried], raaf.RunResult) and results[retried].output == "made it"
    plain = AsyncRunner(nats_url=nats_server.url, prefix=prefix)
    mock.enqueue(Script(http_status=500))
    failing = plain.process_async("assistant", "no retries")
    outcome = (await plain.wait_for_tasks([failing], timeout=10))[failing]
    await plain.close()
    assert isinstance(outcome, raaf.ProviderError)


async def test_a_streaming_session_carries_the_conversation(mock: OpenAIMock, runner: Runner, nats_server: NatsServer,
                                                            prefix: str) -> None:
    mock.enqueue(Script(text="Hello Ada."))
    mock.enqueue(Script(text="Your name is Ada."))
    async with AsyncRunner(nats_url=nats_server.url, prefix=prefix) as pool:
        session = await pool.create_streaming_session("assistant").start()
        pieces: list[str] = []
        await session.send_message("I am Ada", lambda chunk: pieces.append(chunk["content"] or ""))
        second = await session.send_message("What is my name?")
    assert "".join(pieces) == "Hello Ada." and second.output == "Your name is Ada."
    conversation = [(m["role"], m["content"]) for m in mock.requests[1]["messages"][1:]]
    assert conversation == [("user", "I am Ada"), ("assistant", "Hello Ada."), ("user", "What is my name?")]
