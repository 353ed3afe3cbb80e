"""Helpers for the run tests: a runner against the OpenAI mock, and a NATS client that starts and reads runs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS

from proto.errors import Error
from proto.runs import RunAccepted, RunEvent, RunRequest
from proto.subjects import Subjects
from services.agent_runner import AgentRunnerApp
from shared.clients.runs import RunClient
from tests.support.env import service_env

AGENTS_TOML = """
[[agents]]
name = "assistant"
instructions = "You are a helpful assistant."
tools = ["get_weather", "add", "explode", "slow"]
handoffs = ["billing"]

[[agents]]
name = "billing"
instructions = "You handle billing questions."
model = "gpt-4o"
handoff_description = "Questions about invoices and payments."
"""

StartRunner = Callable[..., Awaitable[AgentRunnerApp]]  # the start_runner fixture: extra env -> a started runner


def new_run_id() -> str:
    return uuid.uuid4().hex


def runner_env(nats_url: str, mock_url: str, prefix: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS_TOML)
    return service_env(nats_url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, OPENAI_BASE_URL=mock_url,
                       RAAF_AGENTS_FILE=str(agents), RAAF_TOOLS_MODULE="tests.support.tools", RUN_RETRY_DELAY="0.01",
                       RUN_LEASE_TTL="2", **extra)


class Runs:
    """A client of the runners under one prefix (the same RunClient the gateway uses)."""

    def __init__(self, nc: NATS, prefix: str) -> None:
        self.nc = nc
        self.prefix = prefix
        self.client = RunClient(nc, nc.jetstream(), Subjects(prefix), idle_check=0.5)

    @classmethod
    async def connect(cls, url: str, prefix: str) -> Runs:
        return cls(await nats.connect(url), prefix)

    async def close(self) -> None:
        await self.nc.close()

    async def start(self, text: str = "hi", *, agent: str = "assistant", **fields: Any) -> RunAccepted | Error:
        run_id = fields.pop("run_id", None) or new_run_id()
        return await self.client.start(RunRequest(run_id=run_id, agent=agent, input=text, **fields))

    async def events(self, run_id: str, after_seq: int = 0, timeout: float = 15.0) -> list[RunEvent]:
        async with asyncio.timeout(timeout), contextlib.aclosing(self.client.follow(run_id, after_seq)) as events:
            return [event async for event, _ in events]

    async def run(self, text: str = "hi", **fields: Any) -> list[RunEvent]:
        accepted = await self.start(text, **fields)
        assert isinstance(accepted, RunAccepted), accepted
        return await self.events(accepted.run_id)


def types(events: list[RunEvent]) -> list[str]:
    return [type(e).__name__ for e in events]
