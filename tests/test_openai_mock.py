"""The OpenAI mock speaks the chat-completions wire format the real `openai` client expects."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from raaf.testing import OpenAIMock, Script, ToolCall

USER_MESSAGE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(mock: OpenAIMock) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=mock.url, api_key="test", max_retries=0) as api:
        yield api


async def stream_chunks(client: openai.AsyncOpenAI, model: str = "gpt-4o-mini") -> list[ChatCompletionChunk]:
    stream = await client.chat.completions.create(
        model=model, messages=USER_MESSAGE, stream=True, stream_options={"include_usage": True}
    )
    return [chunk async for chunk in stream]


def content_deltas(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [
        chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content
    ]


def tool_call_deltas(chunks: list[ChatCompletionChunk]) -> list[Any]:
    return [call for chunk in chunks if chunk.choices for call in (chunk.choices[0].delta.tool_calls or [])]


def finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [
        chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason
    ]


async def test_streamed_text_deltas_concatenate_to_the_scripted_text(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="Hello there, streaming world.\n"))
    chunks = await stream_chunks(client)
    assert content_deltas(chunks) == ["Hello", " there,", " streaming", " world.", "\n"]
    assert "".join(content_deltas(chunks)) == "Hello there, streaming world.\n"
    assert finish_reasons(chunks) == ["stop"]


async def test_explicit_tokens_are_streamed_one_per_chunk(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(tokens=["Grü", "ße", " 👋"]))
    assert content_deltas(await stream_chunks(client)) == ["Grü", "ße", " 👋"]


async def test_first_chunk_announces_the_assistant_role_with_empty_content(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="hello"))
    first = (await stream_chunks(client))[0]
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert first.choices[0].finish_reason is None


async def test_every_chunk_carries_the_same_id_created_model_and_fingerprint(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="one two three", tool_calls=[ToolCall(name="f")]))
    chunks = await stream_chunks(client, model="gpt-4o")
    assert len(chunks) > 5
    identity = {(c.id, c.created, c.model, c.object, c.system_fingerprint) for c in chunks}
    assert len(identity) == 1
    response_id, _, model, kind, fingerprint = identity.pop()
    assert response_id.startswith("chatcmpl-")
    assert (model, kind) == ("gpt-4o", "chat.completion.chunk")
    assert fingerprint


async def test_usage_arrives_in_a_final_chunk_with_no_choices(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="a b c", prompt_tokens=11))
    chunks = await stream_chunks(client)
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (11, 3, 14)
    assert all(chunk.usage is None for chunk in body)


async def raw_sse_events(mock: OpenAIMock, body: dict[str, Any]) -> list[str]:
    """The `data:` payloads of a streamed response, read without the openai client."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{mock.url}/chat/completions", json=body) as reply,
    ):
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        text = await reply.text()
    events = [event for event in text.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events)
    return [event.removeprefix("data: ") for event in events]


