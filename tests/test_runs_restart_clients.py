"""What clients see of a restart: the OpenAI stream continues its text, SSE carries ``run_step_restarted``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import openai
import pytest

from proto.runs import RunCompleted, RunEvent, run_event_decoder
from raaf.testing import OpenAIMock
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.runs.continuation import transcript
from shared.runs.registry import RunRegistry
from shared.service.app import App
from tests.support.env import service_env
from tests.support.processes import ServiceProcess
from tests.support.restart import calls, restart_env, scripted_model, two_runners
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
