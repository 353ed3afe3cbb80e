"""Child processes a test starts and may kill: a service (``python -m services.<module>``) and a job worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

from shared.devstack.servers import die_with_parent, terminate_all
from tests.support.env import ROOT
from tests.support.waiting import eventually


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
        async with aiohttp.ClientSession() as session:
            async def ready() -> bool:
                assert self.proc is not None and self.proc.poll() is None, f"{self.module} exited"
                try:
                    async with session.get(f"{url}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            try:
                await eventually(ready, timeout, interval=0.05, what=f"{self.module} ready at {url}")
            except AssertionError as missed:
                raise AssertionError(f"{missed}: {self.log_path.read_text()[-2000:]}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        terminate_all([self.proc], timeout)
        return self.proc.returncode


class WorkerProcess:
    """``python -m tests.support.jobs_worker`` with settings from ``env``; it prints READY once it claims jobs."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.jobs_worker"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
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
