"""How the runner asks the model: the SDK's ``client.post`` (RUN_PROVIDER_RAW_POST, default) or ``create``."""

from __future__ import annotations

import pytest

from proto.errors import ErrorCode
from proto.runs import RunCompleted, RunEvent, RunFailed, TextDelta
from raaf.testing import OpenAIMock, Script
from tests.support.runs import Runs, StartRunner

PATHS = {"client.post": "true", "chat.completions.create": "false"}


def text_of(events: list[RunEvent]) -> str:
    return "".join(e.delta for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("raw_post", PATHS.values(), ids=PATHS.keys())
async def test_the_request_carries_model_messages_tools_and_streaming_options_either_way(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner, raw_post: str
) -> None:
    await start_runner(RUN_PROVIDER_RAW_POST=raw_post)
    mock.enqueue(Script(text="It streams."))
    events = await runs.run("hello there")
    assert text_of(events) == "It streams." and isinstance(events[-1], RunCompleted)
    assert events[-1].usage.total_tokens > 0, "usage was asked for and read"
    (request,) = mock.requests
    assert request["model"] == "gpt-4o-mini" and request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert request["messages"][-1] == {"role": "user", "content": "hello there"}
    assert {t["function"]["name"] for t in request["tools"]} >= {"get_weather", "transfer_to_billing"}


@pytest.mark.parametrize("raw_post", PATHS.values(), ids=PATHS.keys())
async def test_status_errors_are_retried_or_not_by_status_either_way(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner, raw_post: str
) -> None:
    await start_runner(RUN_PROVIDER_RAW_POST=raw_post)
    mock.enqueue(Script(http_status=429, retry_after=0))
    mock.enqueue(Script(text="after a retry"))
    events = await runs.run("hi", retry_count=2)
    assert text_of(events) == "after a retry" and len(mock.requests) == 2
    mock.clear_requests()
    mock.add_rule(Script(http_status=401))
    events = await runs.run("hi", retry_count=5)
    assert isinstance(events[-1], RunFailed) and events[-1].code == ErrorCode.PROVIDER_ERROR
    assert "401" in events[-1].message and len(mock.requests) == 1


@pytest.mark.parametrize("raw_post", PATHS.values(), ids=PATHS.keys())
async def test_a_stream_cut_after_the_first_token_fails_the_run_either_way(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner, raw_post: str
) -> None:
    await start_runner(RUN_PROVIDER_RAW_POST=raw_post)
    mock.enqueue(Script(text="one two three four", cut_after_tokens=2))
    events = await runs.run("hi")
    assert text_of(events) == "one two"
    assert isinstance(events[-1], RunFailed) and "after the first token" in events[-1].message
