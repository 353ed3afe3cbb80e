"""Fixtures for the agent-runner's tests: a run client and in-process runners against the OpenAI mock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.runs_support import Runs, runner_env

StartRunner = Callable[..., Awaitable[AgentRunnerApp]]


@pytest.fixture
async def runs(nats_server: NatsServer, prefix: str) -> AsyncIterator[Runs]:
    client = await Runs.connect(nats_server.url, prefix)
    yield client
    await client.close()


@pytest.fixture
def start_runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
                 start_app: Callable[[App], Awaitable[App]]) -> StartRunner:
    """Start a runner under the test's prefix; keyword arguments are extra environment variables."""
    async def start(**extra: str) -> AgentRunnerApp:
        app = AgentRunnerApp(AgentRunnerSettings.from_env(runner_env(nats_server.url, mock.url, prefix, tmp_path,
                                                                     **extra)))
        await start_app(app)
        return app
    return start
