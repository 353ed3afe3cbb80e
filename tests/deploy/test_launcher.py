"""The image's entrypoint: ``python -m services NAME`` runs a service, ``check NAME`` probes it for health checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.launcher import SERVICES, find_service, stack_services
from shared.devstack.servers import NatsServer, ValkeyServer, die_with_parent, free_port, terminate_all
from tests.support.env import ROOT, service_env


def _launch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    terminate_all(procs, 10)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not ready on {port}: {log.read_text()[-2000:]}")


def test_launcher_names_and_modules_are_the_ones_raaf_up_runs() -> None:
    assert [(e.name, e.module) for e in SERVICES.values()] == [(s.name, s.module) for s in stack_services()]


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_name_runs_that_services_own_main(name: str) -> None:
    # The service's own __main__ names itself when it refuses a bad setting, so this shows which one ran.
    result = _launch([name], {"LOG_LEVEL": "loud"})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"raaf-{name}: invalid LOG_LEVEL='loud'")


# The gateway serves on WEBSOCKET_PORT, the others on HTTP_PORT; the scheduler is also ready only with Redis.
@pytest.mark.parametrize("name", ["gateway", "scheduler"])
def test_a_launched_service_drains_on_sigterm_and_check_follows_its_readiness(
    name: str, nats_server: NatsServer, redis_server: ValkeyServer, launched: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    port = free_port()
    env = service_env(nats_server.url, redis_server.url, HTTP_PORT=str(port), WEBSOCKET_PORT=str(port))
    assert _launch(["check", name, "--timeout", "1"], env).returncode == 1, "check passed with nothing running"
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services", name], env={**os.environ, **env}, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    launched.append(proc)
    _wait_ready(port, proc, log)
    assert _launch(["check", name], env).returncode == 0
    live = _launch(["check", name, "--probe", "live"], env)
    assert live.returncode == 0 and f"127.0.0.1:{port}/healthz" in live.stdout
    terminate_all([proc], 15)
    assert proc.returncode == 0, log.read_text()[-2000:]
    down = _launch(["check", name, "--timeout", "1"], env)
    assert down.returncode == 1 and "FAIL" in down.stderr


def test_check_reports_not_ready_with_the_services_own_reason(
    private_nats: NatsServer, redis_server: ValkeyServer, launched: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    port = free_port()
    env = service_env(private_nats.url, redis_server.url, HTTP_PORT=str(port))
    log = tmp_path / "chat.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services", "chat"], env={**os.environ, **env}, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    launched.append(proc)
    _wait_ready(port, proc, log)
    private_nats.kill()
    deadline = time.monotonic() + 20
    result = _launch(["check", "chat"], env)
    while result.returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        result = _launch(["check", "chat"], env)
    assert result.returncode == 1 and "503" in result.stderr
    assert _launch(["check", "chat", "--probe", "live"], env).returncode == 0, "alive while NATS is down"


def test_unknown_service_exits_2_naming_the_known_ones() -> None:
    result = _launch(["gatewy"], {})
    assert result.returncode == 2
    assert "unknown service 'gatewy'" in result.stderr and "agent-runner" in result.stderr


def test_check_with_an_invalid_setting_exits_2_naming_the_variable() -> None:
    result = _launch(["check", "gateway"], {"WEBSOCKET_PORT": "eighty"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["raaf-gateway: invalid WEBSOCKET_PORT='eighty': expected an integer"]


def test_module_style_names_are_accepted() -> None:
    assert find_service("agent_runner") is SERVICES["agent-runner"]
