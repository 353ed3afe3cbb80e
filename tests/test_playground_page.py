"""The playground at ``/`` in headless Chromium, against a real gateway and a demo-model agent-runner: streamed
answers, tool calls, handoffs, Stop, and a reload mid-answer that resumes without losing or doubling text."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.env import service_env
from tests.support.gateway import make_gateway
from tests.test_chat_page import browser as browser  # the Chromium fixture of the chat page's test

StartApp = Callable[[App], Awaitable[App]]
Stack = Callable[..., Awaitable[str]]
TIMEOUT = 15_000


@pytest.fixture
def stack(nats_server: NatsServer, prefix: str, start_app: StartApp) -> Stack:
    """A gateway and a runner with the demo model under one prefix; returns the playground's URL."""
    async def start(token_delay: float = 0.02, **gateway_env: str) -> str:
        runner_env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix,
                                 RUN_DEMO_TOKEN_DELAY=str(token_delay))
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(runner_env)))
        gateway = await start_app(make_gateway(nats_server.url, RAAF_PREFIX=prefix, **gateway_env))
        assert isinstance(gateway, GatewayApp)
        return f"{gateway.http_url}/"
    return start


async def open_playground(browser: Any, url: str) -> Any:
    page = await browser.new_page()
    await page.goto(url)
    await page.wait_for_selector("#agent option[value=triage]", state="attached", timeout=TIMEOUT)
    await page.wait_for_selector("#send:not([disabled])", timeout=TIMEOUT)
    return page


async def ask(page: Any, text: str, agent: str = "assistant") -> Any:
    """Send ``text`` to ``agent``; returns the new answer's locator."""
    await page.select_option("#agent", agent)
    before = await page.locator(".answer").count()
    await page.fill("#text", text)
    await page.press("#text", "Enter")
    answer = page.locator(".answer").nth(before)
    await answer.wait_for(timeout=TIMEOUT)
    return answer


async def ended(answer: Any, status: str = "completed") -> None:
    await answer.page.wait_for_selector(f".answer[data-run='{await answer.get_attribute('data-run')}']"
                                        f"[data-status='{status}']", timeout=TIMEOUT)


async def text_of(answer: Any) -> str:
    return "".join(await answer.locator(".segment .text").all_text_contents())


async def test_an_answer_grows_token_by_token_and_shows_its_timing_usage_and_raw_events(
        browser: Any, stack: Stack) -> None:
    page = await open_playground(browser, await stack(token_delay=0.03))
    assert await page.is_visible("#demo")
    answer = await ask(page, "hello playground")
    lengths: list[int] = []
    while await answer.get_attribute("data-status") != "completed" and len(lengths) < 300:
        lengths.append(len(await text_of(answer)))
        await page.wait_for_timeout(50)
    growing = sorted(set(lengths) - {0})
    assert len(growing) >= 5, lengths  # many partial texts were seen: it streamed, not all at once
    await ended(answer)
    final = await text_of(answer)
    assert final.startswith("Thanks for your message: “hello playground”.") and len(final) > growing[0]
    metrics = await page.locator(".metrics").last.inner_text()
    assert "TTFT" in metrics and "tokens/s" in metrics and "usage" in metrics
    run_id = await answer.get_attribute("data-run")
    raw = [json.loads(line.split(" ", 2)[2]) for line in await page.locator("#events li").all_inner_texts()]
    mine = [event for event in raw if event["run_id"] == run_id]
    assert mine[0]["type"] == "run_started" and mine[0]["demo"] is True and mine[-1]["type"] == "run_completed"
    assert [event["seq"] for event in mine] == list(range(1, len(mine) + 1))
    assert "".join(e["delta"] for e in mine if e["type"] == "run_text_delta") == final


async def test_a_tool_call_renders_with_its_arguments_then_its_output(browser: Any, stack: Stack) -> None:
    page = await open_playground(browser, await stack())
    answer = await ask(page, "What's the weather in Paris?")
    await ended(answer)
    tool = answer.locator(".tool")
    assert await tool.locator(".tool-name").inner_text() == "get_weather"
    assert await tool.locator(".tool-args").inner_text() == '{"city":"Paris"}'
    output = await tool.locator(".tool-output").inner_text()
    assert output.startswith("→ Paris: ") and "°C" in output
    assert (await text_of(answer)).endswith("to see a handoff.")
    assert "The get_weather tool answered: Paris: " in await text_of(answer)


