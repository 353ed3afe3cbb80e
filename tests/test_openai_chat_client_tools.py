"""Chat Completions clients' own tools: the openai client gets tool_calls back, then sends the output for the answer."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from raaf.testing import Match, OpenAIMock, Script, ToolCall

LOCATE: Any = {"type": "function", "function": {
    "name": "locate_user", "description": "Where the user is.",
    "parameters": {"type": "object", "properties": {"precise": {"type": "boolean"}}}}}


def script_a_location_conversation(mock: OpenAIMock) -> None:
    mock.add_rule(match=Match(has_tool_results=False), script=Script(
        tool_calls=[ToolCall(name="locate_user", arguments={"precise": True}, fragments=3)]))
    mock.add_rule(match=Match(has_tool_results=True), script=Script(text="You are in Oslo."))


async def test_tool_calls_come_back_and_the_request_with_the_tool_output_gets_the_answer(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    script_a_location_conversation(mock)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "where am I?"}]
    first = await api.chat.completions.create(model="assistant", messages=messages, tools=[LOCATE])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("locate_user", '{"precise":true}')
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": call.id, "type": "function",
                      "function": {"name": "locate_user", "arguments": call.function.arguments}}]},
                 {"role": "tool", "tool_call_id": call.id, "content": '{"city":"Oslo"}'}]
    second = await api.chat.completions.create(model="assistant", messages=messages, tools=[LOCATE])
    assert second.choices[0].message.content == "You are in Oslo." and second.choices[0].finish_reason == "stop"
    sent = mock.requests[1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": '{"city":"Oslo"}'}
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "locate_user"
    assert {t["function"]["name"] for t in mock.requests[0]["tools"]} >= {"locate_user", "get_weather"}


async def test_streamed_tool_calls_arrive_as_openai_deltas_with_finish_reason_tool_calls(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    script_a_location_conversation(mock)
    stream = await api.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "where?"}],
                                               tools=[LOCATE], tool_choice="required", parallel_tool_calls=False,
                                               stream=True)
    chunks = [chunk async for chunk in stream]
    pieces = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or [])]
    assert pieces[0].id and pieces[0].function and pieces[0].function.name == "locate_user"
    assert "".join(p.function.arguments or "" for p in pieces if p.function) == '{"precise":true}'
    assert {p.index for p in pieces} == {0}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert mock.requests[0]["tool_choice"] == "required" and mock.requests[0]["parallel_tool_calls"] is False


async def test_a_client_tool_clashing_with_a_server_tool_or_of_another_type_is_refused(
    api: openai.AsyncOpenAI
) -> None:
    clash: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.ConflictError, match="get_weather"):
        await api.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}],
                                          tools=[clash])
    with pytest.raises(openai.BadRequestError, match="custom"):
        await api.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hi"}],
                                          tools=[{"type": "custom", "custom": {"name": "x"}}])
    with pytest.raises(openai.BadRequestError, match="tool_call_id"):
        await api.chat.completions.create(model="assistant", messages=[{"role": "tool", "content": "x"}])  # type: ignore[list-item,typeddict-item]
