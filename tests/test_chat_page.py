"""The gateway's chat page in headless Chromium: join a channel, send, and see messages and people live."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import raaf
from services.gateway import GatewayApp
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.env import ROOT
from tests.support.gateway import make_gateway

StartApp = Callable[[App], Awaitable[App]]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """Chromium from scripts/ensure-chromium (which installs it with apt when it can), else skip."""
    done = subprocess.run([str(ROOT / "scripts" / "ensure-chromium")], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"no Chromium for the browser test: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium_path()
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def join(browser: Any, url: str, name: str) -> Any:
    page = await browser.new_page()
    await page.goto(url)
    await page.fill("#name", name)
    await page.fill("#channel", "general")
    await page.click("#join")
    await page.wait_for_selector("#send:not([disabled])", timeout=10_000)
    return page


async def test_two_browsers_chat_live_and_see_who_is_here(browser: Any, nats_server: NatsServer,
                                                          start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url))
    assert isinstance(app, GatewayApp)
    ann = await join(browser, f"{app.http_url}/channels", "Ann")
    ben = await join(browser, f"{app.http_url}/channels", "Ben")

    await ann.fill("#text", "hello from Ann")
    await ann.press("#text", "Enter")
    for page in (ann, ben):
        await page.wait_for_selector("#messages li:has-text('hello from Ann')", timeout=10_000)
    assert await ben.inner_text("#messages li:has(.who)") == "Annhello from Ann"
    await ann.wait_for_selector("#members li:has-text('Ben')", timeout=10_000)
    await ben.wait_for_selector("#members li:has-text('Ann')", timeout=10_000)

    # A message from Python (any client of the gateway) shows up in the page too, as text, not HTML.
    async with raaf.WebSocketClient(app.http_url.replace("http", "ws") + "/ws") as client:
        await client.publish("general", {"text": "<b>hi</b> from Python", "name": "py"})
    await ann.wait_for_selector("#messages li:has-text('<b>hi</b> from Python')", timeout=10_000)
    assert await ann.locator("#messages b").count() == 0

    await ben.close()
    await ann.wait_for_selector("#messages li.system:has-text('Ben left')", timeout=10_000)
    assert await ann.locator("#members li").all_inner_texts() == ["Ann"]
