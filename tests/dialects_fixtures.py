"""Fixtures for the client-dialect tests: a runner against the OpenAI mock and a gateway, under the test prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import openai
import pytest

from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.conftest import service_env
from tests.runs_support import runner_env

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture
async def gateway(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp
                  ) -> str:
    """The gateway's base URL, with a runner serving the test agents (``assistant``, ``billing``)."""
    await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(runner_env(nats_server.url, mock.url, prefix,
                                                                           tmp_path))))
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5")
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    return app.http_url


@pytest.fixture
async def api(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai client, pointed at the gateway."""
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session
