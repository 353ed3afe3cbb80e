"""What clients see of a restart: every dialect's stream continues its text (no word twice), SSE and the
WebSocket carry ``run_step_restarted``, and the real clients assemble the uninterrupted answer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.responses import FunctionToolParam

from proto.runs import (
    RunCompleted,
    RunEvent,
    RunStepRestarted,
    TextDelta,
    ToolCallDelta,
    ToolOutput,
    run_event_decoder,
)
from raaf.testing import OpenAIMock
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.runs.continuation import transcript
from shared.runs.registry import RunRegistry
from shared.service.app import App
from tests.support.dialects_fixtures import NodeClient
from tests.support.env import service_env
from tests.support.processes import ServiceProcess
from tests.support.restart import calls, kill_mid_answer, restart_env, scripted_model, two_runners
from tests.support.runs import Runs
from tests.support.sse import sse_events


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.05, fallback=scripted_model) as server:
        yield server


@pytest.fixture
def runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
           service_process: Callable[..., ServiceProcess]) -> Callable[..., ServiceProcess]:
    def start(instance: str, **extra: str) -> ServiceProcess:
        return service_process("services.agent_runner",
                               restart_env(nats_server.url, mock.url, prefix, tmp_path, instance, **extra))
    return start


@pytest.fixture
async def gateway(nats_server: NatsServer, prefix: str, start_app: Callable[[App], Awaitable[App]]) -> str:
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5")
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    assert isinstance(app, GatewayApp)
    return app.http_url


def text_of(events: list[RunEvent]) -> str:
    return "".join(getattr(e, "delta", "") for e in events if type(e).__name__ == "TextDelta")


async def test_a_chat_completions_stream_continues_across_a_restart_and_sse_carries_it(
    runs: Runs, runner: Callable[..., ServiceProcess], gateway: str, tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner)
    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()
    streamed: list[str] = []
    run_id = ""
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="clerk", messages=[{"role": "user", "content": "note:a lookup:b"}], stream=True)
        async for chunk in stream:
            run_id = chunk.id.removeprefix("chatcmpl-")
            if chunk.choices and chunk.choices[0].delta.content:
                streamed.append(chunk.choices[0].delta.content)
                if " w4" in "".join(streamed) and len(runners) == 2:
                    owner = await registry.owner(run_id)
                    assert owner is not None
                    runners.pop(owner).kill()

    assert len(runners) == 1, "the run's runner was killed mid-answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http, \
            http.get(f"{gateway}/v1/runs/{run_id}/events") as resp:
        sse = [e async for e in sse_events(resp)]
    events = [run_event_decoder.decode(e.data) for e in sse]
    assert [e.event for e in sse].count("run_step_restarted") == 1
    final = events[-1]
    assert isinstance(final, RunCompleted)
    assert "".join(streamed) == text_of(transcript(events)), "each word once, in order, as a continuation"
    assert "".join(streamed).endswith(final.output) and "".join(streamed).count("w0 ") == 1
    assert calls(tmp_path) == ["note a", "lookup b"]


async def stored_run(gateway: str, run_id: str) -> list[RunEvent]:
    """The run's events as SSE delivers them, after it ended: one restart, gap-free seqs, completed."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http, \
            http.get(f"{gateway}/v1/runs/{run_id}/events") as resp:
        events = [run_event_decoder.decode(e.data) async for e in sse_events(resp)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(isinstance(e, RunStepRestarted) for e in events) == 1
    assert isinstance(events[-1], RunCompleted)
    return events


def uninterrupted(events: list[RunEvent]) -> str:
    """The run's whole text as an uninterrupted run says it (the scripted model repeats itself): each turn's
    preamble, then the answer."""
    final = events[-1]
    assert isinstance(final, RunCompleted)
    expected = text_of(transcript(events))
    assert expected == "Step 1. " + final.output and expected.count("w0 ") == 1
    return expected


async def test_a_responses_stream_read_by_the_openai_client_continues_across_a_restart(
    runs: Runs, runner: Callable[..., ServiceProcess], gateway: str, tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner)
    killer = asyncio.create_task(kill_mid_answer(runs, runners))
    deltas: list[str] = []
    live: list[tuple[int, str]] = []
    final = None
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.responses.create(model="clerk", input="note:a", stream=True)
        async for event in stream:
            live.append((event.sequence_number, event.type))
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
        run_id = await killer
        # Resuming from before the kill renders the same events again: the numbering holds across the restart.
        middle = live[len(live) // 3][0]
        resumed = await client.responses.retrieve(f"resp_{run_id}", stream=True, starting_after=middle)
        again = [(event.sequence_number, event.type) async for event in resumed]
    assert again == [e for e in live if e[0] > middle]
    expected = uninterrupted(await stored_run(gateway, run_id))
    assert "".join(deltas) == expected, "each word once, in order"
    assert final is not None and final.output_text == expected and final.status == "completed"
    assert {getattr(item, "status", None) for item in final.output} == {"completed"}
    assert calls(tmp_path) == ["note a"]


async def test_a_responses_client_call_cut_off_by_a_restart_ends_incomplete_and_comes_again_as_a_new_item(
    runs: Runs, runner: Callable[..., ServiceProcess], gateway: str
) -> None:
    runners = await two_runners(runs, runner)
    killer = asyncio.create_task(kill_mid_answer(runs, runners, until=lambda e, _: isinstance(e, ToolCallDelta)))
    locate: FunctionToolParam = {"type": "function", "name": "locate", "strict": False, "parameters": {
        "type": "object", "properties": {"place": {"type": "string"}}}}
    done: list[tuple[str, str]] = []
    final = None
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.responses.create(model="clerk", input="locate:oslo", tools=[locate], stream=True)
        async for event in stream:
            if event.type == "response.output_item.done" and event.item.type == "function_call":
                done.append((event.item.id or "", event.item.status or ""))
            elif event.type == "response.completed":
                final = event.response
    run_id = await killer
    events = await stored_run(gateway, run_id)
    final_event = events[-1]
    assert isinstance(final_event, RunCompleted) and [c.name for c in final_event.client_calls] == ["locate"]
    assert done == [("fc_call_1_locate", "incomplete"), ("fc_call_1_locate_1", "completed")]
    assert final is not None and final.output_text == "Step 1. ", "the preamble once"
    calls_out = [item for item in final.output if item.type == "function_call"]
    assert [(c.id, c.status, c.arguments) for c in calls_out] == [
        ("fc_call_1_locate_1", "completed", '{"place":"oslo"}')], "the cut-off call is not the client's to run"


async def test_the_ai_sdk_chat_transport_assembles_the_uninterrupted_message_across_a_restart(
    runs: Runs, runner: Callable[..., ServiceProcess], gateway: str, tmp_path: Path, node_client: NodeClient
) -> None:
    runners = await two_runners(runs, runner)
    killer = asyncio.create_task(kill_mid_answer(runs, runners))
    user = {"id": uuid.uuid4().hex[:12], "role": "user", "parts": [{"type": "text", "text": "note:a"}]}
    out = await node_client("ai_sdk.mjs", "chat", {"api": f"{gateway}/v1/ui/clerk/chat",
                                                   "chatId": uuid.uuid4().hex[:16], "messages": [user]})
    run_id = await killer
    expected = uninterrupted(await stored_run(gateway, run_id))
    texts = [part["text"] for part in out["message"]["parts"] if part["type"] == "text"]
    assert "".join(texts) == expected, "each word once, in order"
    assert [c["type"] for c in out["chunks"]][-1] == "finish"
    assert calls(tmp_path) == ["note a"]


async def test_the_ag_ui_http_agent_assembles_the_uninterrupted_messages_across_a_restart(
    runs: Runs, runner: Callable[..., ServiceProcess], gateway: str, tmp_path: Path, node_client: NodeClient
) -> None:
    runners = await two_runners(runs, runner)
    killer = asyncio.create_task(kill_mid_answer(runs, runners))
    user = {"id": uuid.uuid4().hex, "role": "user", "content": "note:a"}
    out = await node_client("ag_ui.mjs", "run", {"url": f"{gateway}/v1/ag-ui/clerk", "threadId": "t1",
                                                 "messages": [user]})
    run_id = await killer
    expected = uninterrupted(await stored_run(gateway, run_id))
    said = [m.get("content") or "" for m in out["newMessages"] if m["role"] == "assistant"]
    assert "".join(said) == expected, "each word once, in order"
    [restarted] = [e for e in out["raw"] if e["type"] == "CUSTOM"]
    assert restarted["name"] == "raaf.step_restarted" and restarted["value"]["step"] == "model_turn"
    assert out["events"][-1] == "RUN_FINISHED"
    assert calls(tmp_path) == ["note a"]


def transcript_of(frames: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What a client shows of a run's events: the interrupted step dropped, then each event's type and text."""
    kept = transcript([run_event_decoder.decode(json.dumps(f).encode()) for f in frames])
    shown = []
    for event in kept:
        match event:
            case TextDelta(delta=text) | ToolOutput(output=text):
                shown.append((type(event).__name__, text))
            case RunStepRestarted():
                pass
            case RunCompleted(output=text):
                shown.append(("RunCompleted", text))
            case _:
                shown.append((type(event).__name__, ""))
    return shown


async def test_a_websocket_client_sees_the_restart_and_its_transcript_equals_the_uninterrupted_runs(
    runs: Runs, runner: Callable[..., ServiceProcess], gateway: str, tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner)
    killer = asyncio.create_task(kill_mid_answer(runs, runners))
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{gateway.replace('http', 'ws', 1)}/ws") as ws:

        async def follow(ref: str) -> list[dict[str, Any]]:
            await ws.send_json({"type": "agent_stream", "id": ref, "agent": "clerk", "input": "note:a"})
            frames: list[dict[str, Any]] = []
            async with asyncio.timeout(60):
                while not frames or frames[-1]["type"] not in ("run_completed", "run_failed", "run_cancelled"):
                    frame = await ws.receive_json()
                    if frame["type"].startswith("run_") and frame["type"] != "run_accepted":
                        frames.append(frame)
            return frames

        assert (await ws.receive_json())["type"] == "welcome"
        restarted = await follow("q1")
        run_id = await killer
        assert {f["run_id"] for f in restarted} == {run_id}
        plain = await follow("q2")  # the same conversation on the runner left, nobody killed

    assert [f["seq"] for f in restarted] == list(range(1, len(restarted) + 1)), "gap-free"
    [restart] = [f for f in restarted if f["type"] == "run_step_restarted"]
    assert restart["step"] == "model_turn" and restart["restart"] == 1 and restart["previous"] in ("a", "b")
    assert restarted[-1]["type"] == "run_completed" and restarted[-1]["agent"] == "clerk"
    assert not any(f["type"] == "run_step_restarted" for f in plain)
    assert transcript_of(restarted) == transcript_of(plain)
    assert calls(tmp_path) == ["note a", "note a"], "once per run: the restarted run did not note twice"