async def test_usage_is_null_on_every_chunk_but_the_last_when_requested(mock: OpenAIMock) -> None:
    body = {"model": "m", "messages": USER_MESSAGE, "stream": True, "stream_options": {"include_usage": True}}
    *chunks, usage_chunk, done = await raw_sse_events(mock, body)
    assert done == "[DONE]"
    assert all(json.loads(chunk)["usage"] is None for chunk in chunks)
    assert json.loads(usage_chunk)["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


async def test_usage_is_left_out_unless_the_client_asks_for_it(mock: OpenAIMock) -> None:
    body = {"model": "m", "messages": USER_MESSAGE, "stream": True}
    *chunks, done = await raw_sse_events(mock, body)
    assert done == "[DONE]"
    assert all("usage" not in json.loads(chunk) for chunk in chunks)
    assert json.loads(chunks[-1])["choices"][0]["finish_reason"] == "stop"


async def test_tool_call_arguments_reassemble_from_fragments(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    arguments = {"city": "Paris", "unit": "celsius"}
    mock.enqueue(
        Script(tool_calls=[ToolCall(name="get_weather", arguments=arguments, id="call_w1", fragments=4)])
    )
    chunks = await stream_chunks(client)
    opening, *pieces = tool_call_deltas(chunks)
    assert (opening.index, opening.id, opening.type) == (0, "call_w1", "function")
    assert opening.function.name == "get_weather"
    assert opening.function.arguments == ""
    assert len(pieces) == 4
    for piece in pieces:
        assert piece.model_fields_set == {"index", "function"}
        assert piece.function.model_fields_set == {"arguments"}
        assert piece.index == 0
    assert "".join(piece.function.arguments for piece in pieces) == '{"city":"Paris","unit":"celsius"}'
    assert finish_reasons(chunks) == ["tool_calls"]


async def test_parallel_tool_calls_stream_under_their_own_indices(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    calls = [
        ToolCall(name="lookup", arguments={"q": "a"}, fragments=2),
        ToolCall(name="fetch", arguments="{}"),
    ]
    mock.enqueue(Script(tool_calls=calls))
    deltas = tool_call_deltas(await stream_chunks(client))
    assert [delta.index for delta in deltas] == [0, 0, 0, 1, 1, 1]
    assembled: dict[int, dict[str, str]] = {}
    for delta in deltas:
        call = assembled.setdefault(delta.index, {"name": "", "arguments": ""})
        call["name"] += delta.function.name or ""
        call["arguments"] += delta.function.arguments or ""
    assert assembled == {
        0: {"name": "lookup", "arguments": '{"q":"a"}'},
        1: {"name": "fetch", "arguments": "{}"},
    }
    assert len({delta.id for delta in deltas if delta.id}) == 2


async def test_index_reuse_variant_starts_a_new_call_at_each_new_id(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    calls = [ToolCall(name="first", arguments={"n": 1}), ToolCall(name="second", arguments={"n": 2})]
    mock.enqueue(Script(tool_calls=calls, index_reuse=True))
    deltas = tool_call_deltas(await stream_chunks(client))
    assert {delta.index for delta in deltas} == {0}
    assembled: list[dict[str, str]] = []
    for delta in deltas:
        if delta.id:
            assembled.append({"id": delta.id, "name": delta.function.name, "arguments": ""})
        assembled[-1]["arguments"] += delta.function.arguments
    assert [(call["name"], call["arguments"]) for call in assembled] == [
        ("first", '{"n":1}'),
        ("second", '{"n":2}'),
    ]
    assert assembled[0]["id"] != assembled[1]["id"]


async def test_finish_reason_length_is_sent_when_scripted(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="cut short", finish_reason="length"))
    assert finish_reasons(await stream_chunks(client)) == ["length"]


async def test_non_streamed_completion_carries_the_text_and_usage(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="All in one go.", completion_tokens=7))
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=USER_MESSAGE)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "All in one go."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 7


async def test_non_streamed_completion_carries_tool_calls(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(tool_calls=[ToolCall(name="search", arguments={"q": "nats"}, id="call_s")]))
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=USER_MESSAGE)
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    [call] = message.tool_calls
    assert call.type == "function"
    assert (call.id, call.function.name, call.function.arguments) == ("call_s", "search", '{"q":"nats"}')
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_rate_limit_surfaces_as_rate_limit_error_with_retry_after(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(http_status=429, retry_after=3))
    with pytest.raises(openai.RateLimitError) as caught:
        await stream_chunks(client)
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limit_exceeded"


async def test_server_error_surfaces_as_internal_server_error(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(http_status=500, error_message="upstream exploded"))
    with pytest.raises(openai.InternalServerError, match="upstream exploded"):
        await stream_chunks(client)


async def test_a_retrying_client_gets_the_answer_after_a_rate_limit(mock: OpenAIMock) -> None:
    mock.enqueue(Script(http_status=429, retry_after=0.01))
    mock.enqueue(Script(text="second time lucky"))
    async with openai.AsyncOpenAI(base_url=mock.url, api_key="test", max_retries=1) as retrying:
        completion = await retrying.chat.completions.create(model="m", messages=USER_MESSAGE)
    assert completion.choices[0].message.content == "second time lucky"
    assert mock.stats.requests == 2
    assert mock.stats.failures_injected == 1


async def test_mid_stream_error_raises_api_error_from_the_iterator(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="one two three four", error_after_tokens=2, error_message="overloaded"))
    stream = await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError, match="overloaded") as caught:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    # The client turns an `{"error": ...}` data event into APIError carrying that error object as body.
    assert caught.value.body == {"message": "overloaded", "type": "server_error", "param": None, "code": None}
    assert received == ["", "one", " two"]
    assert mock.stats.streams_completed == 0


