"""A whole stack for the examples (NATS, Valkey, the five services, the OpenAI-wire mock) and the example index."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from services.launcher import stack_services
from shared.devstack.servers import die_with_parent, free_port, port_open, terminate_all
from shared.devstack.stack import Stack
from tests.support.env import ROOT

EXAMPLES = ROOT / "examples"
EXPECTED = EXAMPLES / "expected"
SEED_README = ROOT / "docs" / "seed" / "README.md"
INDEX = EXAMPLES / "index.toml"


@dataclass(frozen=True)
class Example:
    file: str
    sections: tuple[str, ...]
    title: str
    command: tuple[str, ...]  # how it is run (python FILE, or pytest FILE)

    @property
    def path(self) -> Path:
        return EXAMPLES / self.file

    @property
    def expected_path(self) -> Path:
        return EXPECTED / (Path(self.file).stem + ".txt")


@dataclass(frozen=True)
class ExampleIndex:
    examples: tuple[Example, ...]
    docs_only: dict[str, str]  # seed section -> why it has no runnable example (and where the docs say it)


def load_index() -> ExampleIndex:
    raw = tomllib.loads(INDEX.read_text())
    examples = tuple(
        Example(file=e["file"], sections=tuple(e["sections"]), title=e["title"],
                command=tuple(e.get("command", ["python", e["file"]])))
        for e in raw["example"])
    return ExampleIndex(examples, dict(raw["docs_only"]))


def seed_sections_with_code(text: str) -> list[str]:
    """Headings (## or ###) of the seed README followed by a fenced code block before the next heading."""
    sections: list[str] = []
    heading: str | None = None
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            if not in_code and heading is not None and heading not in sections:
                sections.append(heading)
            in_code = not in_code
            continue
        if not in_code:
            match = re.match(r"#{2,3} (.+)", line)
            if match:
                heading = match.group(1).strip()
    return sections


def normalise(output: str) -> str:
    """What an example printed, with trailing spaces and pytest's timing gone (otherwise compared exactly)."""
    output = re.sub(r" in [0-9.]+s\b", "", output)
    return "\n".join(line.rstrip() for line in output.strip().splitlines()) + "\n"


@dataclass
class ExampleStack:
    """``make run`` for the examples: the platform under its own prefix, with the mock as its model."""

    data_dir: Path
    nats_url: str | None = None
    redis_url: str | None = None
    token_delay: float = 0.001
    stack: Stack | None = None
    mock: subprocess.Popen[bytes] | None = None
    prefix: str = field(default_factory=lambda: f"ex{os.getpid()}x{time.monotonic_ns() % 10**8}")

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        mock_port = free_port()
        with open(self.data_dir / "openai-mock.log", "ab") as log:
            self.mock = subprocess.Popen(
                [sys.executable, "-m", "raaf.testing.openai_mock", "--port", str(mock_port), "--token-delay",
                 str(self.token_delay), "--no-record-requests"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent)
        env = {**os.environ, "RAAF_PREFIX": self.prefix, "OPENAI_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
               "OPENAI_API_KEY": "mock", "WEBSOCKET_PORT": str(free_port()), "LOG_LEVEL": "warning",
               "NATS_RECONNECT_WAIT": "0.2", "SHUTDOWN_TIMEOUT": "5", "JOBS_LEASE_SECONDS": "2"}
        for name, value in (("NATS_URL", self.nats_url), ("REDIS_URL", self.redis_url)):
            if value:
                env[name] = value
        env.pop("RAAF_AGENTS_FILE", None)
        env.pop("RAAF_TOOLS_MODULE", None)
        self.stack = Stack(data_dir=self.data_dir, services=stack_services(), env=env)
        self.stack.start_servers()
        self.stack.start_services()
        asyncio.run(self.stack.wait_ready(60))
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", mock_port):
            if time.monotonic() > deadline:
                raise RuntimeError("the OpenAI mock did not start")
            time.sleep(0.05)

    def env(self) -> dict[str, str]:
        """What an example needs to find this stack (the same variables ``make run`` users set, or leave)."""
        assert self.stack is not None
        ports = self.stack.ports
        return {**os.environ, "NATS_URL": self.stack.nats_url, "REDIS_URL": self.stack.redis_url,
                "RAAF_PREFIX": self.prefix, "RAAF_GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "warning"}

    def run(self, example: Example, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", str(example.path)] \
            if example.command[0] == "pytest" else [sys.executable, str(example.path)]
        return subprocess.run(command, cwd=EXAMPLES, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def run_all(self, examples: Iterable[Example], workers: int = 4
                ) -> dict[str, subprocess.CompletedProcess[str]]:
        items = list(examples)
        with ThreadPoolExecutor(workers) as pool:
            return dict(zip([e.file for e in items], pool.map(self.run, items), strict=True))

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop(10)
        if self.mock is not None:
            terminate_all([self.mock], 5)
