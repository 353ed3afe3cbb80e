"""The OpenAI Agents SDK, unchanged, as the client deciding a platform agent's tool approvals: its HostedMCPTool
(named by the agent) takes the Responses API's ``mcp_approval_request``, by callback or as an interruption."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import openai
import pytest
from agents import (
    Agent,
    HostedMCPTool,
    MCPToolApprovalRequest,
    ModelBehaviorError,
    OpenAIResponsesModel,
    Runner,
    set_tracing_disabled,
)

from raaf.testing import OpenAIMock
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.approvals import approvals_env
from tests.support.env import service_env
from tests.support.gateway import SECRET, token
from tests.support.processes import ServiceProcess
from tests.support.restart import alive, calls, scripted_model
from tests.support.runs import Runs

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI
    yield
    set_tracing_disabled(False)


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.01, fallback=scripted_model) as server:
        yield server


@pytest.fixture
async def gateway(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, runs: Runs,
                  service_process: Callable[..., ServiceProcess], start_app: StartApp) -> str:
    service_process("services.agent_runner", approvals_env(nats_server.url, mock.url, prefix, tmp_path, "a"))
    await alive(runs, "a")
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5",
                      GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET)
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    return app.http_url


def clerk(gateway: str, approvals: HostedMCPTool) -> Agent:
    """An SDK agent on the platform's ``clerk`` (whose ``charge`` needs approval), deciding through ``approvals``."""
    api = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token("alice"))
    return Agent(name="till", model=OpenAIResponsesModel(model="clerk", openai_client=api), tools=[approvals])


def decides_for_the_clerk(**config: object) -> HostedMCPTool:
    return HostedMCPTool(tool_config={"type": "mcp", "server_label": "clerk",  # type: ignore[typeddict-item]
                                      "require_approval": "always"}, **config)  # type: ignore[arg-type]


async def test_the_sdks_approval_callback_approves_the_platforms_tool_call_and_the_run_goes_on(
    gateway: str, tmp_path: Path
) -> None:
    asked: list[MCPToolApprovalRequest] = []

    def approve(request: MCPToolApprovalRequest) -> dict[str, object]:
        asked.append(request)
        return {"approve": True}

    result = await Runner.run(clerk(gateway, decides_for_the_clerk(on_approval_request=approve)), "charge:6000",
                              auto_previous_response_id=True)
    assert [(r.data.name, r.data.server_label) for r in asked] == [("charge", "clerk")]
    assert "Done (charged 6000)" in result.final_output
    assert [item.type for item in result.new_items] == [
        "message_output_item", "mcp_approval_request_item", "mcp_approval_response_item", "message_output_item"]
    first, rest = result.raw_responses
    assert rest.response_id == first.response_id, "the platform's same response (run) went on"
    assert [item.type for item in rest.output] == ["message"], "the answer holds the items after the decision"
    assert calls(tmp_path) == ["charge 6000"]


async def test_the_sdks_approval_callback_rejects_with_a_reason_and_the_model_answers_it(
    gateway: str, tmp_path: Path
) -> None:
    def reject(request: MCPToolApprovalRequest) -> dict[str, object]:
        return {"approve": False, "reason": "Too much."}

    result = await Runner.run(clerk(gateway, decides_for_the_clerk(on_approval_request=reject)), "charge:4000",
                              auto_previous_response_id=True)
    assert "Done (Too much.)" in result.final_output and calls(tmp_path) == []
    (answer,) = [item.raw_item for item in result.new_items if item.type == "mcp_approval_response_item"]
    assert answer == {"type": "mcp_approval_response", "approval_request_id": "mcpr_call_1_charge",
                      "approve": False, "reason": "Too much."}


async def test_without_a_callback_the_request_is_an_interruption_and_the_resumed_state_decides_it(
    gateway: str, tmp_path: Path
) -> None:
    agent = clerk(gateway, decides_for_the_clerk())
    paused = await Runner.run(agent, "charge:6000", auto_previous_response_id=True)
    (interruption,) = paused.interruptions
    assert (interruption.tool_name, interruption.raw_item.server_label) == ("charge", "clerk")  # type: ignore[union-attr]
    assert calls(tmp_path) == [], "the platform's run waits parked while the app decides"
    state = paused.to_state()
    state.approve(interruption)
    resumed = await Runner.run(agent, state, auto_previous_response_id=True)
    assert "Done (charged 6000)" in resumed.final_output and calls(tmp_path) == ["charge 6000"]


async def test_a_resumed_state_rejects_with_the_apps_message_for_the_model(gateway: str, tmp_path: Path) -> None:
    agent = clerk(gateway, decides_for_the_clerk())
    paused = await Runner.run(agent, "charge:4000", auto_previous_response_id=True)
    state = paused.to_state()
    state.reject(paused.interruptions[0], rejection_message="Not today.")
    resumed = await Runner.run(agent, state, auto_previous_response_id=True)
    assert "Done (Not today.)" in resumed.final_output and calls(tmp_path) == []


async def test_without_response_chaining_the_sdk_resends_the_transcript_and_is_told_to_chain(gateway: str) -> None:
    with pytest.raises(openai.BadRequestError, match="auto_previous_response_id"):
        await Runner.run(clerk(gateway, decides_for_the_clerk(on_approval_request=lambda _: {"approve": True})),
                         "charge:6000")


async def test_a_streamed_sdk_run_decides_by_callback_and_streams_the_rest_of_the_platforms_run(
    gateway: str, tmp_path: Path
) -> None:
    agent = clerk(gateway, decides_for_the_clerk(on_approval_request=lambda _: {"approve": True}))
    result = Runner.run_streamed(agent, "charge:6000", auto_previous_response_id=True)
    kinds = [event.name async for event in result.stream_events() if event.type == "run_item_stream_event"]
    assert kinds == ["message_output_created", "mcp_approval_requested", "mcp_approval_response",
                     "message_output_created"]
    assert "Done (charged 6000)" in str(result.final_output) and calls(tmp_path) == ["charge 6000"]


async def test_an_sdk_agent_without_the_agents_hosted_mcp_tool_cannot_take_the_request(
    gateway: str, tmp_path: Path
) -> None:
    api = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token("alice"))
    agent = Agent(name="till", model=OpenAIResponsesModel(model="clerk", openai_client=api))
    with pytest.raises(ModelBehaviorError, match="MCP server label clerk not found"):
        await Runner.run(agent, "charge:6000", auto_previous_response_id=True)
    assert calls(tmp_path) == [], "the platform's run waits for a decision from elsewhere"
