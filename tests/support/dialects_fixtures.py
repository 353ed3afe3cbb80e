"""Fixtures for the client-dialect tests: a runner against the OpenAI mock and a gateway, under the test prefix."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.env import service_env
from tests.support.runs import runner_env

StartApp = Callable[[App], Awaitable[App]]


TOKENS = "alice-token:alice,bob-token:bob"


async def start_gateway(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp,
                        **extra: str) -> str:
    await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(runner_env(nats_server.url, mock.url, prefix,
                                                                           tmp_path))))
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5",
                      **extra)
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    return app.http_url


@pytest.fixture
async def gateway(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp
                  ) -> str:
    """The gateway's base URL, with a runner serving the test agents (``assistant``, ``billing``)."""
    return await start_gateway(nats_server, mock, prefix, tmp_path, start_app)


@pytest.fixture
async def secured_gateway(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
                          start_app: StartApp) -> str:
    """The same, with token auth: ``alice-token`` is alice, ``bob-token`` is bob."""
    return await start_gateway(nats_server, mock, prefix, tmp_path, start_app, GATEWAY_AUTH_MODE="token",
                               GATEWAY_STATIC_TOKENS=TOKENS)


@pytest.fixture
async def api(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai client, pointed at the gateway."""
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NodeClient = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


@pytest.fixture(scope="session")
def node_packages() -> Path:
    """tests/node with its pinned client libraries installed (``npm ci``, once, when the lock file changed)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed to drive the JavaScript clients")
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < (NODE_DIR / "package-lock.json").stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       timeout=600)
    return NODE_DIR


@pytest.fixture
def node_client(node_packages: Path) -> NodeClient:
    """Run ``node <script> <command> <json args>`` (a script in tests/node) and return the JSON it prints."""
    async def run(script: str, command: str, args: dict[str, Any]) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            "node", str(node_packages / script), command, json.dumps(args), cwd=node_packages,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        finally:
            if process.returncode is None:  # timed out (or the test was cancelled): leave no node behind
                process.kill()
                await process.wait()
        result: dict[str, Any] = json.loads(out or b"{}")
        assert process.returncode == 0 and "error" not in result, (result.get("error"), err.decode()[-2000:])
        return result
    return run
