"""Highly available Valkey on one machine: a primary with a replica watched by Sentinels, and a sharded cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from shared.devstack.servers import ServerProcess, ValkeyServer, find_valkey_server
from shared.errors import StackError

CLUSTER_SLOTS = 16384


def _until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"{what} within {timeout:.0f}s")
        time.sleep(0.05)


def admin(server: ServerProcess, *command: str | int) -> Any:
    """Run one command on one server (a short synchronous connection), for setting it up and inspecting it."""
    with redis.Redis(host=server.host, port=server.port, socket_timeout=2, decode_responses=True) as client:
        return client.execute_command(*command)


class ValkeySentinel(ServerProcess):
    """``valkey-server --sentinel`` watching one primary (its config file is its own: Sentinel rewrites it)."""

    name = "valkey-sentinel"

    def __init__(self, data_dir: Path, primary: ValkeyServer, *, service: str = "mymaster", quorum: int = 2,
                 down_after_ms: int = 500, failover_timeout_ms: int = 3000, port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        super().__init__(data_dir, port, host)
        self.primary = primary
        self.service = service
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def command(self) -> list[str]:
        config = self.data_dir / "sentinel.conf"
        if not config.exists():
            s = self.service
            config.write_text(
                f"port {self.port}\nbind {self.host}\ndir {self.data_dir}\nprotected-mode no\n"
                f"sentinel monitor {s} {self.primary.host} {self.primary.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {s} {self.down_after_ms}\n"
                f"sentinel failover-timeout {s} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {s} 1\n")
        return [find_valkey_server(), str(config), "--sentinel"]

    @property
    def url(self) -> str:
        return f"redis+sentinel://{self.host}:{self.port}/{self.service}/0"


class SentinelGroup:
    """A primary, its replicas and the Sentinels that fail over to one of them when the primary dies."""

    def __init__(self, data_dir: Path, *, replicas: int = 1, sentinels: int = 3, service: str = "mymaster",
                 down_after_ms: int = 500, failover_timeout_ms: int = 3000) -> None:
        self.service = service
        self.primary = ValkeyServer(data_dir / "primary")
        self.replicas = [ValkeyServer(data_dir / f"replica{i}", replica_of=self.primary) for i in range(replicas)]
        self.sentinels = [
            ValkeySentinel(data_dir / f"sentinel{i}", self.primary, service=service, quorum=sentinels // 2 + 1,
                           down_after_ms=down_after_ms, failover_timeout_ms=failover_timeout_ms)
            for i in range(sentinels)]

    @property
    def url(self) -> str:
        """``REDIS_URL`` for this group: every Sentinel, then the primary's service name and the database."""
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self, timeout: float = 20.0) -> None:
        self.primary.start()
        for replica in self.replicas:
            replica.start()
        _until("replicas in sync", lambda: all(
            admin(r, "INFO", "replication").get("master_link_status") == "up" for r in self.replicas), timeout)
        for sentinel in self.sentinels:
            sentinel.start()
        want_others, want_replicas = len(self.sentinels) - 1, len(self.replicas)

        def sentinels_agree() -> bool:
            for sentinel in self.sentinels:
                state = admin(sentinel, "SENTINEL", "MASTER", self.service)
                info = dict(zip(state[::2], state[1::2], strict=True))
                if int(info["num-other-sentinels"]) < want_others or int(info["num-slaves"]) < want_replicas:
                    return False
            return True

        _until("Sentinels found each other and the replicas", sentinels_agree, timeout)

    def primary_address(self) -> tuple[str, int]:
        """Where the Sentinels say the primary is now."""
        host, port = admin(self.sentinels[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return str(host), int(port)

    def wait_for_failover(self, away_from: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Block until every Sentinel names a primary other than ``away_from``; returns the new one."""
        def moved() -> bool:
            return all(tuple(admin(s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service) or ())
                       not in ((), (away_from[0], str(away_from[1]))) for s in self.sentinels)

        _until("the Sentinels promoted a replica", moved, timeout)
        return self.primary_address()

    def stop(self) -> None:
        for server in [*self.sentinels, *self.replicas, self.primary]:
            server.kill()


class ValkeyCluster:
    """A Valkey cluster of primaries only, its slots split evenly (``CLUSTER ADDSLOTSRANGE`` / ``MEET``)."""

    def __init__(self, data_dir: Path, *, primaries: int = 3) -> None:
        self.nodes = [ValkeyServer(data_dir / f"node{i}", cluster=True, appendonly=False) for i in range(primaries)]

    @property
    def url(self) -> str:
        """``REDIS_URL`` for this cluster: every node (any one would do; the client learns the rest)."""
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            node.start()
        share = CLUSTER_SLOTS // len(self.nodes)
        for i, node in enumerate(self.nodes):
            last = CLUSTER_SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * share - 1
            admin(node, "CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for node in self.nodes[1:]:
            admin(self.nodes[0], "CLUSTER", "MEET", node.host, node.port, node.cluster_port)

        def healthy(node: ValkeyServer) -> bool:
            info = admin(node, "CLUSTER INFO")
            return bool(info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == len(self.nodes))

        _until("the cluster is ok on every node", lambda: all(healthy(n) for n in self.nodes), timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
