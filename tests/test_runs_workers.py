"""An agent-runner pod with ``RUN_WORKERS=2``: a supervisor, two worker processes, one health and metrics port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proto.runs import RunAccepted, RunCompleted, RunEvent, RunStarted, RunStepRestarted, TextDelta
from raaf.testing import OpenAIMock
from shared.devstack.servers import NatsServer, free_port
from shared.runs.registry import RunRegistry
from shared.service.supervisor import container_cpus, worker_count
from tests.support.env import ROOT
from tests.support.processes import ServiceProcess
from tests.support.restart import alive, restart_env, scripted_model
from tests.support.runs import Runs
from tests.support.waiting import eventually

Pod = tuple[ServiceProcess, str, str]  # the supervisor process, its URL, the pod's instance id


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.05, fallback=scripted_model) as server:
        yield server


@pytest.fixture
async def pod(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
              service_process: Callable[..., ServiceProcess]) -> AsyncIterator[Pod]:
    """``python -m services.agent_runner`` with two workers, once its one port says ready (killed at teardown)."""
    port = free_port()
    instance = f"{prefix}-pod"
    env = restart_env(nats_server.url, mock.url, prefix, tmp_path, instance, RUN_WORKERS="2",
                      HTTP_PORT=str(port), HTTP_HOST="127.0.0.1", SHUTDOWN_TIMEOUT="10")
    proc = service_process("services.agent_runner", env)
    url = f"http://127.0.0.1:{port}"
    await proc.wait_ready(url, timeout=90)
    yield proc, url, instance


def workers_of(pid: int) -> dict[str, int]:
    """The supervisor's child processes by the ``INSTANCE_ID`` it gave each (read from /proc)."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            for item in environ:
                if item.startswith(b"INSTANCE_ID="):
                    found[item.split(b"=", 1)[1].decode()] = int(entry)
    return found


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_a_two_worker_runner_spreads_runs_over_both_and_answers_health_and_metrics_on_one_port(
        pod: Pod, runs: Runs) -> None:
    proc, url, instance = pod
    workers = {f"{instance}-w0", f"{instance}-w1"}
    await alive(runs, *workers)
    accepted = await asyncio.gather(*(runs.start("note:x", agent="clerk") for _ in range(16)))
    assert all(isinstance(a, RunAccepted) for a in accepted), accepted
    started: set[str] = set()
    for a in accepted:
        assert isinstance(a, RunAccepted)
        events = await runs.events(a.run_id, timeout=60)
        assert isinstance(events[-1], RunCompleted), events[-1]
        started |= {e.instance for e in events if isinstance(e, RunStarted)}
    assert started == workers  # 16 runs on one of two workers by chance: 1 in 32,768

    health, _ = await get(f"{url}/healthz")
    ready, body = await get(f"{url}/readyz")
    assert (health, ready) == (200, 200), body
    status, metrics = await get(f"{url}/metrics")
    assert status == 200
    assert "raaf_supervisor_workers 2.0" in metrics
    assert "raaf_supervisor_worker_restarts_total 0.0" in metrics
    for slot in ("0", "1"):
        assert f'raaf_service_ready{{worker="{slot}"}} 1.0' in metrics, metrics[:3000]
    families = [family.name for family in text_string_to_metric_families(metrics)]
    assert len(families) == len(set(families))  # one family per name: the workers' series merged, not repeated
    assert "raaf_run_ttft_seconds" in families
    assert proc.terminate(timeout=30) == 0


async def test_a_worker_killed_mid_answer_is_replaced_and_its_run_continues_on_the_other_worker(
        pod: Pod, runs: Runs) -> None:
    proc, url, instance = pod
    assert proc.proc is not None
    pid = proc.proc.pid
    await alive(runs, f"{instance}-w0", f"{instance}-w1")
    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()
    accepted = await runs.start("note:x", agent="clerk")
    assert isinstance(accepted, RunAccepted), accepted
    seen: list[RunEvent] = []
    killed: str | None = None
    text = ""
    async with asyncio.timeout(60), contextlib.aclosing(runs.client.follow(accepted.run_id)) as events:
        async for event, _ in events:
            seen.append(event)
            text += event.delta if isinstance(event, TextDelta) else ""
            if killed is None and " w4" in text:
                killed = await registry.owner(accepted.run_id)
                assert killed is not None
                os.kill(workers_of(pid)[killed], signal.SIGKILL)
    assert isinstance(seen[-1], RunCompleted), seen[-1]
    restarted = [e for e in seen if isinstance(e, RunStepRestarted)]
    assert [(e.previous, e.instance) for e in restarted] == [
        (killed, ({f"{instance}-w0", f"{instance}-w1"} - {killed}).pop())]

    assert killed is not None
    slot = killed.removeprefix(f"{instance}-w")

    async def replaced() -> bool:
        _, metrics = await get(f"{url}/metrics")
        ready, _ = await get(f"{url}/readyz")
        return (ready == 200 and "raaf_supervisor_worker_restarts_total 1.0" in metrics
                and f"{instance}-w{slot}-r1" in workers_of(pid))
    await eventually(replaced, 60, interval=0.2, what="the supervisor replacing the killed worker")
    assert proc.terminate(timeout=30) == 0


def test_run_workers_zero_means_one_worker_per_cpu_of_the_containers_cpu_limit(tmp_path: Path) -> None:
    available = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")  # 1.5 CPUs: two workers, unless fewer CPUs are there at all
    assert container_cpus(str(limit)) == min(2, available)
    limit.write_text("max 100000\n")
    assert container_cpus(str(limit)) == available
    assert container_cpus(str(tmp_path / "no-cgroup-v2")) == available
    assert worker_count(3) == 3 and 1 <= worker_count(0) <= 64


def test_a_supervisor_with_a_bad_agents_file_exits_2_at_once_instead_of_restarting_workers(tmp_path: Path) -> None:
    env = {**os.environ, "RUN_WORKERS": "2", "RAAF_AGENTS_FILE": str(tmp_path / "missing.toml"),
           "NATS_URL": "nats://127.0.0.1:1", "HTTP_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "services", "agent-runner"], env=env, cwd=ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"invalid RAAF_AGENTS_FILE" in done.stderr