async def test_a_handoff_renders_and_the_answer_continues_as_the_new_agent(browser: Any, stack: Stack) -> None:
    page = await open_playground(browser, await stack())
    answer = await ask(page, "I was charged twice on my last invoice", agent="triage")
    await ended(answer)
    assert await answer.locator(".note.handoff").inner_text() == "triage → billing (handoff)"
    assert await answer.locator(".segment .who").all_inner_texts() == ["triage", "billing"]
    assert (await answer.locator(".segment .text").last.inner_text()).startswith("Hi, billing here")


async def test_stop_ends_the_answer_as_cancelled(browser: Any, stack: Stack) -> None:
    page = await open_playground(browser, await stack(token_delay=0.1))
    answer = await ask(page, "tell me a long story")
    await answer.locator(".segment .text").first.wait_for(timeout=TIMEOUT)
    await page.click("#stop")
    await ended(answer, "cancelled")
    assert await answer.locator(".note").last.inner_text() == "cancelled: stopped in the playground"
    assert len(await text_of(answer)) < 200  # it stopped early: the whole answer is several times longer
    await page.wait_for_selector("#send:not([disabled])", timeout=TIMEOUT)
    assert await page.is_disabled("#stop")


async def test_a_reload_mid_answer_resumes_and_ends_with_the_text_of_an_uninterrupted_run(
        browser: Any, stack: Stack) -> None:
    page = await open_playground(browser, await stack(token_delay=0.05))
    question = "what does a reload do?"
    whole = await ask(page, question)
    await ended(whole)
    uninterrupted = await text_of(whole)
    await page.click("#new")

    answer = await ask(page, question)
    run_id = await answer.get_attribute("data-run")
    await page.wait_for_function("() => document.querySelector('.answer .text')?.textContent.length > 40",
                                 timeout=TIMEOUT)
    assert page.url.endswith(f"#run={run_id}") and await answer.get_attribute("data-status") == "streaming"
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda socket: socket.on("framesent", lambda frame: sent.append(json.loads(frame))))
    await page.reload()
    resumed = page.locator(f".answer[data-run='{run_id}']")
    assert 0 < len(await text_of(resumed)) < len(uninterrupted)  # drawn again at once, from what was stored
    await ended(resumed)
    assert await text_of(resumed) == uninterrupted
    assert await page.locator(".answer").count() == 1
    [resume] = [message for message in sent if message["type"] == "resume"]
    assert resume["run_id"] == run_id and resume["last_seq"] > 1  # after what it had, not from the start
    seqs = [int(line.split(" ", 1)[0][1:]) for line in await page.locator("#events li").all_inner_texts()]
    assert seqs == list(range(1, len(seqs) + 1))  # every event once, in order


async def test_with_token_auth_the_token_goes_in_the_auth_message_never_in_a_url(browser: Any,
                                                                                 stack: Stack) -> None:
    url = await stack(GATEWAY_AUTH_MODE="token", GATEWAY_STATIC_TOKENS="s3cret-playground:ada")
    page = await browser.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda socket: urls.append(socket.url))
    await page.goto(url)
    await page.wait_for_selector("#status:has-text('needs a token')", timeout=TIMEOUT)
    await page.fill("#token", "s3cret-playground")
    await page.click("#connect")
    await page.wait_for_selector("#status:has-text('connected as ada')", timeout=TIMEOUT)
    await page.wait_for_selector("#agent option[value=triage]", state="attached", timeout=TIMEOUT)
    answer = await ask(page, "hello with a token")
    await ended(answer)
    await page.reload()  # the tab keeps its token (sessionStorage) and reconnects with it
    await page.wait_for_selector("#status:has-text('connected as ada')", timeout=TIMEOUT)
    assert urls and not [u for u in urls if "s3cret" in u]
