"""The OpenAI Agents SDK, unchanged, on its default Responses model: streamed runs and a tool it runs itself."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from agents import Agent, OpenAIProvider, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled
from openai.types.responses import ResponseTextDeltaEvent

from raaf.testing import Match, OpenAIMock, Script, ToolCall

ORDERS: list[str] = []


@function_tool
def lookup_order(number: str) -> str:
    """Find an order by its number."""
    ORDERS.append(number)
    return f"order {number}: shipped"


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI
    ORDERS.clear()
    yield
    set_tracing_disabled(False)


def platform_agent(api: openai.AsyncOpenAI, **fields: object) -> Agent:
    """An SDK agent whose model is the platform's ``assistant``, over the SDK's default Responses model."""
    return Agent(name="helper", instructions="Be brief.",
                 model=OpenAIResponsesModel(model="assistant", openai_client=api), **fields)  # type: ignore[arg-type]


async def test_run_streamed_on_the_default_responses_model_streams_the_agents_answer(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="Hello from the platform, token by token."))
    # The SDK's default provider picks its default model class for a model name: OpenAIResponsesModel.
    provider = OpenAIProvider(openai_client=api)
    assert isinstance(provider.get_model("assistant"), OpenAIResponsesModel)
    agent = Agent(name="helper", instructions="Be brief.", model="assistant")
    result = Runner.run_streamed(agent, "hi", run_config=RunConfig(model_provider=provider))
    deltas = [event.data.delta async for event in result.stream_events()
              if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent)]
    assert "".join(deltas) == "Hello from the platform, token by token." and len(deltas) > 3
    assert result.final_output == "Hello from the platform, token by token."
    assert ("system", "Be brief.") in [(m["role"], m["content"]) for m in mock.requests[0]["messages"]]


async def test_a_function_tool_is_run_by_the_sdk_and_its_result_gets_the_answer(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.add_rule(match=Match(has_tool_results=False),
                  script=Script(tool_calls=[ToolCall(name="lookup_order", arguments={"number": "42"})]))
    mock.add_rule(match=Match(has_tool_results=True), script=Script(text="Order 42 has shipped."))
    result = Runner.run_streamed(platform_agent(api, tools=[lookup_order]), "where is order 42?")
    kinds = [event.name async for event in result.stream_events() if event.type == "run_item_stream_event"]
    assert ORDERS == ["42"]
    assert result.final_output == "Order 42 has shipped."
    assert kinds[:2] == ["tool_called", "tool_output"]
    offered = {tool["function"]["name"] for tool in mock.requests[0]["tools"]}
    assert "lookup_order" in offered and "get_weather" in offered  # the SDK's tool beside the agent's own
    second = mock.requests[1]["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["content"] == "order 42: shipped"
    assert second[-2]["tool_calls"][0]["function"]["name"] == "lookup_order"


async def test_the_sdks_previous_response_id_continues_the_platforms_stored_conversation(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="Hello Ada."))
    mock.enqueue(Script(text="You are Ada."))
    config = RunConfig(model_provider=OpenAIProvider(openai_client=api))
    agent = Agent(name="helper", model="assistant")
    first = await Runner.run(agent, "I am Ada.", run_config=config)
    second = await Runner.run(agent, "Who am I?", run_config=config, previous_response_id=first.last_response_id)
    assert second.final_output == "You are Ada."
    sent = [(m["role"], m["content"]) for m in mock.requests[1]["messages"]]
    assert sent[-3:] == [("user", "I am Ada."), ("assistant", "Hello Ada."), ("user", "Who am I?")]
