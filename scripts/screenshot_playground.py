"""Write docs/playground.png: the real playground page in headless Chromium, against a demo-model stack.

Run ``.venv/bin/python scripts/screenshot_playground.py`` (``--out`` for another path). It starts a nats-server,
an agent-runner with the offline demo model and a gateway in this process, asks about the weather (a tool call)
and, as triage, about an invoice (a handoff), and captures the page once both answers are complete.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import Page, async_playwright  # noqa: E402

from services.agent_runner import AgentRunnerApp, AgentRunnerSettings  # noqa: E402
from services.gateway import GatewayApp, GatewaySettings  # noqa: E402
from shared.devstack.servers import NatsServer  # noqa: E402

# The browser flags of tests/test_chat_page.py: headless, no sandbox (containers), nothing phoning home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTIONS = (("assistant", "What's the weather in Paris?"), ("triage", "I was charged twice on my last invoice"))


def service_env(nats_url: str) -> dict[str, str]:
    return {"NATS_URL": nats_url, "REDIS_URL": "redis://127.0.0.1:1/0", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0",
            "WEBSOCKET_HOST": "127.0.0.1", "WEBSOCKET_PORT": "0", "RAAF_PREFIX": "shot",
            "LOG_LEVEL": "warning"}


async def ask(page: Page, agent: str, text: str) -> None:
    await page.select_option("#agent", agent)
    count = await page.locator(".answer").count()
    await page.fill("#text", text)
    await page.press("#text", "Enter")
    await page.wait_for_function(f"document.querySelectorAll('.answer[data-status=completed]').length > {count}",
                                 timeout=30_000)


async def capture(out: Path, chromium: str) -> None:
    with tempfile.TemporaryDirectory() as data:
        nats = NatsServer(Path(data))
        nats.start()
        runner = AgentRunnerApp(AgentRunnerSettings.from_env(service_env(nats.url)))
        gateway = GatewayApp(GatewaySettings.from_env(service_env(nats.url)))
        try:
            await runner.start()
            await gateway.start()
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 1360, "height": 860}, device_scale_factor=1)
                await page.goto(f"{gateway.http_url}/")
                await page.wait_for_selector("#agent option[value=triage]", state="attached", timeout=30_000)
                await page.wait_for_selector("#send:not([disabled])", timeout=30_000)
                for agent, text in QUESTIONS:
                    await ask(page, agent, text)
                await page.fill("#text", "What time is it?")
                await page.screenshot(path=str(out))
                await browser.close()
        finally:
            await gateway.stop()
            await runner.stop()
            nats.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "playground.png", help="where to write the PNG")
    args = parser.parse_args()
    found = subprocess.run([str(ROOT / "scripts" / "ensure-chromium")], capture_output=True, text=True)
    if found.returncode != 0:
        print(f"no Chromium: {found.stderr.strip()}", file=sys.stderr)
        return 1
    asyncio.run(capture(args.out, found.stdout.strip()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
