"""The official openai client's Responses API against the gateway: streams, resume, background, conversations."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from raaf.testing import Match, OpenAIMock, Script, ToolCall

ANSWER = "The quick brown fox jumps over the lazy dog, twice, and then once more for luck."
LOOKUP = {"type": "function", "name": "lookup_order", "description": "Find an order by its number.",
          "parameters": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]}}


def text_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


async def test_a_streamed_response_sends_the_apis_events_in_order_each_numbered(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text=ANSWER))
    stream = await api.responses.create(model="assistant", input="tell me", stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert text_of(events) == ANSWER
    done = events[-1].response
    assert done.status == "completed" and done.output_text == ANSWER and done.model == "assistant"
    assert done.usage is not None and done.usage.total_tokens > 0
    assert done.id == events[0].response.id and done.id.startswith("resp_")
    stored = await api.responses.retrieve(done.id)
    assert stored.output_text == ANSWER and stored.status == "completed"


async def test_a_dropped_stream_resumed_with_starting_after_gives_the_uninterrupted_text(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text=ANSWER, token_delay=0.01))
    stream = await api.responses.create(model="assistant", input="tell me", stream=True, background=True)
    before: list[Any] = []
    async for event in stream:
        before.append(event)
        if len([e for e in before if e.type == "response.output_text.delta"]) == 4:
            break
    await stream.close()  # the connection drops mid-answer; a background response goes on
    response_id = before[0].response.id
    resumed = await api.responses.retrieve(response_id, stream=True, starting_after=before[-1].sequence_number)
    after = [event async for event in resumed]
    assert after[0].sequence_number == before[-1].sequence_number + 1
    uninterrupted = [e async for e in await api.responses.retrieve(response_id, stream=True)]
    assert [e.sequence_number for e in before + after] == [e.sequence_number for e in uninterrupted]
    assert (text_of(before) + text_of(after)).encode() == text_of(uninterrupted).encode() == ANSWER.encode()
    assert after[-1].type == "response.completed"


async def test_a_background_response_is_queued_at_once_and_retrieved_when_done(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text=ANSWER, token_delay=0.005))
    started = await api.responses.create(model="assistant", input="in the background", background=True)
    assert started.status in ("queued", "in_progress") and started.background
    async for _ in await api.responses.retrieve(started.id, stream=True):
        pass  # waits for the end
    finished = await api.responses.retrieve(started.id)
    assert finished.status == "completed" and finished.output_text == ANSWER


async def test_previous_response_id_continues_the_stored_conversation(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="Nice to meet you, Ada."))
    mock.enqueue(Script(text="Your name is Ada."))
    first = await api.responses.create(model="assistant", input="My name is Ada.", instructions="Be warm.",
                                       metadata={"topic": "names"})
    assert first.metadata == {"topic": "names"}
    second = await api.responses.create(model="assistant", input="What is my name?",
                                        previous_response_id=first.id)
    assert second.output_text == "Your name is Ada." and second.previous_response_id == first.id
    sent = [(m["role"], m["content"]) for m in mock.requests[1]["messages"]]
    assert sent[1:] == [("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada."),
                        ("user", "What is my name?")]
    assert ("system", "Be warm.") in [(m["role"], m["content"]) for m in mock.requests[0]["messages"]]
    assert ("system", "Be warm.") not in sent  # instructions are not carried over, as in OpenAI's API


async def test_a_function_tool_call_comes_back_and_its_output_gets_the_answer(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.add_rule(match=Match(has_tool_results=False),
                  script=Script(tool_calls=[ToolCall(name="lookup_order", arguments={"number": "42"}, fragments=3)]))
    mock.add_rule(match=Match(has_tool_results=True), script=Script(text="Order 42 has shipped."))
    stream = await api.responses.create(model="assistant", input="where is order 42?", tools=[LOOKUP],  # type: ignore[list-item]
                                        tool_choice="auto", stream=True)
    events = [event async for event in stream]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"number":"42"}' and len(deltas) == 3
    [call] = [item for item in events[-1].response.output if item.type == "function_call"]
    assert (call.name, call.arguments, events[-1].response.status) == ("lookup_order", '{"number":"42"}', "completed")
    assert {t["function"]["name"] for t in mock.requests[0]["tools"]} >= {"lookup_order", "get_weather"}
    answer = await api.responses.create(
        model="assistant", previous_response_id=events[-1].response.id, tools=[LOOKUP],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"status":"shipped"}'}])
    assert answer.output_text == "Order 42 has shipped."
    assert mock.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": call.call_id,
                                                "content": '{"status":"shipped"}'}


async def test_cancel_ends_a_background_response_and_delete_forgets_it(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="word " * 400, token_delay=0.02))
    started = await api.responses.create(model="assistant", input="long", background=True)
    cancelled = await api.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    await mock.wait_for_disconnect(timeout=5)
    await api.responses.delete(started.id)
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve(started.id)


async def test_bad_requests_get_openai_shaped_errors_and_nothing_is_dropped_silently(
    api: openai.AsyncOpenAI, gateway: str, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(openai.NotFoundError):
        await api.responses.create(model="nobody", input="hi")
    with pytest.raises(openai.BadRequestError, match="web_search"):
        await api.responses.create(model="assistant", input="hi", tools=[{"type": "web_search"}])
    clash = dict(LOOKUP, name="get_weather")
    with pytest.raises(openai.ConflictError, match="get_weather"):
        await api.responses.create(model="assistant", input="hi", tools=[clash])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="input_image"):
        await api.responses.create(model="assistant", input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/cat.png"}]}])
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve("resp_unknown")
    with pytest.raises(openai.NotFoundError):
        await api.responses.create(model="assistant", input="hi", previous_response_id="resp_unknown")
    async with http.post(f"{gateway}/v1/responses", data=b"{not json",
                         headers={"Content-Type": "application/json"}) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["error"]["type"] == "invalid_request_error"
    mock_free = await api.responses.create(model="assistant", input="hi", background=True)
    async with http.get(f"{gateway}/v1/responses/{mock_free.id}?stream=true&starting_after=nine") as resp:
        body = await resp.json()
        assert resp.status == 400 and "starting_after" in body["error"]["message"]


async def test_tool_choice_parallel_calls_and_max_output_tokens_reach_the_model(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.add_rule(match=Match(has_tool_results=False),
                  script=Script(tool_calls=[ToolCall(name="lookup_order", arguments={"number": "1"})]))
    response = await api.responses.create(model="assistant", input="order 1?", tools=[LOOKUP],  # type: ignore[list-item]
                                          tool_choice={"type": "function", "name": "lookup_order"},
                                          parallel_tool_calls=False, max_output_tokens=64)
    assert [item.type for item in response.output] == ["function_call"]
    sent = mock.requests[0]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "lookup_order"}}
    assert (sent["parallel_tool_calls"], sent["max_tokens"]) == (False, 64)


async def test_the_clients_stream_helper_accumulates_the_same_final_response(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="Let me look.", tool_calls=[ToolCall(name="lookup_order", arguments={"number": "9"})]))
    async with api.responses.stream(model="assistant", input="order 9?", tools=[LOOKUP]) as stream:  # type: ignore[list-item]
        texts = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(texts) == "Let me look." == final.output_text
    assert [item.type for item in final.output] == ["message", "function_call"]


async def test_an_answer_cut_at_max_output_tokens_is_an_incomplete_response(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="This answer is cut", finish_reason="length"))
    stream = await api.responses.create(model="assistant", input="long", max_output_tokens=4, stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"
    done = events[-1].response
    assert done.status == "incomplete" and done.incomplete_details is not None
    assert done.incomplete_details.reason == "max_output_tokens" and done.output_text == "This answer is cut"
    mock.enqueue(Script(text="Cut here too", finish_reason="length"))
    completion = await api.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "x"}],
                                                   max_tokens=3)
    assert completion.choices[0].finish_reason == "length"


async def test_server_tools_stay_on_the_platform_and_a_continuation_keeps_their_results(
    mock: OpenAIMock, api: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="Checking.", tool_calls=[ToolCall(name="get_weather", arguments={"city": "Rome"})]))
    mock.enqueue(Script(text="Sunny in Rome."))
    first = await api.responses.create(model="assistant", input="weather in Rome?")
    assert [item.type for item in first.output] == ["message", "message"]  # no function_call: the platform ran it
    assert first.output_text == "Checking.Sunny in Rome."
    mock.enqueue(Script(text="You asked about Rome."))
    await api.responses.create(model="assistant", input="what did I ask?", previous_response_id=first.id)
    sent = mock.requests[2]["messages"]
    roles = [m["role"] for m in sent]
    assert roles[1:] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[2]["tool_calls"][0]["function"]["name"] == "get_weather" and sent[2]["content"] == "Checking."
    assert sent[3]["tool_call_id"] == sent[2]["tool_calls"][0]["id"] and "21" in sent[3]["content"]
    assert sent[4]["content"] == "Sunny in Rome."
