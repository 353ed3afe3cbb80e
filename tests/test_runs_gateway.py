"""Runs through the gateway: REST, SSE with Last-Event-ID, cancel, and the official openai client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from raaf.testing import OpenAIMock, Script, ToolCall
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer, free_port
from shared.service.app import App
from tests.support.env import service_env
from tests.support.processes import ServiceProcess
from tests.support.runs import runner_env
from tests.support.sse import sse_events

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture
async def runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp
                 ) -> AgentRunnerApp:
    app = AgentRunnerApp(AgentRunnerSettings.from_env(
        runner_env(nats_server.url, mock.url, prefix, tmp_path, RUN_MAX_INPUT_BYTES="4000")))
    await start_app(app)
    return app


@pytest.fixture
async def gateway(nats_server: NatsServer, prefix: str, runner: AgentRunnerApp, start_app: StartApp) -> str:
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5",
                      GATEWAY_RUN_MAX_BODY_BYTES="20000")
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    return app.http_url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def post_run(http: aiohttp.ClientSession, gateway: str, **body: Any) -> dict[str, Any]:
    async with http.post(f"{gateway}/v1/runs", json={"agent": "assistant", "input": "hi", **body}) as resp:
        assert resp.status == 202, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


async def read_events(http: aiohttp.ClientSession, url: str, *, last_event_id: str | None = None,
                      stop_after: int | None = None) -> list[Any]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    got = []
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        async for event in sse_events(resp):
            got.append(event)
            if stop_after is not None and len(got) == stop_after:
                break
    return got


def text_of(events: list[Any]) -> str:
    return "".join(e.json()["delta"] for e in events if e.event == "run_text_delta")


async def test_a_run_started_over_rest_streams_over_sse_in_order_and_text_equals_the_mocks(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    text = "Tokens arrive in order over server-sent events, every one of them."
    mock.enqueue(Script(text=text, token_delay=0.005))
    started = await post_run(http, gateway, input="stream it")
    events = await read_events(http, f"{gateway}{started['events_url']}")
    assert [int(e.id) for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "run_started" and events[-1].event == "run_completed"
    assert all(e.json()["type"] == e.event for e in events)
    assert text_of(events) == text
    async with http.get(f"{gateway}{started['status_url']}") as resp:
        status = await resp.json()
    assert status["status"] == "completed" and status["output"] == text and status["last_seq"] == len(events)


async def test_sse_resumes_after_last_event_id_with_nothing_lost_or_repeated(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text="one two three four five six seven eight nine ten", token_delay=0.02))
    started = await post_run(http, gateway)
    url = f"{gateway}{started['events_url']}"
    first = await read_events(http, url, stop_after=4)
    rest = await read_events(http, url, last_event_id=first[-1].id)
    everything = await read_events(http, url)
    assert [e.data for e in first + rest] == [e.data for e in everything]
    via_query = await read_events(http, f"{url}?after=7")
    assert [e.data for e in via_query] == [e.data for e in everything[7:]]


async def test_post_runs_can_answer_with_the_event_stream_itself(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text="streamed right away"))
    async with http.post(f"{gateway}/v1/runs", json={"agent": "assistant", "input": "x", "stream": True}) as resp:
        assert resp.status == 200
        events = [e async for e in sse_events(resp)]
    assert text_of(events) == "streamed right away" and events[-1].event == "run_completed"


async def test_tool_calls_and_handoffs_reach_the_sse_client(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(tool_calls=[ToolCall(name="add", arguments={"a": 40, "b": 2})]))
    mock.enqueue(Script(tool_calls=[ToolCall(name="transfer_to_billing")]))
    mock.enqueue(Script(text="billing says 42"))
    started = await post_run(http, gateway)
    events = await read_events(http, f"{gateway}{started['events_url']}")
    kinds = [e.event for e in events]
    assert kinds.index("run_tool_call_started") < kinds.index("run_tool_call_finished") < kinds.index(
        "run_tool_output") < kinds.index("run_handoff") < kinds.index("run_agent_changed")
    assert next(e.json() for e in events if e.event == "run_tool_output")["output"] == "42"
    assert events[-1].json()["agent"] == "billing" and events[-1].json()["output"] == "billing says 42"


@pytest.mark.parametrize("method, path, body, status, code", [
    ("post", "/v1/runs", {"agent": "nobody", "input": "hi"}, 404, "not_found"),
    ("post", "/v1/runs", {"agent": "assistant", "input": "x" * 6000}, 413, "too_large"),
    ("post", "/v1/runs", {"agent": "assistant", "input": "x" * 30000}, 413, "too_large"),
    ("post", "/v1/runs", {"agent": "assistant"}, 400, "bad_request"),
    ("post", "/v1/runs", {"agent": "assistant", "input": "x", "run_id": "a.b"}, 400, "bad_request"),
    ("post", "/v1/runs", {"agent": "assistant", "input": "x", "max_turns": 0}, 400, "bad_request"),
    ("get", "/v1/runs/nosuchrun/events", None, 404, "not_found"),
    ("get", "/v1/runs/nosuchrun", None, 404, "not_found"),
    ("post", "/v1/runs/nosuchrun/cancel", None, 404, "not_found"),
], ids=["unknown-agent", "over-runner-limit", "over-gateway-limit", "missing-input", "bad-run-id", "bad-max-turns",
        "unknown-run-events", "unknown-run", "cancel-unknown"])
async def test_bad_requests_get_typed_errors_with_matching_http_status(
    gateway: str, http: aiohttp.ClientSession, method: str, path: str, body: Any, status: int, code: str
) -> None:
    async with http.request(method, f"{gateway}{path}", json=body) as resp:
        assert resp.status == status, await resp.text()
        error = await resp.json()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    if code == "too_large":  # each limit names its variable: the gateway's body cap, or the runner's input cap
        variable = "GATEWAY_RUN_MAX_BODY_BYTES" if len(body["input"]) > 20000 else "RUN_MAX_INPUT_BYTES"
        assert variable in error["message"]


async def test_malformed_json_and_a_bad_last_event_id_are_bad_requests(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{gateway}/v1/runs", data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == "bad_request"
    started = await post_run(http, gateway)
    async with http.get(f"{gateway}{started['events_url']}", headers={"Last-Event-ID": "abc"}) as resp:
        assert resp.status == 400


async def test_cancel_over_http_closes_the_upstream_stream_and_ends_the_run_cancelled(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text="word " * 300, token_delay=0.02))
    started = await post_run(http, gateway)
    seen = []
    async with http.get(f"{gateway}{started['events_url']}") as resp:
        async for event in sse_events(resp):
            seen.append(event)
            if len(seen) == 4:
                async with http.post(f"{gateway}/v1/runs/{started['run_id']}/cancel?reason=stop") as cancel:
                    assert cancel.status == 202
    assert seen[-1].event == "run_cancelled" and seen[-1].json()["reason"] == "stop"
    await mock.wait_for_disconnect(timeout=5)


async def test_the_official_openai_client_streams_from_chat_completions(
    mock: OpenAIMock, gateway: str
) -> None:
    text = "Hello from an agent, through the platform."
    mock.enqueue(Script(text=text, token_delay=0.002))
    mock.enqueue(Script(tool_calls=[ToolCall(name="get_weather", arguments={"city": "Rome"})]))
    mock.enqueue(Script(text="Sunny in Rome."))
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="assistant", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            stream=True, stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert "".join(deltas) == text and len(deltas) > 3
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
        assert mock.requests[0]["messages"][1] == {"role": "system", "content": "be brief"}
        completion = await client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "weather in Rome?"}])
        assert completion.choices[0].message.content == "Sunny in Rome."
        assert completion.usage is not None and completion.usage.total_tokens > 0
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="assistant", messages=[{"role": "assistant", "content": "x"}])
        models = await client.models.list()
        assert {m.id for m in models.data} == {"assistant", "billing"}


async def test_a_failure_mid_stream_reaches_the_openai_client_as_an_error(
    mock: OpenAIMock, gateway: str
) -> None:
    mock.enqueue(Script(text="one two three four", error_after_tokens=2))
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "x"}],
                                                      stream=True)
        got = []
        with pytest.raises(openai.APIError, match="after the first token"):
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
        assert got == ["one", " two"]


async def test_a_chat_completions_client_that_disconnects_cancels_its_run(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text="word " * 300, token_delay=0.02))
    body = {"model": "assistant", "stream": True, "messages": [{"role": "user", "content": "long"}]}
    async with http.post(f"{gateway}/v1/chat/completions", json=body) as resp:
        seen = 0
        async for line in resp.content:
            seen += line.startswith(b"data: ")
            if seen == 5:
                break
    await mock.wait_for_disconnect(timeout=5)


async def test_a_killed_gateway_loses_no_token_when_the_client_resumes_elsewhere(
    mock: OpenAIMock, runner: AgentRunnerApp, nats_server: NatsServer, prefix: str, http: aiohttp.ClientSession,
    service_process: Callable[..., ServiceProcess]
) -> None:
    text = " ".join(f"token{i}" for i in range(120))
    mock.enqueue(Script(text=text, token_delay=0.01))
    gateways = []
    for _ in range(2):
        port = free_port()
        env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, WEBSOCKET_PORT=str(port))
        process = service_process("services.gateway", env)
        await process.wait_ready(f"http://127.0.0.1:{port}")
        gateways.append((process, f"http://127.0.0.1:{port}"))
    (first_process, first), (_, second) = gateways
    started = await post_run(http, first)
    before = []
    async with http.get(f"{first}{started['events_url']}") as resp:
        async for event in sse_events(resp):
            before.append(event)
            if len(before) == 30:
                first_process.kill()
                break
    with pytest.raises(aiohttp.ClientError):
        async with http.get(f"{first}/healthz") as resp:
            pass
    after = await read_events(http, f"{second}{started['events_url']}", last_event_id=before[-1].id)
    transcript = b"".join(e.data for e in before + after)
    replay = await read_events(http, f"{second}{started['events_url']}")
    assert transcript == b"".join(e.data for e in replay), "byte-identical"
    assert [int(e.id) for e in before + after] == list(range(1, len(replay) + 1))
    assert text_of(before + after) == text
    assert json.loads(after[-1].data)["type"] == "run_completed"
    await asyncio.sleep(0)