async def test_a_clean_cut_ends_the_iterator_silently_without_a_finish_reason(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="one two three four", cut_after_tokens=3))
    # What the real client does: the body just ends, so iteration stops with no error and no finish_reason.
    chunks = await stream_chunks(client)
    assert content_deltas(chunks) == ["one", " two", " three"]
    assert finish_reasons(chunks) == []
    assert all(chunk.usage is None for chunk in chunks)


async def test_a_dropped_connection_mid_stream_raises_api_connection_error(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="one two three four", cut_after_tokens=2, cut_mode="drop"))
    stream = await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "one", " two"]


async def test_closing_the_stream_early_counts_a_client_disconnect(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="tick " * 500, token_delay=0.01))
    stream = await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    await stream.close()
    await mock.wait_for_disconnect(timeout=5)
    stats = mock.stats
    assert (stats.client_disconnects, stats.streams_started, stats.streams_completed) == (1, 1, 0)


async def test_wait_for_disconnect_times_out_when_streams_complete(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    await stream_chunks(client)
    with pytest.raises(TimeoutError):
        await mock.wait_for_disconnect(timeout=0.2)
    assert mock.stats.streams_completed == 1


async def test_tokens_are_paced_by_the_token_delay(mock: OpenAIMock, client: openai.AsyncOpenAI) -> None:
    mock.enqueue(Script(text="a b c d e f g h i j k", token_delay=0.03))
    stream = await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    arrivals = [
        time.monotonic() async for chunk in stream if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(arrivals) == 11
    # Loose lower bound only: ten gaps of at least ~30 ms each.
    assert arrivals[-1] - arrivals[0] >= 0.25


async def test_the_default_token_delay_also_paces_non_streamed_answers() -> None:
    async with (
        OpenAIMock(token_delay=0.03) as mock,
        openai.AsyncOpenAI(base_url=mock.url, api_key="test", max_retries=0) as api,
    ):
        mock.enqueue(Script(text="a b c d e f g h i j"))
        started = time.monotonic()
        completion = await api.chat.completions.create(model="m", messages=USER_MESSAGE)
        # Loose lower bound only: ten tokens at ~30 ms each.
        assert time.monotonic() - started >= 0.25
    assert completion.choices[0].message.content == "a b c d e f g h i j"


async def test_failures_mid_answer_surface_from_non_streamed_requests_too(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="a b c", error_after_tokens=1, error_message="gave up"))
    with pytest.raises(openai.InternalServerError, match="gave up"):
        await client.chat.completions.create(model="m", messages=USER_MESSAGE)
    mock.enqueue(Script(text="a b c", cut_after_tokens=1))
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=USER_MESSAGE)
    assert mock.stats.failures_injected == 2


async def test_stopping_drops_in_flight_streams_without_counting_them_as_client_disconnects(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.enqueue(Script(text="slow " * 100, token_delay=0.05))
    stream = await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    await anext(stream)
    await mock.stop()
    await mock.stop()
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass
    assert mock.stats.client_disconnects == 0


async def test_a_restarted_mock_serves_on_the_same_url(mock: OpenAIMock, client: openai.AsyncOpenAI) -> None:
    url = mock.url
    await mock.stop()
    with pytest.raises(RuntimeError):
        _ = mock.url
    await mock.start()
    assert mock.url == url
    assert content_deltas(await stream_chunks(client)) == ["You", " said:", " hi"]


async def test_models_endpoint_lists_the_served_models() -> None:
    async with (
        OpenAIMock(models=["gpt-test", "tiny"]) as mock,
        openai.AsyncOpenAI(base_url=mock.url, api_key="test") as api,
    ):
        models = [model.id async for model in api.models.list()]
    assert models == ["gpt-test", "tiny"]


async def test_a_malformed_request_is_answered_with_an_openai_400(mock: OpenAIMock) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{mock.url}/chat/completions", json={"messages": "nope"}) as reply,
    ):
        assert reply.status == 400
        error = (await reply.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert "Invalid request body" in error["message"]
