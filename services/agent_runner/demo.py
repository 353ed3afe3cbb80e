"""The offline demo model: with no LLM configured, the runner talks to a built-in OpenAI-compatible server."""

from __future__ import annotations

import logging
from typing import Final

from shared.openai_mock import OpenAIMock, demo_script

log = logging.getLogger("raaf.agent-runner.demo")

DEMO_MODEL: Final = "raaf-demo"
BANNER: Final = ("DEMO MODEL: no OPENAI_API_KEY or OPENAI_BASE_URL is set, so runs are answered by the built-in "
                 "offline demo model (canned answers; it calls get_weather / get_time when asked about the weather "
                 "or the time, and triage hands billing questions to billing). "
                 "Set OPENAI_API_KEY and/or OPENAI_BASE_URL for a real model.")


class DemoModel:
    """The OpenAI-wire mock on a loopback port with the demo's answers, reached through the real ``openai`` client
    like any model."""

    def __init__(self, token_delay: float) -> None:
        self.server = OpenAIMock("127.0.0.1", 0, token_delay=token_delay, models=(DEMO_MODEL,),
                                 record_requests=False, fallback=demo_script)

    async def start(self) -> str:
        await self.server.start()
        log.warning(BANNER, extra={"demo_url": self.server.url})
        return self.server.url

    async def stop(self) -> None:
        await self.server.stop()
