"""The whole platform on one machine: NATS, Valkey and the five services as supervised child processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from proto.subjects import DEFAULT_PREFIX, check_prefix
from shared.devstack.servers import (
    NatsServer,
    ValkeyServer,
    die_with_parent,
    free_port,
    port_open,
    terminate_all,
    url_reachable,
)
from shared.errors import StackError
from shared.nats.auth import redacted
from shared.nats.permissions import NatsUsers

log = logging.getLogger("raaf.stack")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServiceSpec:
    """A service as ``raaf up`` runs it: ``python -m module``, its HTTP port from ``port_var``."""

    name: str
    module: str
    port_var: str
    default_port: int


def _pick_port(wanted: int, host: str) -> int:
    return wanted if not port_open(host, wanted) else free_port(host)


@dataclass
class Stack:
    """Starts what is missing, runs every service, restarts a crashed one, and stops all on request."""

    data_dir: Path
    services: tuple[ServiceSpec, ...]
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    nats: NatsServer | None = None
    valkey: ValkeyServer | None = None
    nats_url: str = ""
    redis_url: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    def start_servers(self) -> None:
        nats_url = self.env.get("NATS_URL", "")
        if nats_url and url_reachable(nats_url, timeout=1.0):
            self.nats_url = nats_url
        else:
            if nats_url:
                log.warning("NATS_URL=%s is not reachable; starting an embedded nats-server", nats_url)
            port = _pick_port(int(self.env.get("RAAF_NATS_PORT", "4222")), self.host)
            # Each service its own user with its subject permissions, with passwords new at every start. On
            # loopback a client without credentials (the examples, the nats CLI) is the admin, as an anonymous
            # gateway there is the local operator; on any other address it is refused.
            users = NatsUsers.generate(check_prefix(self.env.get("RAAF_PREFIX", "") or DEFAULT_PREFIX))
            if self.host in _LOOPBACK:
                users = dataclasses.replace(users, anonymous="admin")
            self.nats = NatsServer(self.data_dir / "nats", port=port, host=self.host, users=users)
            self.nats.start()
            self.nats_url = self.nats.url
            env_file = self.data_dir / "nats.env"
            env_file.write_text(f"NATS_URL={self.nats_url}\n")
            env_file.chmod(0o600)
        redis_url = self.env.get("REDIS_URL", "")
        if redis_url and url_reachable(redis_url, timeout=1.0):
            self.redis_url = redis_url
        else:
            if redis_url:
                log.warning("REDIS_URL=%s is not reachable; starting an embedded valkey-server", redis_url)
            port = _pick_port(int(self.env.get("RAAF_REDIS_PORT", "6379")), self.host)
            self.valkey = ValkeyServer(self.data_dir / "valkey", port=port, host=self.host)
            self.valkey.start()
            self.redis_url = self.valkey.url

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        env = dict(self.env)
        nats_url = self.nats.url_for(spec.name) if self.nats is not None and self.nats.users is not None \
            and spec.name in self.nats.users.passwords else self.nats_url
        env.update(NATS_URL=nats_url, REDIS_URL=self.redis_url, PYTHONUNBUFFERED="1")
        if spec.port_var == "WEBSOCKET_PORT":
            env.setdefault("WEBSOCKET_HOST", self.host)
        else:
            env["HTTP_HOST"] = self.host
        env[spec.port_var] = str(self.ports[spec.name])
        return env

    def start_service(self, spec: ServiceSpec) -> None:
        log_file = open(self.data_dir / f"{spec.name}.log", "ab")  # noqa: SIM115 - owned by the child
        # Its own process group, so a terminal's Ctrl-C does not reach it: ``stop`` decides the order.
        self.procs[spec.name] = subprocess.Popen(
            [sys.executable, "-m", spec.module], env=self.service_env(spec), stdout=log_file,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, process_group=0,
        )
        log_file.close()

    def start_services(self) -> None:
        for spec in self.services:
            wanted = int(self.env.get(spec.port_var, spec.default_port)) if spec.name == "gateway" \
                else spec.default_port
            self.ports[spec.name] = _pick_port(wanted, self.host)
            self.start_service(spec)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            for spec in self.services:
                url = f"http://{self.host}:{self.ports[spec.name]}/readyz"
                while True:
                    proc = self.procs[spec.name]
                    if proc.poll() is not None:
                        raise StackError(f"{spec.name} exited with {proc.returncode}; "
                                         f"see {self.data_dir / (spec.name + '.log')}")
                    with contextlib.suppress(aiohttp.ClientError, OSError):
                        async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                            if resp.status == 200:
                                break
                    if time.monotonic() > deadline:
                        raise StackError(f"{spec.name} not ready within {timeout:.0f}s")
                    await asyncio.sleep(0.1)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart a service that exits on its own, with a backoff, until ``stop`` is set."""
        while not stop.is_set():
            for spec in self.services:
                proc = self.procs.get(spec.name)
                if proc is not None and proc.poll() is not None:
                    count = self.restarts.get(spec.name, 0) + 1
                    self.restarts[spec.name] = count
                    delay = min(30.0, 0.5 * 2 ** min(count, 6))
                    log.warning("%s exited with %s; restarting in %.1fs", spec.name, proc.returncode, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        return
                    self.start_service(spec)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def stop(self, timeout: float = 30.0) -> None:
        terminate_all(list(self.procs.values()), timeout)
        self.procs.clear()
        if self.valkey is not None:
            self.valkey.stop()
        if self.nats is not None:
            self.nats.stop()

    def _nats_line(self) -> str:
        if self.nats is None:
            return redacted(self.nats_url)
        anonymous = "without a password: admin; " if self.nats.users is not None and self.nats.users.anonymous else ""
        return f"{self.nats.address}  (embedded; each service its own user; {anonymous}the admin's NATS_URL is " \
               f"in {self.data_dir / 'nats.env'})"

    def banner(self) -> str:
        gw = f"{self.host}:{self.ports['gateway']}"
        lines = [
            "RAAF Streaming is up.",
            f"  WebSocket   ws://{gw}/ws",
            f"  Playground  http://{gw}/   (agents streaming live; channels at /channels, rooms at /rooms)",
            f"  REST / SSE  http://{gw}/v1/",
            f"  NATS        {self._nats_line()}",
            f"  Redis       {self.redis_url}{'  (embedded)' if self.valkey else ''}",
            "  Health and metrics (/healthz, /readyz, /metrics):",
        ]
        lines += [f"    {s.name:<13} http://{self.host}:{self.ports[s.name]}" for s in self.services]
        lines += [f"  Logs        {self.data_dir}/*.log", "Press Ctrl-C to stop."]
        return "\n".join(lines)


async def run_stack(stack: Stack) -> int:
    """``raaf up``: start everything, print where to connect, run until SIGINT/SIGTERM, stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        stack.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(stack.start_servers)
        stack.start_services()
        ready = asyncio.create_task(stack.wait_ready())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            stopped.cancel()
            ready.result()
            print(stack.banner(), flush=True)
            await stack.supervise(stop)
        else:
            ready.cancel()
        return 0
    except StackError as exc:
        print(f"raaf up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("Stopping ...", file=sys.stderr, flush=True)
        await asyncio.to_thread(stack.stop)
        print("Stopped.", file=sys.stderr, flush=True)
