"""The OpenAI mock answers as scripted: queue, rules, default echo; from Python, over HTTP, from its CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam

from raaf.testing import Match, OpenAIMock, Script, ToolCall, main, split_fragments, split_words


@pytest.fixture
async def client(mock: OpenAIMock) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=mock.url, api_key="test", max_retries=0) as api:
        yield api


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


async def answer(
    client: openai.AsyncOpenAI, messages: list[ChatCompletionMessageParam], model: str = "m"
) -> str:
    stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
    return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])


def control_url(mock: OpenAIMock, path: str) -> str:
    return mock.url.removesuffix("/v1") + path


async def test_a_tool_result_rule_scripts_a_two_turn_tool_conversation(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.add_rule(
        match=Match(user_contains="weather", has_tool_results=False),
        script=Script(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Oslo"})]),
    )
    mock.add_rule(match=Match(has_tool_results=True), script=Script(text="It is 3 degrees in Oslo."))
    messages = user("What is the weather in Oslo?")
    first = await client.chat.completions.create(model="m", messages=messages)
    [call] = first.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Oslo"}')
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "3C"},
    ]
    assert await answer(client, messages) == "It is 3 degrees in Oslo."
    assert [len(request["messages"]) for request in mock.requests] == [1, 3]


async def test_rules_match_on_the_model_and_the_first_match_wins(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.add_rule(match=Match(model="gpt-4o"), script=Script(text="big model"))
    mock.add_rule(match=Match(model="gpt-4o"), script=Script(text="never reached"))
    mock.add_rule(script=Script(text="any other model"))
    assert await answer(client, user("x"), model="gpt-4o") == "big model"
    assert await answer(client, user("x"), model="gpt-4o-mini") == "any other model"


async def test_a_one_shot_rule_is_used_once_then_falls_through(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.add_rule(match=Match(user_contains="ping"), script=Script(text="pong"), once=True)
    assert await answer(client, user("ping")) == "pong"
    assert await answer(client, user("ping")) == "You said: ping"


async def test_queued_scripts_answer_the_next_requests_in_order_before_rules(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    mock.add_rule(script=Script(text="rule"))
    mock.enqueue(Script(text="first"))
    mock.enqueue(Script(text="second"))
    assert [await answer(client, user("x")) for _ in range(3)] == ["first", "second", "rule"]


async def test_without_rules_the_mock_echoes_the_last_user_message(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "latest words"}]},
    ]
    assert await answer(client, messages) == "You said: latest words"


async def test_an_inline_tool_command_makes_the_default_model_call_the_tool(
    mock: OpenAIMock, client: openai.AsyncOpenAI
) -> None:
    messages = user('Look it up [[tool:search {"q": "nats"}]]')
    completion = await client.chat.completions.create(model="m", messages=messages)
    [call] = completion.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("search", '{"q": "nats"}')
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": call.id, "type": "function", "function": {"name": "search", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "3 results"},
    ]
    assert await answer(client, messages) == "Tool result: 3 results"


async def test_rules_posted_over_http_script_the_next_requests(
    mock: OpenAIMock, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    rule = {
        "match": {"user_contains": "weather"},
        "script": {"text": "Sunny.", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]},
        "once": True,
    }
    async with http.post(control_url(mock, "/_mock/rules"), json=rule) as reply:
        assert reply.status == 201
        assert await reply.json() == {"rules": 1}
    completion = await client.chat.completions.create(model="m", messages=user("weather?"))
    message = completion.choices[0].message
    assert message.content == "Sunny."
    [call] = message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Rome"}')
    assert await answer(client, user("weather?")) == "You said: weather?"


async def test_deleting_rules_over_http_restores_the_default_answer(
    mock: OpenAIMock, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    async with http.post(control_url(mock, "/_mock/rules"), json={"script": {"text": "scripted"}}) as reply:
        assert reply.status == 201
    assert await answer(client, user("hello")) == "scripted"
    async with http.delete(control_url(mock, "/_mock/rules")) as reply:
        assert reply.status == 200
    assert await answer(client, user("hello")) == "You said: hello"


async def test_scripts_queued_over_http_answer_in_order(
    mock: OpenAIMock, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    for text in ("one", "two"):
        async with http.post(control_url(mock, "/_mock/queue"), json={"text": text}) as reply:
            assert reply.status == 201
    assert [await answer(client, user("x")) for _ in range(2)] == ["one", "two"]


async def test_an_invalid_rule_over_http_is_rejected_with_a_400(
    mock: OpenAIMock, http: aiohttp.ClientSession
) -> None:
    invalid = {"script": {"text": "x", "error_after_tokens": 1, "cut_after_tokens": 1}}
    async with http.post(control_url(mock, "/_mock/rules"), json=invalid) as reply:
        assert reply.status == 400
        assert "exclude each other" in (await reply.json())["error"]["message"]
    async with http.post(control_url(mock, "/_mock/rules"), json={"match": {}}) as reply:
        assert reply.status == 400


async def test_requests_and_stats_are_served_over_http(
    mock: OpenAIMock, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await answer(client, user("first"))
    await client.chat.completions.create(model="other", messages=user("second"))
    async with http.get(control_url(mock, "/_mock/requests")) as reply:
        bodies: list[dict[str, Any]] = await reply.json()
    assert [(body["model"], body["messages"][0]["content"]) for body in bodies] == [
        ("m", "first"),
        ("other", "second"),
    ]
    assert bodies[0]["stream"] is True
    assert bodies == mock.requests
    async with http.get(control_url(mock, "/_mock/stats")) as reply:
        stats = await reply.json()
    assert stats == msgspec.to_builtins(mock.stats)
    assert (stats["requests"], stats["streams_started"], stats["streams_completed"]) == (2, 1, 1)
    async with http.delete(control_url(mock, "/_mock/requests")) as reply:
        assert reply.status == 200
    assert mock.requests == []


def test_scripts_reject_contradictory_settings() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        Script(text="x", error_after_tokens=1, cut_after_tokens=2)
    with pytest.raises(ValueError, match="text or tokens"):
        Script(text="x", tokens=["x"])
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Script(http_status=200)
    with pytest.raises(ValueError, match="fragments"):
        ToolCall(name="f", fragments=0)


@given(st.text())
def test_word_tokens_concatenate_back_to_the_text(text: str) -> None:
    tokens = split_words(text)
    assert "".join(tokens) == text
    assert all(tokens)


@given(st.text(), st.integers(min_value=1, max_value=50))
def test_argument_fragments_concatenate_back_and_respect_the_count(text: str, parts: int) -> None:
    fragments = split_fragments(text, parts)
    assert "".join(fragments) == text
    assert all(fragments)
    assert len(fragments) == min(parts, len(text))


def test_cli_help_describes_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--host", "--port", "--token-delay", "--no-record-requests"):
        assert option in usage


async def test_cli_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raaf.testing.openai_mock",
        "--port",
        "0",
        "--token-delay",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        url = banner.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        async with openai.AsyncOpenAI(base_url=url, api_key="test", max_retries=0) as api:
            assert await answer(api, user("from a subprocess")) == "You said: from a subprocess"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
