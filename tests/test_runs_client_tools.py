"""Client-side tools: offered to the model beside the agent's own; a call ends the run with it; results continue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from proto.errors import Error, ErrorCode
from proto.runs import ChatMessage, ClientTool, RunCompleted, RunStarted, ToolCallFinished, ToolCallRecord, ToolOutput
from raaf.testing import Match, OpenAIMock, Script, ToolCall
from services.agent_runner import AgentRunnerApp
from tests.support.runs import Runs, new_run_id

StartRunner = Callable[..., Awaitable[AgentRunnerApp]]
LOCATE = ClientTool(name="locate_user", description="Where the user is.",
                    parameters={"type": "object", "properties": {"precise": {"type": "boolean"}}})


async def test_a_client_tool_is_offered_and_its_call_ends_the_run_without_running_it(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner()
    mock.enqueue(Script(text="Let me look.", tool_calls=[ToolCall(name="locate_user", arguments={"precise": True})]))
    run_id = new_run_id()
    assert not isinstance(await runs.start("where am I?", run_id=run_id, client_tools=[LOCATE]), Error)
    events = await runs.events(run_id)
    done = events[-1]
    assert isinstance(done, RunCompleted) and done.output == "Let me look."
    [call] = done.client_calls
    assert (call.name, call.arguments) == ("locate_user", '{"precise":true}')
    assert [e.call_id for e in events if isinstance(e, ToolCallFinished)] == [call.call_id]
    assert not any(isinstance(e, ToolOutput) for e in events)
    offered = {tool["function"]["name"] for tool in mock.requests[0]["tools"]}
    assert {"locate_user", "get_weather", "transfer_to_billing"} <= offered
    assert len(mock.requests) == 1


async def test_the_next_run_carrying_the_result_continues_the_conversation(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner()
    mock.add_rule(match=Match(has_tool_results=True), script=Script(text="You are in Oslo."))
    history = [ChatMessage(role="user", content="where am I?"),
               ChatMessage(role="assistant", content="", tool_calls=[ToolCallRecord(call_id="c1", name="locate_user")]),
               ChatMessage(role="tool", content='{"city":"Oslo"}', tool_call_id="c1")]
    run_id = new_run_id()
    assert not isinstance(await runs.start("", run_id=run_id, history=history, client_tools=[LOCATE]), Error)
    events = await runs.events(run_id)
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "You are in Oslo."
    assert events[-1].client_calls == []
    sent = mock.requests[0]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "c1" and sent[-1] == {
        "role": "tool", "tool_call_id": "c1", "content": '{"city":"Oslo"}'}
    first = events[0]
    assert isinstance(first, RunStarted) and first.history == history and first.input == ""


async def test_server_tools_of_the_same_turn_still_run_before_the_run_ends_with_the_client_call(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner()
    mock.enqueue(Script(tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3}),
                                    ToolCall(name="locate_user", arguments={})]))
    run_id = new_run_id()
    await runs.start("add, then locate", run_id=run_id, client_tools=[LOCATE], parallel_tool_calls=True)
    events = await runs.events(run_id)
    assert [(e.name, e.output) for e in events if isinstance(e, ToolOutput)] == [("add", "5")]
    assert isinstance(events[-1], RunCompleted) and [c.name for c in events[-1].client_calls] == ["locate_user"]
    assert mock.requests[0]["parallel_tool_calls"] is True


async def test_tool_choice_forces_the_named_tool_on_the_first_turn_only(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner()
    mock.enqueue(Script(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Rome"})]))
    mock.enqueue(Script(text="Sunny."))
    run_id = new_run_id()
    await runs.start("weather?", run_id=run_id, client_tools=[LOCATE], tool_choice_name="get_weather")
    events = await runs.events(run_id)
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "Sunny."
    assert mock.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "tool_choice" not in mock.requests[1]
    await runs.start("no tools now", run_id=new_run_id(), client_tools=[LOCATE], tool_choice="none")
    assert mock.requests[-1]["tool_choice"] == "none"


async def test_a_client_tool_named_like_a_server_tool_is_a_typed_conflict(
    runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner()
    clash = await runs.start("hi", client_tools=[ClientTool(name="get_weather")])
    assert isinstance(clash, Error) and clash.code == ErrorCode.CONFLICT and "get_weather" in clash.message
    handoff = await runs.start("hi", client_tools=[ClientTool(name="transfer_to_billing")])
    assert isinstance(handoff, Error) and handoff.code == ErrorCode.CONFLICT
    twice = await runs.start("hi", client_tools=[LOCATE, LOCATE])
    assert isinstance(twice, Error) and twice.code == ErrorCode.BAD_REQUEST
    unknown = await runs.start("hi", client_tools=[LOCATE], tool_choice_name="nope")
    assert isinstance(unknown, Error) and unknown.code == ErrorCode.BAD_REQUEST and "nope" in unknown.message
    bad_name = await runs.start("hi", client_tools=[ClientTool(name="has space")])
    assert isinstance(bad_name, Error) and bad_name.code == ErrorCode.BAD_REQUEST
