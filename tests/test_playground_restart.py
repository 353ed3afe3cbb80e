"""The playground in headless Chromium when the run's agent-runner is killed mid-answer: the answer drops the
interrupted step's partial text, shows a "restarted" marker, and ends as the uninterrupted answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from proto.runs import RunCompleted, run_event_decoder
from raaf.testing import OpenAIMock
from services.gateway import GatewayApp
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.gateway import make_gateway
from tests.support.processes import ServiceProcess
from tests.support.restart import calls, kill_mid_answer, restart_env, scripted_model, two_runners
from tests.support.runs import Runs
from tests.test_chat_page import browser as browser  # the Chromium fixture of the chat page's test

TIMEOUT = 30_000


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.05, fallback=scripted_model) as server:
        yield server


@pytest.fixture
def runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
           service_process: Callable[..., ServiceProcess]) -> Callable[..., ServiceProcess]:
    def start(instance: str) -> ServiceProcess:
        return service_process("services.agent_runner",
                               restart_env(nats_server.url, mock.url, prefix, tmp_path, instance))
    return start


@pytest.fixture
async def playground(nats_server: NatsServer, prefix: str, start_app: Callable[[App], Awaitable[App]]) -> str:
    app = await start_app(make_gateway(nats_server.url, RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5"))
    assert isinstance(app, GatewayApp)
    return f"{app.http_url}/"


async def text_of(answer: Any) -> str:
    return "".join(await answer.locator(".segment .text").all_text_contents())


async def test_the_playground_drops_the_restarted_steps_partial_text_and_marks_the_restart(
    browser: Any, playground: str, runs: Runs, runner: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner)
    page = await browser.new_page()
    await page.goto(playground)
    await page.wait_for_selector("#agent option[value=clerk]", state="attached", timeout=TIMEOUT)
    await page.wait_for_selector("#send:not([disabled])", timeout=TIMEOUT)
    await page.select_option("#agent", "clerk")
    killer = asyncio.create_task(kill_mid_answer(runs, runners))
    await page.fill("#text", "note:a")
    await page.press("#text", "Enter")
    answer = page.locator(".answer").first
    await answer.wait_for(timeout=TIMEOUT)
    run_id = await killer
    assert await answer.get_attribute("data-run") == run_id
    await page.wait_for_selector(f".answer[data-run='{run_id}'][data-status='completed']", timeout=TIMEOUT)

    raw = [json.loads(line.split(" ", 2)[2]) for line in await page.locator("#events li").all_inner_texts()]
    events = [run_event_decoder.decode(json.dumps(e).encode()) for e in raw if e["run_id"] == run_id]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    final = events[-1]
    assert isinstance(final, RunCompleted)
    streamed = "".join(e["delta"] for e in raw if e["type"] == "run_text_delta")
    assert streamed.count("w0 ") == 2, "the page was sent the interrupted step's start and its repetition"
    expected = "Step 1. " + final.output
    assert await text_of(answer) == expected, "the partial text dropped, each word once"
    marker = answer.locator(".note.restarted")
    assert await marker.count() == 1 and (await marker.inner_text()).startswith("restarted on ")
    assert calls(tmp_path) == ["note a"]

    await page.reload()  # drawn again from the stored events: the same answer, the same marker
    again = page.locator(f".answer[data-run='{run_id}']")
    await again.wait_for(timeout=TIMEOUT)
    assert await text_of(again) == expected and await again.locator(".note.restarted").count() == 1
