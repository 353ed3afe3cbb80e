"""The agent-runner streams runs from a real OpenAI-wire server through real NATS, with tools and handoffs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from proto.errors import Error, ErrorCode
from proto.runs import (
    AgentChanged,
    AgentList,
    AgentSpec,
    Handoff,
    RunAccepted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolOutput,
)
from raaf.testing import OpenAIMock, Script, ToolCall
from services.agent_runner import AgentRunnerApp
from shared.devstack.servers import NatsServer
from tests.support.processes import ServiceProcess
from tests.support.runs import Runs, new_run_id, runner_env, types
from tests.support.waiting import eventually


async def test_tokens_arrive_in_order_and_the_text_equals_the_mocks(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    text = "Streaming is the art of saying things one token at a time, in order."
    mock.enqueue(Script(text=text, token_delay=0.002))
    events = await runs.run("tell me")
    assert isinstance(events[0], RunStarted) and events[0].agent == "assistant"
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap-free seq"
    deltas = [e.delta for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == text and len(deltas) > 5
    final = events[-1]
    assert isinstance(final, RunCompleted) and final.output == text and final.usage.total_tokens > 0
    request = mock.requests[0]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert request["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}


async def test_a_tool_call_runs_and_its_output_reaches_the_model_and_the_client(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.enqueue(Script(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}, fragments=4)]))
    mock.enqueue(Script(text="It is 21 degrees in Paris."))
    events = await runs.run("weather in Paris?")
    assert types(events) == ["RunStarted", "ToolCallStarted", *["ToolCallDelta"] * 4, "ToolCallFinished",
                             "ToolOutput", *["TextDelta"] * 6, "RunCompleted"]
    started = next(e for e in events if isinstance(e, ToolCallStarted))
    pieces = "".join(e.delta for e in events if isinstance(e, ToolCallDelta))
    finished = next(e for e in events if isinstance(e, ToolCallFinished))
    assert started.name == "get_weather" and pieces == finished.arguments == '{"city":"Paris"}'
    output = next(e for e in events if isinstance(e, ToolOutput))
    assert json.loads(output.output) == {"city": "Paris", "temperature": 21, "unit": "c"} and not output.is_error
    follow_up = mock.requests[1]["messages"]
    assert follow_up[-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert follow_up[-1] == {"role": "tool", "tool_call_id": started.call_id, "content": output.output}
    assert mock.requests[0]["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert isinstance(events[-1], RunCompleted) and events[-1].turns == 2


async def test_parallel_tool_calls_and_the_index_reuse_variant_run_every_call(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    calls = [ToolCall(name="add", arguments={"a": 2, "b": 3}), ToolCall(name="get_weather", arguments={"city": "Oslo"})]
    for index_reuse in (False, True):
        mock.enqueue(Script(tool_calls=calls, index_reuse=index_reuse))
        mock.enqueue(Script(text="ok"))
        events = await runs.run("two things")
        outputs = [e.output for e in events if isinstance(e, ToolOutput)]
        finished = [(e.name, e.arguments) for e in events if isinstance(e, ToolCallFinished)]
        assert finished == [("add", '{"a":2,"b":3}'), ("get_weather", '{"city":"Oslo"}')], index_reuse
        assert outputs[0] == "5" and json.loads(outputs[1])["city"] == "Oslo"


async def test_tool_errors_and_bad_arguments_go_back_to_the_model_as_error_outputs(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.enqueue(Script(tool_calls=[ToolCall(name="explode", arguments={"reason": "boom"}),
                                    ToolCall(name="add", arguments='{"a": "x"'),
                                    ToolCall(name="no_such_tool", arguments={})]))
    mock.enqueue(Script(text="recovered"))
    events = await runs.run("break things")
    outputs = [e for e in events if isinstance(e, ToolOutput)]
    assert all(o.is_error for o in outputs) and len(outputs) == 3
    assert "RuntimeError: boom" in outputs[0].output
    assert "invalid arguments for add" in outputs[1].output
    assert "no tool named 'no_such_tool'" in outputs[2].output
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "recovered"


async def test_a_handoff_switches_agents_model_and_instructions(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.enqueue(Script(tool_calls=[ToolCall(name="transfer_to_billing")]))
    mock.enqueue(Script(text="Billing here: your invoice is paid."))
    events = await runs.run("my invoice?")
    handoff = next(e for e in events if isinstance(e, Handoff))
    changed = next(e for e in events if isinstance(e, AgentChanged))
    assert (handoff.from_agent, handoff.to_agent) == ("assistant", "billing")
    assert (changed.agent, changed.previous, changed.model) == ("billing", "assistant", "gpt-4o")
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert {t.agent for t in texts} == {"billing"}
    final = events[-1]
    assert isinstance(final, RunCompleted) and final.agent == "billing"
    first, second = mock.requests
    assert any(t["function"]["name"] == "transfer_to_billing" for t in first["tools"])
    assert second["model"] == "gpt-4o"
    assert second["messages"][0] == {"role": "system", "content": "You handle billing questions."}
    assert "tools" not in second


async def test_agents_defined_in_the_request_run_without_configuration(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.enqueue(Script(text="Ahoy."))
    pirate = AgentSpec(name="pirate", instructions="Talk like a pirate.", model="gpt-4o-mini", temperature=0.3)
    events = await runs.run("hello", agent="pirate", agents=[pirate])
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "Ahoy."
    assert mock.requests[0]["messages"][0]["content"] == "Talk like a pirate."
    assert mock.requests[0]["temperature"] == 0.3
    sneaky = AgentSpec(name="sneaky", base_url="http://attacker.invalid/v1", api_key_env="HOME")
    refused = await runs.start("hi", agent="sneaky", agents=[sneaky])
    assert isinstance(refused, Error) and refused.code == ErrorCode.BAD_REQUEST


async def test_unknown_agent_oversize_input_and_malformed_requests_get_typed_errors(
    runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]], prefix: str
) -> None:
    await start_runner(RUN_MAX_INPUT_BYTES="2000")
    unknown = await runs.start("hi", agent="nobody")
    assert isinstance(unknown, Error) and unknown.code == ErrorCode.NOT_FOUND and "assistant" in unknown.message
    big = await runs.start("x" * 5000)
    assert isinstance(big, Error) and big.code == ErrorCode.TOO_LARGE and "2000" in big.message
    for payload in (b"not json", b'{"type":"run_request"}', b'{"type":"run_request","run_id":"a.b","agent":"x",'
                    b'"input":"y"}', b'{"type":"run_request","run_id":"r1","agent":"assistant","input":"y",'
                    b'"timeout":-1}', b"[]"):
        reply = await runs.nc.request(f"{prefix}.runs.request", payload, timeout=5)
        error = json.loads(reply.data)
        assert error["type"] == "error" and error["code"] == "bad_request", (payload, error)
    bad_tool = await runs.start("hi", agent="x", agents=[AgentSpec(name="x", tools=["rm_rf"])])
    assert isinstance(bad_tool, Error) and bad_tool.code == ErrorCode.BAD_REQUEST and "rm_rf" in bad_tool.message


async def test_a_run_id_can_be_used_only_once(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    run_id = new_run_id()
    await runs.run("first", run_id=run_id)
    again = await runs.start("second", run_id=run_id)
    assert isinstance(again, Error) and again.code == ErrorCode.CONFLICT


async def test_a_full_pool_and_queue_answer_overloaded_at_once_and_queued_runs_start_later(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner(ASYNC_POOL_SIZE="1", ASYNC_QUEUE_SIZE="1")
    mock.add_rule(Script(text="slow answer here", token_delay=0.1))
    first = await runs.start("one")
    second = await runs.start("two")
    loop = asyncio.get_running_loop()
    asked = loop.time()
    third = await runs.start("three")
    assert isinstance(first, RunAccepted) and not first.queued
    assert isinstance(second, RunAccepted) and second.queued
    assert isinstance(third, Error) and third.code == ErrorCode.OVERLOADED
    assert loop.time() - asked < 0.5, "overload is answered at once"
    queued = await runs.events(second.run_id)
    assert types(queued)[:2] == ["RunQueued", "RunStarted"] and isinstance(queued[-1], RunCompleted)
    assert isinstance(queued[0], RunQueued)


async def test_cancel_closes_the_upstream_connection_and_ends_with_cancelled(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.enqueue(Script(text="word " * 200, token_delay=0.02))
    accepted = await runs.start("long answer")
    assert isinstance(accepted, RunAccepted)
    seen: list[object] = []
    async for event, _ in runs.client.follow(accepted.run_id):
        seen.append(event)
        if sum(isinstance(e, TextDelta) for e in seen) == 3:
            reply = await runs.client.cancel(accepted.run_id, "user pressed stop")
            assert reply.type == "cancel_accepted" if hasattr(reply, "type") else True
    await mock.wait_for_disconnect(timeout=5)
    assert mock.stats.client_disconnects == 1 and mock.stats.streams_completed == 0
    final = seen[-1]
    assert isinstance(final, RunCancelled) and final.reason == "user pressed stop"
    assert sum(isinstance(e, TextDelta) for e in seen) < 20
    gone = await runs.client.cancel(accepted.run_id)
    assert isinstance(gone, Error) and gone.code == ErrorCode.NOT_FOUND


async def test_provider_errors_before_the_first_token_are_retried_with_backoff(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner(RUN_RETRY_COUNT="3")
    mock.enqueue(Script(http_status=429, retry_after=0))
    mock.enqueue(Script(http_status=500))
    mock.enqueue(Script(text="a b c", error_after_tokens=0))
    mock.enqueue(Script(text="finally here"))
    events = await runs.run("hi")
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "finally here"
    assert "".join(e.delta for e in events if isinstance(e, TextDelta)) == "finally here"
    assert len(mock.requests) == 4


async def test_retries_are_bounded_and_client_errors_are_not_retried(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.add_rule(Script(http_status=503))
    events = await runs.run("hi", retry_count=2, retry_delay=0.0)
    assert isinstance(events[-1], RunFailed) and events[-1].code == ErrorCode.PROVIDER_ERROR
    assert "503" in events[-1].message and len(mock.requests) == 3
    mock.clear_rules()
    mock.clear_requests()
    mock.add_rule(Script(http_status=401))
    events = await runs.run("hi", retry_count=5)
    assert isinstance(events[-1], RunFailed) and "401" in events[-1].message and len(mock.requests) == 1


@pytest.mark.parametrize("script", [
    Script(text="one two three four", error_after_tokens=2),
    Script(text="one two three four", cut_after_tokens=2),
    Script(text="one two three four", cut_after_tokens=2, cut_mode="drop"),
], ids=["error-event", "cut-clean", "cut-drop"])
async def test_provider_failures_after_the_first_token_fail_the_run_with_a_typed_error(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]], script: Script
) -> None:
    await start_runner()
    mock.enqueue(script)
    events = await runs.run("hi")
    assert [e.delta for e in events if isinstance(e, TextDelta)] == ["one", " two"]
    assert isinstance(events[-1], RunFailed) and events[-1].code == ErrorCode.PROVIDER_ERROR
    assert "after the first token" in events[-1].message and len(mock.requests) == 1


async def test_a_run_over_its_timeout_fails_with_timeout_and_closes_upstream(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.enqueue(Script(text="slow " * 100, token_delay=0.05))
    events = await runs.run("hi", timeout=0.4)
    assert isinstance(events[-1], RunFailed) and events[-1].code == ErrorCode.TIMEOUT
    await mock.wait_for_disconnect(timeout=5)


async def test_a_model_that_never_answers_stops_at_max_turns(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.add_rule(Script(tool_calls=[ToolCall(name="add", arguments={"a": 1, "b": 1})]))
    events = await runs.run("loop", max_turns=3)
    assert isinstance(events[-1], RunFailed) and events[-1].code == ErrorCode.MAX_TURNS
    assert len(mock.requests) == 3


async def test_a_follower_resuming_after_any_seq_gets_the_rest_exactly_once(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    await start_runner()
    mock.enqueue(Script(text="alpha beta gamma delta epsilon zeta", token_delay=0.01))
    accepted = await runs.start("go")
    assert isinstance(accepted, RunAccepted)
    everything = await runs.events(accepted.run_id)
    for after in (0, 1, 3, len(everything) - 1, len(everything)):
        rest = await runs.events(accepted.run_id, after_seq=after, timeout=5)
        assert rest == everything[after:] if after < len(everything) else rest == []


async def test_a_stopping_runner_finishes_its_runs_and_refuses_new_ones(
    mock: OpenAIMock, runs: Runs, start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    app = await start_runner()
    mock.enqueue(Script(text="a b c d e f g h", token_delay=0.05))
    accepted = await runs.start("go")
    assert isinstance(accepted, RunAccepted)
    stopping = asyncio.create_task(app.stop())
    events = await runs.events(accepted.run_id)
    await stopping
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "a b c d e f g h"
    refused = await runs.start("late")
    assert isinstance(refused, Error) and refused.code == ErrorCode.UNAVAILABLE


async def test_with_restarts_off_a_run_whose_runner_is_killed_fails_within_seconds_when_another_runner_is_alive(
    mock: OpenAIMock, runs: Runs, nats_server: NatsServer, prefix: str, tmp_path: Path,
    service_process: Callable[..., ServiceProcess], start_runner: Callable[..., Awaitable[AgentRunnerApp]]
) -> None:
    env = runner_env(nats_server.url, mock.url, prefix, tmp_path, RUN_MAX_RESTARTS="0")
    victim = service_process("services.agent_runner", env)
    await wait_for_runner(runs)
    mock.enqueue(Script(text="word " * 500, token_delay=0.02))
    accepted = await runs.start("long")
    assert isinstance(accepted, RunAccepted)
    await start_runner()  # the survivor: it reaps runs whose runner stopped renewing its lease
    loop = asyncio.get_running_loop()
    seen: list[object] = []
    killed_at = 0.0
    async with asyncio.timeout(20):
        async for event, _ in runs.client.follow(accepted.run_id):
            seen.append(event)
            if len(seen) == 5:
                victim.kill()
                killed_at = loop.time()
    final = seen[-1]
    assert isinstance(final, RunFailed) and final.code == ErrorCode.UNAVAILABLE, final
    assert loop.time() - killed_at < 10, loop.time() - killed_at
    print(f"\nagent-runner kill -9: its run failed typed (unavailable) {loop.time() - killed_at:.2f}s later "
          "(RUN_LEASE_TTL=2)")
    assert [getattr(e, "seq", 0) for e in seen] == list(range(1, len(seen) + 1))


async def test_a_run_whose_only_runner_is_killed_is_failed_by_its_follower(
    mock: OpenAIMock, runs: Runs, nats_server: NatsServer, prefix: str, tmp_path: Path,
    service_process: Callable[..., ServiceProcess]
) -> None:
    victim = service_process("services.agent_runner", runner_env(nats_server.url, mock.url, prefix, tmp_path))
    await wait_for_runner(runs)
    mock.enqueue(Script(text="word " * 500, token_delay=0.02))
    accepted = await runs.start("long")
    assert isinstance(accepted, RunAccepted)
    loop = asyncio.get_running_loop()
    killed_at = 0.0
    final = None
    async with asyncio.timeout(20):
        async for event, _ in runs.client.follow(accepted.run_id):
            final = event
            if event.seq == 3:
                victim.kill()
                killed_at = loop.time()
    assert isinstance(final, RunFailed) and final.code == ErrorCode.UNAVAILABLE
    assert loop.time() - killed_at < 10, loop.time() - killed_at


async def wait_for_runner(runs: Runs) -> None:
    async def answered() -> bool:
        return isinstance(await runs.client.agents(), AgentList)

    await eventually(answered, 30, interval=0.1, what="an agent-runner answering")
