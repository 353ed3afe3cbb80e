"""Shared fixtures: real nats-server (JetStream) and Valkey on free ports, services, runners, the OpenAI mock.

Helpers that are not fixtures live in ``tests/support/`` (see tests/README.md)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from raaf.testing.openai_mock import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from shared.devstack.nats_cluster import NatsCluster
from shared.devstack.redis_ha import SentinelGroup, ValkeyCluster
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.nats.permissions import ANY_PREFIX, NatsUsers
from shared.service.app import App
from shared.service.eventloop import LoopFactory, loop_factory, resolve
from tests.support.env import own_user, own_user_env, unique_prefix
from tests.support.events import NATS_PY_PATHS, TEST_ENV
from tests.support.otlp import OtlpReceiver
from tests.support.processes import ServiceProcess
from tests.support.runs import Runs, StartRunner, runner_env

pytest_plugins = ["tests.support.dialects_fixtures"]
# The loop the services would choose (RAAF_EVENT_LOOP, uvloop where installed): tests run on it too.
TEST_EVENT_LOOP = resolve(os.environ.get("RAAF_EVENT_LOOP", "").strip() or "auto")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    return {TEST_EVENT_LOOP: loop_factory(TEST_EVENT_LOOP)}


def pytest_report_header(config: pytest.Config) -> str:
    return f"event loop: {TEST_EVENT_LOOP} (RAAF_EVENT_LOOP)"


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    """The OpenAI-wire mock on a free port (modules wanting other settings define their own)."""
    async with OpenAIMock() as server:
        yield server


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server -js for the session; tests use unique subjects and must not kill it.

    Every test prefix provisions its own streams, each reserving its max_bytes: allow far more than one disk.
    Permissions are on: ``.url`` is the admin's (test clients), and ``start_app`` / ``service_process`` hand
    each service its own user (``url_for``), for every prefix at once.
    """
    server = NatsServer(tmp_path_factory.mktemp("nats"), max_file_store="10TB", max_memory_store="8GB",
                        users=NatsUsers.generate(ANY_PREFIX))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """One valkey-server for the session; tests use unique keys and must not kill it."""
    server = ValkeyServer(tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server this test owns: it may stop, kill -9 and restart it."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A valkey-server (AOF on) this test owns: it may stop, kill -9 and restart it."""
    server = ValkeyServer(tmp_path / "valkey")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A Valkey primary, two replicas and three Sentinels this test owns: it may kill -9 the primary (and one
    replica is left to confirm writes after the failover)."""
    group = SentinelGroup(tmp_path / "sentinel", replicas=2)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three routed nats-servers with JetStream this test owns: it may kill -9 any of them (R3 streams survive)."""
    cluster = NatsCluster(tmp_path / "nats-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """One three-primary Valkey cluster for the session; tests use unique keys and must not kill it."""
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def start_app(nats_server: NatsServer) -> AsyncIterator[Callable[[App], Awaitable[App]]]:
    """Start service apps in this process (on the session server, each as its own NATS user); every one is
    stopped at teardown."""
    started: list[App] = []

    async def start(app: App) -> App:
        own_user(app, nats_server)
        started.append(app)
        await asyncio.wait_for(app.start(), 30)
        return app

    yield start
    for app in reversed(started):
        await app.stop()


@pytest.fixture
def service_process(tmp_path: Path, nats_server: NatsServer) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory for service child processes (each as its own NATS user on the session server); all are killed
    at teardown."""
    procs: list[ServiceProcess] = []

    def make(module: str, env: dict[str, str], **kw: Any) -> ServiceProcess:
        env = own_user_env(module, env, nats_server)
        proc = ServiceProcess(module, env, tmp_path / f"{module.replace('.', '_')}-{len(procs)}.log")
        procs.append(proc)
        proc.start()
        return proc

    yield make
    for proc in procs:
        proc.kill()


@pytest.fixture
async def runs(nats_server: NatsServer, prefix: str) -> AsyncIterator[Runs]:
    """A client of the runners under the test's prefix."""
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


@pytest.fixture(params=["direct", "nats-py"])
def delivery_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run an event test on both paths: direct delivery and the lean publish (the default), and nats-py's own."""
    if request.param == "nats-py":
        for variable, value in NATS_PY_PATHS.items():
            monkeypatch.setitem(TEST_ENV, variable, value)
    return str(request.param)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--run-chaos`` (used by ``make chaos``): run the ``chaos``-marked rounds too."""
    parser.addoption("--run-chaos", action="store_true", default=False, help="run @pytest.mark.chaos tests")


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    """A real OTLP/HTTP trace receiver on a free port (``.endpoint``), for the tracing tests."""
    server = await OtlpReceiver().start()
    yield server
    await server.stop()
