"""Real servers for tests: nats-server with JetStream and Valkey on free ports, killable and restartable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raaf.testing.openai_mock import OpenAIMock
from shared.devstack.servers import NatsServer, ValkeyServer, die_with_parent, terminate_all
from shared.service.app import App
from shared.service.eventloop import LoopFactory, loop_factory, resolve

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.runs_fixtures", "tests.dialects_fixtures"]
# The loop the services would choose (RAAF_EVENT_LOOP, uvloop where installed): tests run on it too.
TEST_EVENT_LOOP = resolve(os.environ.get("RAAF_EVENT_LOOP", "").strip() or "auto")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    return {TEST_EVENT_LOOP: loop_factory(TEST_EVENT_LOOP)}


def pytest_report_header(config: pytest.Config) -> str:
    return f"event loop: {TEST_EVENT_LOOP} (RAAF_EVENT_LOOP)"


def unique_prefix(tag: str = "t") -> str:
    """A subject prefix no other test uses, so subjects, streams and Redis keys never collide."""
    return f"{tag}{uuid.uuid4().hex[:12]}"


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
    """
    server = NatsServer(tmp_path_factory.mktemp("nats"), max_file_store="10TB", max_memory_store="8GB")
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


def service_env(nats_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for a service under test: fast reconnects, free HTTP port, a test prefix."""
    env = {
        "NATS_URL": nats_url,
        "REDIS_URL": redis_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "WEBSOCKET_PORT": "0",
        "NATS_RECONNECT_WAIT": "0.2",
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_LEVEL": "warning",
    }
    env.update(extra)
    return env


@pytest.fixture
async def start_app() -> AsyncIterator[Callable[[App], Awaitable[App]]]:
    """Start service apps in this process; every one is stopped at teardown."""
    started: list[App] = []

    async def start(app: App) -> App:
        started.append(app)
        await asyncio.wait_for(app.start(), 30)
        return app

    yield start
    for app in reversed(started):
        await app.stop()


class ServiceProcess:
    """A service run as ``python -m services.<module>`` in a child process."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module], env=self.env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    async def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()[-2000:]
                try:
                    async with session.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"{self.module} not ready at {url}: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        terminate_all([self.proc], timeout)
        return self.proc.returncode


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory for service child processes; all are killed at teardown."""
    procs: list[ServiceProcess] = []

    def make(module: str, env: dict[str, str], **kw: Any) -> ServiceProcess:
        proc = ServiceProcess(module, env, tmp_path / f"{module.replace('.', '_')}-{len(procs)}.log")
        procs.append(proc)
        proc.start()
        return proc

    yield make
    for proc in procs:
        proc.kill()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--run-chaos`` (used by ``make chaos``): run the ``chaos``-marked rounds too."""
    parser.addoption("--run-chaos", action="store_true", default=False, help="run @pytest.mark.chaos tests")
