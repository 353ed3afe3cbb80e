"""A three-node (or larger) nats-server cluster with JetStream on loopback, whose members can be SIGKILLed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from shared.devstack.servers import NatsServer
from shared.errors import StackError


class NatsCluster:
    """Servers routed to each other under one cluster name; streams created with ``num_replicas=3`` span them."""

    def __init__(self, data_dir: Path, *, size: int = 3, name: str = "raaf") -> None:
        self.servers = [NatsServer(data_dir / f"n{i}", cluster_name=name, server_name=f"{name}-n{i}")
                        for i in range(size)]
        routes = [f"nats://{s.host}:{s.cluster_port}" for s in self.servers]
        for server in self.servers:
            server.routes = [r for r in routes if not r.endswith(f":{server.cluster_port}")]

    @property
    def url(self) -> str:
        """``NATS_URL`` for this cluster: every server, comma-separated."""
        return ",".join(s.url for s in self.servers)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def by_name(self, server_name: str) -> NatsServer:
        return next(s for s in self.servers if s.server_name == server_name)

    def start(self, timeout: float = 30.0) -> None:
        for server in self.servers:
            server.start()
        asyncio.run(self._until_jetstream(timeout))

    async def _until_jetstream(self, timeout: float) -> None:
        """Until JetStream has a meta leader and an R3 stream can be created (and removed) on it."""
        nc = await nats.connect(self.urls)
        try:
            js = nc.jetstream(timeout=2)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await js.add_stream(name="raaf_cluster_probe", subjects=["raaf.cluster.probe"], num_replicas=3)
                    await js.delete_stream("raaf_cluster_probe")
                    return
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                    if time.monotonic() > deadline:
                        raise StackError(f"the NATS cluster has no JetStream leader within {timeout:.0f}s") from None
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    def stop(self) -> None:
        for server in self.servers:
            server.kill()


async def stream_leader(js: JetStreamContext, stream: str) -> str | None:
    """The server name of ``stream``'s current leader, or None while it has none (or cannot be asked)."""
    try:
        info = await js.stream_info(stream)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return None
    return info.cluster.leader if info.cluster is not None else None
