"""Agents call tools of real MCP servers (the SDK's own, over Streamable HTTP and stdio) through the runner."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from proto.runs import AgentList, AgentSpec, RunAccepted, RunCancelled, RunCompleted, ToolOutput, ToolProgress
from raaf.testing import OpenAIMock, Script, ToolCall
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from shared.devstack.servers import NatsServer
from shared.runs.mcp import McpServer
from shared.runs.mcp_config import McpServerConfig, resolve_server
from shared.runs.tools import ToolCallContext
from shared.service.app import App
from tests.mcp_servers import RunningServer, http_mcp_server, listening_socket
from tests.support.env import ROOT
from tests.support.runs import Runs, runner_env

StartRunner = Callable[..., Awaitable[AgentRunnerApp]]


@pytest.fixture
async def mcp_server() -> AsyncIterator[RunningServer]:
    async with http_mcp_server() as running:
        yield running


@pytest.fixture
def start_mcp_runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
                     start_app: Callable[[App], Awaitable[App]]) -> StartRunner:
    """Start a runner whose agent ``assistant`` declares the MCP servers given as TOML tables."""
    async def start(servers: str, **extra: str) -> AgentRunnerApp:
        agents = tmp_path / "mcp_agents.toml"
        agents.write_text('[[agents]]\nname = "assistant"\ninstructions = "Use your tools."\n'
                          'tools = ["get_weather"]\n\n' + servers)
        env = runner_env(nats_server.url, mock.url, prefix, tmp_path, **extra)
        env["RAAF_AGENTS_FILE"] = str(agents)
        app = AgentRunnerApp(AgentRunnerSettings.from_env(env))
        await start_app(app)
        return app
    return start


def http_server(url: str, **fields: Any) -> str:
    lines = ["[[agents.mcp_servers]]", 'name = "docs"', f'url = "{url}"']
    lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f'{k} = "{v}"' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


def server_of(app: AgentRunnerApp) -> McpServer:
    [server] = app.mcp.servers["assistant"]
    return server


def offered(request: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools", [])}


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [message["content"] for message in request["messages"] if message["role"] == "tool"]


async def test_the_model_calls_an_mcp_tool_and_its_output_reaches_the_model_and_the_final_answer(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock, mcp_server: RunningServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token_variable = f"DOCS_TOKEN_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(token_variable, "Bearer s3cret")
    await start_mcp_runner(http_server(mcp_server.url, headers={"Authorization": token_variable}))
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_lookup", arguments={"city": "Oslo"})]))
    mock.enqueue(Script(text="Oslo is wet today."))

    events = await runs.run("Weather in Oslo?")

    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert (output.name, output.output, output.is_error) == ("docs_lookup", "Oslo: 7 C and drizzle", False)
    assert "docs_lookup" in offered(mock.requests[0]) and "get_weather" in offered(mock.requests[0])
    assert tool_messages(mock.requests[1]) == ["Oslo: 7 C and drizzle"]
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "Oslo is wet today."
    assert mcp_server.record.calls == ["lookup:Oslo"]
    assert mcp_server.record.headers[0]["authorization"] == "Bearer s3cret"


async def test_progress_notifications_become_tool_progress_events_before_the_output(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock, mcp_server: RunningServer) -> None:
    await start_mcp_runner(http_server(mcp_server.url))
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_slow", arguments={"steps": 3})]))
    mock.enqueue(Script(text="Done."))

    events = await runs.run("Work a little.")

    progress = [e for e in events if isinstance(e, ToolProgress)]
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert progress, [type(e).__name__ for e in events]
    assert {(p.call_id, p.name, p.total) for p in progress} == {(output.call_id, "docs_slow", 3.0)}
    assert [p.progress for p in progress] == sorted({p.progress for p in progress})
    assert progress[-1].message is not None and progress[-1].message.startswith("step ")
    assert events.index(progress[-1]) < events.index(output)
    assert output.output == "finished 3 steps"


async def test_cancelling_a_run_during_a_slow_mcp_call_cancels_the_call_on_the_mcp_server(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock, mcp_server: RunningServer) -> None:
    await start_mcp_runner(http_server(mcp_server.url))
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_slow", arguments={"steps": 600})]))
    accepted = await runs.start("Work for a minute.")
    assert isinstance(accepted, RunAccepted)
    await asyncio.wait_for(mcp_server.record.slow_started.wait(), 15)

    await runs.client.cancel(accepted.run_id, "user pressed stop")

    await asyncio.wait_for(mcp_server.record.cancel_notified.wait(), 10)
    await asyncio.wait_for(mcp_server.record.slow_cancelled.wait(), 10)
    events = await runs.events(accepted.run_id)
    assert isinstance(events[-1], RunCancelled) and events[-1].reason == "user pressed stop"
    assert not any(isinstance(e, ToolOutput) for e in events)


async def test_a_call_past_the_call_timeout_is_a_tool_error_and_is_cancelled_on_the_server(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock, mcp_server: RunningServer) -> None:
    await start_mcp_runner(http_server(mcp_server.url, call_timeout=0.5))
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_slow", arguments={"steps": 600})]))
    mock.enqueue(Script(text="It took too long."))

    events = await runs.run("Work for a minute.")

    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert output.is_error and "did not answer within 0.5 s" in output.output
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "It took too long."
    await asyncio.wait_for(mcp_server.record.cancel_notified.wait(), 10)
    await asyncio.wait_for(mcp_server.record.slow_cancelled.wait(), 10)


async def test_an_unreachable_mcp_server_gives_the_model_a_tool_error_and_the_run_still_ends(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock) -> None:
    closed = listening_socket()
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connections are refused
    app = await start_mcp_runner(http_server(f"http://127.0.0.1:{port}/mcp", tools=["lookup"]),
                                 MCP_CONNECT_TIMEOUT="0.5")
    assert not server_of(app).connected
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_lookup", arguments={"city": "Oslo"})]))
    mock.enqueue(Script(text="The weather service is down."))

    events = await runs.run("Weather in Oslo?")

    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert output.is_error and output.output.startswith("error: MCP server docs is unavailable")
    assert tool_messages(mock.requests[1]) == [output.output]
    assert isinstance(events[-1], RunCompleted) and events[-1].output == "The weather service is down."


async def test_a_server_that_goes_down_gives_a_tool_error_and_is_reconnected_when_back(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock) -> None:
    async with http_mcp_server() as first:
        app = await start_mcp_runner(http_server(first.url), MCP_CONNECT_TIMEOUT="0.5", MCP_RECONNECT_DELAY="0.2")
        port = first.port
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_lookup", arguments={"city": "Oslo"})]))
    mock.enqueue(Script(text="Down."))
    events = await runs.run("Weather in Oslo?")
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert output.is_error and "MCP server docs" in output.output
    assert "docs_lookup" in offered(mock.requests[0])  # the last list is kept while the server is away

    async with http_mcp_server(port) as again:
        assert await server_of(app).wait_connected(10)
        mock.enqueue(Script(tool_calls=[ToolCall(name="docs_lookup", arguments={"city": "Bergen"})]))
        mock.enqueue(Script(text="Back."))
        events = await runs.run("Weather in Bergen?")
        [output] = [e for e in events if isinstance(e, ToolOutput)]
        assert (output.output, output.is_error) == ("Bergen: 7 C and drizzle", False)
        assert again.record.calls == ["lookup:Bergen"]


async def test_an_mcp_server_over_stdio_serves_its_tools(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock) -> None:
    await start_mcp_runner("\n".join([
        "[[agents.mcp_servers]]", 'name = "local"', f'command = "{sys.executable}"',
        'args = ["-m", "tests.mcp_servers"]', f'cwd = "{ROOT}"', 'tools = ["lookup", "fail"]']) + "\n")
    mock.enqueue(Script(tool_calls=[ToolCall(name="local_lookup", arguments={"city": "Tromso"}),
                                    ToolCall(name="local_fail", arguments={"reason": "no such fjord"})]))
    mock.enqueue(Script(text="Cold."))

    events = await runs.run("Weather in Tromso?")

    outputs = {e.name: e for e in events if isinstance(e, ToolOutput)}
    assert (outputs["local_lookup"].output, outputs["local_lookup"].is_error) == ("Tromso: 7 C and drizzle", False)
    assert outputs["local_fail"].is_error and "no such fjord" in outputs["local_fail"].output
    assert offered(mock.requests[0]) == {"get_weather", "local_lookup", "local_fail"}
    assert isinstance(events[-1], RunCompleted)


async def test_a_stdio_server_that_dies_gives_a_tool_error_and_is_started_again(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock) -> None:
    app = await start_mcp_runner("\n".join([
        "[[agents.mcp_servers]]", 'name = "local"', f'command = "{sys.executable}"',
        'args = ["-m", "tests.mcp_servers"]', f'cwd = "{ROOT}"']) + "\n", MCP_RECONNECT_DELAY="0.2")
    listed = server_of(app).refreshes
    mock.enqueue(Script(tool_calls=[ToolCall(name="local_die", arguments={})]))
    mock.enqueue(Script(text="It died."))
    events = await runs.run("Die.")
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert output.is_error and "MCP server local" in output.output

    await asyncio.wait_for(server_of(app).wait_listed(listed), 15)  # a new child, its tools listed again
    mock.enqueue(Script(tool_calls=[ToolCall(name="local_lookup", arguments={"city": "Oslo"})]))
    mock.enqueue(Script(text="Back."))
    events = await runs.run("Weather in Oslo?")
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert (output.output, output.is_error) == ("Oslo: 7 C and drizzle", False)


async def test_the_allow_list_hides_the_servers_other_tools(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock, mcp_server: RunningServer) -> None:
    await start_mcp_runner(http_server(mcp_server.url, tools=["lookup"]))
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_secret", arguments={})]))
    mock.enqueue(Script(text="No secret for you."))

    events = await runs.run("Tell me the secret.")

    assert offered(mock.requests[0]) == {"get_weather", "docs_lookup"}
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert output.is_error and "no tool named 'docs_secret'" in output.output
    assert "secret" not in mcp_server.record.calls


async def test_a_list_changed_notification_refreshes_the_cached_tool_list(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock, mcp_server: RunningServer) -> None:
    app = await start_mcp_runner(http_server(mcp_server.url))
    server = server_of(app)
    listed = server.refreshes
    assert "docs_extra" not in server.tools
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_grow", arguments={})]))
    mock.enqueue(Script(text="Grown."))
    await runs.run("Grow a tool.")

    await asyncio.wait_for(server.wait_listed(listed), 10)

    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_extra", arguments={"x": 21})]))
    mock.enqueue(Script(text="42."))
    events = await runs.run("Double 21.")
    assert "docs_extra" in offered(mock.requests[2])
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert (output.output, output.is_error) == ("42", False)


async def test_an_agent_a_request_defines_under_a_file_agents_name_gets_none_of_its_mcp_tools(
        start_mcp_runner: StartRunner, runs: Runs, mock: OpenAIMock, mcp_server: RunningServer) -> None:
    await start_mcp_runner(http_server(mcp_server.url))
    mock.enqueue(Script(tool_calls=[ToolCall(name="docs_lookup", arguments={"city": "Oslo"})]))
    mock.enqueue(Script(text="No tools here."))

    events = await runs.run("Weather?", agents=[AgentSpec(name="assistant", tools=["get_weather"])])

    assert offered(mock.requests[0]) == {"get_weather"}
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert output.is_error and "no tool named 'docs_lookup'" in output.output
    assert mcp_server.record.calls == []


async def test_the_agents_list_shows_an_agents_allowed_mcp_tools(
        start_mcp_runner: StartRunner, runs: Runs, mcp_server: RunningServer) -> None:
    await start_mcp_runner(http_server(mcp_server.url, tools=["lookup", "slow"]))
    listing = await runs.client.agents()
    assert isinstance(listing, AgentList)
    [assistant] = [agent for agent in listing.agents if agent.name == "assistant"]
    assert assistant.tools == ["get_weather", "docs_lookup", "docs_slow"]


async def test_the_approval_policy_is_carried_on_each_tool(
        start_mcp_runner: StartRunner, mcp_server: RunningServer) -> None:
    app = await start_mcp_runner(http_server(mcp_server.url, tools=["lookup", "fail"],
                                             approval={"fail": "always"}))
    tools = server_of(app).tools
    assert (tools["docs_fail"].requires_approval, tools["docs_lookup"].requires_approval) == (True, False)



async def test_a_progress_event_that_cannot_be_stored_fails_the_call_but_not_the_connection(
        mcp_server: RunningServer) -> None:
    server = McpServer(resolve_server(McpServerConfig(name="docs", url=mcp_server.url), connect_timeout=5,
                                      call_timeout=30, environ={}))
    server.start()
    try:
        assert await server.wait_connected(10)
        listed = server.refreshes

        async def unstorable(progress: float, total: float | None, message: str | None) -> None:
            raise RuntimeError("the run's events cannot be stored")

        with pytest.raises(RuntimeError, match="cannot be stored"):
            await server.tools["docs_slow"].call('{"steps": 50}', ToolCallContext("call-1", unstorable))
        await asyncio.wait_for(mcp_server.record.cancel_notified.wait(), 10)
        assert server.connected and server.refreshes == listed
        assert await server.tools["docs_lookup"].call('{"city": "Oslo"}') == "Oslo: 7 C and drizzle"
    finally:
        await server.stop()
