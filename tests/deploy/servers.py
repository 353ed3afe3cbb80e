"""Real nats-server and valkey-server started from a deployment's own command line or config file."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from shared.devstack.servers import ServerProcess


class ConfiguredServer(ServerProcess):
    """A server run with a given argv (paths and ports already rewritten to local ones), waited on ``port``."""

    def __init__(self, argv: list[str], data_dir: Path, port: int) -> None:
        super().__init__(data_dir, port=port)
        self.argv = argv

    def command(self) -> list[str]:
        return self.argv


def assert_jobs_survive_a_crash(server: ConfiguredServer) -> None:
    """The server keeps AOF on, never evicts, and a write is still there after kill -9 and a restart."""
    client = redis.Redis(port=server.port, decode_responses=True)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    client.set("raaf:job:1", "queued")
    time.sleep(1.5)  # appendfsync everysec
    server.kill()
    server.start()
    assert redis.Redis(port=server.port, decode_responses=True).get("raaf:job:1") == "queued"
