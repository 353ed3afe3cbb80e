"""Services run as processes: invalid settings fail fast, SIGTERM drains, ``raaf up`` runs the whole stack."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import nats
import nats.errors
import pytest

from proto.subjects import Subjects
from shared.devstack.servers import NatsServer, ValkeyServer, free_port
from shared.nats.conn import barrier
from tests.support.env import ROOT, service_env
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

MODULES = ["services.gateway", "services.agent_runner", "services.chat", "services.scheduler", "services.metrics"]


@pytest.mark.parametrize(
    ("module", "variable", "value"),
    [
        ("services.gateway", "WEBSOCKET_PORT", "abc"),
        ("services.gateway", "WEBSOCKET_MAX_CONNECTIONS", "-5"),
        ("services.agent_runner", "ASYNC_POOL_SIZE", "many"),
        ("services.scheduler", "REDIS_URL", "http://nope"),
        ("services.chat", "LOG_LEVEL", "loud"),
        ("services.metrics", "RAAF_PREFIX", "a.b"),
        ("services.gateway", "RAAF_EVENT_LOOP", "trio"),
    ],
)
def test_invalid_setting_exits_nonzero_with_one_line_naming_the_variable(
    module: str, variable: str, value: str
) -> None:
    env = {**os.environ, variable: value}
    result = subprocess.run([sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and value in lines[0]


@pytest.mark.parametrize("module", MODULES)
async def test_service_process_logs_json_and_exits_cleanly_on_sigterm(
    module: str, nats_server: NatsServer, redis_server: ValkeyServer,
    service_process: Callable[..., ServiceProcess],
) -> None:
    port = free_port()
    env = service_env(nats_server.url, redis_server.url, HTTP_PORT=str(port), WEBSOCKET_PORT=str(port),
                      LOG_LEVEL="info")
    proc = service_process(module, env)
    await proc.wait_ready(f"http://127.0.0.1:{port}")
    assert proc.terminate() == 0
    records = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
    messages = [r["msg"] for r in records]
    assert "started" in messages and messages[-1] == "stopped"
    assert all({"ts", "level", "service", "instance"} <= r.keys() for r in records)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_a_service_runs_on_the_event_loop_its_setting_names(
    loop: str, nats_server: NatsServer, redis_server: ValkeyServer,
    service_process: Callable[..., ServiceProcess],
) -> None:
    port = free_port()
    env = service_env(nats_server.url, redis_server.url, WEBSOCKET_PORT=str(port), LOG_LEVEL="info",
                      RAAF_EVENT_LOOP=loop)
    proc = service_process("services.gateway", env)
    await proc.wait_ready(f"http://127.0.0.1:{port}")
    assert proc.terminate() == 0
    records = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
    assert [r["event_loop"] for r in records if r["msg"] == "started"] == [loop]


def _raaf_up(tmp_path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """``raaf up`` in a session of its own (as a shell runs it in the foreground), once it printed its banner."""
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "REDIS_URL")}
    env.update(WEBSOCKET_PORT=str(free_port()), RAAF_NATS_PORT=str(free_port()), RAAF_REDIS_PORT=str(free_port()))
    proc = subprocess.Popen([sys.executable, "-m", "raaf", "up", "--data-dir", str(tmp_path / "var")], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    banner = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(f"raaf up ended early: {proc.stderr.read() if proc.stderr else ''}")
        banner.append(line)
        if line.startswith("Press Ctrl-C"):
            return proc, banner
    proc.kill()
    raise AssertionError(f"no banner within 90s: {''.join(banner)}")


def _ctrl_c(proc: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)


async def test_raaf_up_starts_everything_and_stops_with_no_orphans(tmp_path: Path) -> None:
    proc, banner = _raaf_up(tmp_path)
    try:
        text = "".join(banner)
        assert "ws://127.0.0.1:" in text
        urls = [line.split()[-1] for line in banner if line.strip().startswith(("gateway", "agent-runner", "chat",
                                                                                  "scheduler", "metrics"))]
        assert len(urls) == 5
        async with aiohttp.ClientSession() as session:
            for url in urls:
                async with session.get(f"{url}/readyz") as resp:
                    assert resp.status == 200, url
        children = _children(proc.pid)
        assert len(children) >= 7  # nats-server, valkey-server, five services
        await _nats_has_users(tmp_path / "var", text)
        _ctrl_c(proc)
        assert proc.wait(60) == 0
        await eventually(lambda: not any(_alive(pid) for pid in children), what="every child process gone")
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()


async def _nats_has_users(data_dir: Path, banner: str) -> None:
    """The embedded nats-server has users: the admin of ``nats.env`` gets in, a wrong password does not, and on
    loopback a client without one is the admin (as examples and the nats CLI connect); the banner shows none."""
    (admin_url,) = [line.removeprefix("NATS_URL=") for line in (data_dir / "nats.env").read_text().splitlines()]
    address = "nats://" + admin_url.rsplit("@", 1)[1]
    assert admin_url.split("//")[1].split("@")[0] not in banner, "no password in the banner"
    for url in (admin_url, address):
        admin = await nats.connect(url, allow_reconnect=False)
        await admin.publish(Subjects("raaf").run_events("banner-check"), b"{}")  # only an admin (or a runner) may
        await barrier(admin)
        assert admin.is_connected and admin.last_error is None
        await admin.close()
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(address.replace("nats://", "nats://gateway:wrong@"), allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=2)


# A line of a service's log about losing or regaining NATS or Redis (the shutdown must not cause one).
CONNECTION_NEWS = re.compile(r"disconnect|reconnect|not reachable|connection (refused|reset|lost)", re.IGNORECASE)


def test_ctrl_c_stops_every_service_before_nats_and_valkey_and_no_service_logs_a_disconnect(
    tmp_path: Path,
) -> None:
    proc, _ = _raaf_up(tmp_path)
    try:
        children = {pid: _command(pid) for pid in _children(proc.pid)}
        services = {pid for pid, cmd in children.items() if cmd[1:2] == ["-m"]}
        servers = children.keys() - services  # valkey-server rewrites its command line: match by exclusion
        assert len(servers) == 2 and len(services) == 5, children
        gone_at: dict[int, float] = {}
        _ctrl_c(proc)
        deadline = time.monotonic() + 60
        while len(gone_at) < len(children) and time.monotonic() < deadline:
            now = time.monotonic()
            gone_at.update({pid: now for pid in children if pid not in gone_at and not _alive(pid)})
            time.sleep(0.002)
        assert proc.wait(30) == 0
        assert gone_at.keys() == children.keys(), "some child outlived raaf up"
        last_service = max(gone_at[pid] for pid in services)
        assert all(gone_at[pid] >= last_service for pid in servers), "a server stopped while a service still ran"
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = {path.name: path.read_text() for path in (tmp_path / "var").glob("*.log")
            if path.stem in ("gateway", "agent-runner", "chat", "scheduler", "metrics")}
    assert len(logs) == 5
    news = {name: line for name, text in logs.items() for line in text.splitlines() if CONNECTION_NEWS.search(line)}
    assert news == {}
    assert all('"msg":"stopped"' in text for text in logs.values())


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _command(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"
