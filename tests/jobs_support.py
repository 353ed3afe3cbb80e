"""Helpers for the jobs tests: unique prefixes, waiting, worker child processes, a cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as redis

from shared.devstack.servers import die_with_parent, terminate_all
from tests.conftest import unique_prefix as unique_prefix  # re-exported for this area's tests

ROOT = Path(__file__).resolve().parent.parent


async def wait_until(predicate: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float,
                     interval: float = 0.02, what: str = "condition") -> float:
    """Poll until ``predicate`` is true; returns the seconds it took, fails the test after ``timeout``."""
    started = time.monotonic()
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)


async def key_count(client: redis.Redis, prefix: str) -> int:
    """How many Redis keys live under a test's prefix."""
    return len([k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)])


class WorkerProcess:
    """``python -m tests.jobs_worker`` with settings from ``env``; it prints READY once it claims jobs."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.jobs_worker"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent)

    async def wait_ready(self, timeout: float = 20.0) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        assert line.startswith(b"READY"), f"worker did not start: {self.log_path.read_text()[-2000:]}"

    def kill(self) -> None:
        """SIGKILL: no drain, no hand-back, leases left to expire."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout: float = 15.0) -> int:
        terminate_all([self.proc], timeout)
        return self.proc.returncode


class TcpProxy:
    """A TCP relay to ``target`` that can black-hole traffic, as a cut network does (nothing arrives, no reset)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def partition(self) -> None:
        """From now on every byte in either direction is dropped; connections stay open and hang."""
        self.cut = True

    def heal(self) -> None:
        """Reset the hung connections (their streams lost bytes) and relay again."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self.cut = False

    async def close(self) -> None:
        self.heal()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if not self.cut:
                        dst.write(data)
                        await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)
