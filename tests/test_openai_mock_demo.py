"""The demo model's answers (the mock with ``demo_script``): canned sentences, tool calls and handoffs when offered."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import msgspec
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from raaf.testing import OpenAIMock, Script
from raaf.testing.openai_mock import demo_script
from shared.openai_mock.wire import ChatRequest


def offered(*names: str) -> list[ChatCompletionToolParam]:
    return [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
            for name in names]


@pytest.fixture
async def demo() -> AsyncIterator[openai.AsyncOpenAI]:
    async with OpenAIMock(fallback=demo_script) as mock, \
            openai.AsyncOpenAI(base_url=mock.url, api_key="demo", max_retries=0) as api:
        yield api


async def turn(api: openai.AsyncOpenAI, messages: list[ChatCompletionMessageParam],
               tools: list[ChatCompletionToolParam] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """One streamed turn: its text deltas and its tool calls (name, complete arguments)."""
    stream = await api.chat.completions.create(model="raaf-demo", messages=messages, stream=True,
                                               tools=tools or openai.omit)
    deltas: list[str] = []
    calls: dict[int, list[str]] = {}
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, ["", ""])
                if call.function and call.function.name:
                    entry[0] = call.function.name
                if call.function and call.function.arguments:
                    entry[1] += call.function.arguments
    return deltas, [(name, arguments) for name, arguments in calls.values()]


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


async def test_a_plain_question_gets_several_sentences_streamed_word_by_word_the_same_each_time(
        demo: openai.AsyncOpenAI) -> None:
    deltas, calls = await turn(demo, user("hello there"))
    text = "".join(deltas)
    assert calls == []
    assert text.startswith("Thanks for your message: “hello there”.") and text.count(". ") >= 3
    assert len(deltas) > 40
    again, _ = await turn(demo, user("hello there"))
    assert "".join(again) == text


async def test_the_answer_points_at_the_tools_and_handoffs_the_agent_is_offered(demo: openai.AsyncOpenAI) -> None:
    bare, _ = await turn(demo, user("hi"))
    equipped, _ = await turn(demo, user("hi"), offered("get_weather", "transfer_to_billing"))
    assert "OPENAI_API_KEY" in "".join(bare)
    assert "weather in Paris" in "".join(equipped) and "billing agent" in "".join(equipped)


async def test_asking_about_the_weather_calls_the_offered_weather_tool_with_the_city(demo: openai.AsyncOpenAI
                                                                                    ) -> None:
    deltas, calls = await turn(demo, user("What's the weather in New York today?"), offered("get_weather"))
    assert "".join(deltas) == "Let me look that up with the weather tool. "
    assert calls == [("get_weather", '{"city":"New York"}')]


async def test_a_tool_the_request_does_not_offer_is_never_called(demo: openai.AsyncOpenAI) -> None:
    deltas, calls = await turn(demo, user("What's the weather in Paris?"), offered("get_time"))
    assert calls == [] and "".join(deltas).startswith("Thanks for your message")


async def test_asking_for_the_time_calls_the_clock(demo: openai.AsyncOpenAI) -> None:
    _, calls = await turn(demo, user("what time is it?"), offered("get_weather", "get_time"))
    assert calls == [("get_time", '{"timezone":"UTC"}')]


async def test_a_billing_question_hands_off_to_billing_and_billing_answers_after_the_handoff(
        demo: openai.AsyncOpenAI) -> None:
    question = user("I was charged twice on my last invoice")
    deltas, calls = await turn(demo, question, offered("transfer_to_billing"))
    assert "handing you over" in "".join(deltas)
    assert calls == [("transfer_to_billing", "{}")]
    continued: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You handle invoices and payments."}, *question,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "transfer_to_billing", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"assistant":"billing"}'},
    ]
    answer, more = await turn(demo, continued)
    assert more == [] and "".join(answer).startswith("Hi, billing here")


async def test_after_a_tool_call_the_answer_reports_the_tools_output(demo: openai.AsyncOpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        *user("weather in Oslo?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Oslo: light snow, -3 °C"},
    ]
    deltas, calls = await turn(demo, messages)
    assert calls == []
    assert "".join(deltas).startswith("The get_weather tool answered: Oslo: light snow, -3 °C.")


async def test_a_tool_command_still_forces_a_call_and_a_huge_message_is_quoted_short(demo: openai.AsyncOpenAI
                                                                                     ) -> None:
    _, calls = await turn(demo, user('[[tool:lookup {"id": 7}]]'))
    assert calls == [("lookup", '{"id": 7}')]
    deltas, _ = await turn(demo, user("word " * 5000))
    assert len("".join(deltas)) < 1500


async def test_the_plain_mock_still_echoes_without_the_demo_fallback() -> None:
    async with OpenAIMock() as mock, openai.AsyncOpenAI(base_url=mock.url, api_key="x", max_retries=0) as api:
        deltas, _ = await turn(api, user("ping"), offered("get_weather"))
    assert "".join(deltas) == "You said: ping"


def test_queued_scripts_and_rules_still_come_before_the_demo() -> None:
    mock = OpenAIMock(fallback=demo_script)
    mock.enqueue(Script(text="queued"))
    request = msgspec.convert({"model": "raaf-demo", "messages": [{"role": "user", "content": "hello"}]},
                              ChatRequest)
    assert mock.choose_script(request).text == "queued"
    assert mock.choose_script(request).text.startswith("Thanks for your message")


async def test_the_command_line_answers_like_the_demo_with_demo() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "raaf.testing.openai_mock", "--port", "0", "--token-delay", "0", "--demo",
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        url = banner.rsplit(" ", 1)[-1].strip()
        async with openai.AsyncOpenAI(base_url=url, api_key="demo", max_retries=0) as api:
            deltas, _ = await turn(api, user("from the command line"))
        assert "".join(deltas).startswith("Thanks for your message: “from the command line”.")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
