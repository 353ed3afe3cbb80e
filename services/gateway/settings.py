"""Gateway settings from the environment (the seed's ``WEBSOCKET_*`` names)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    runtime: RuntimeSettings
    host: str = "0.0.0.0"
    port: int = 8080
    max_connections: int = 5000
    heartbeat_interval: float = 30.0
    enable_compression: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        env = Env(environ)
        host = env.string("WEBSOCKET_HOST", cls.host)
        port = env.port("WEBSOCKET_PORT", cls.port)
        # The gateway serves health and metrics on its own port, beside /ws.
        runtime = dataclasses.replace(RuntimeSettings.from_env(env, default_http_port=port),
                                      http_host=host, http_port=port)
        return cls(
            runtime=runtime,
            host=host,
            port=port,
            max_connections=env.integer("WEBSOCKET_MAX_CONNECTIONS", cls.max_connections, min=1),
            heartbeat_interval=env.number("WEBSOCKET_HEARTBEAT_INTERVAL", cls.heartbeat_interval, min=0.1),
            enable_compression=env.boolean("WEBSOCKET_ENABLE_COMPRESSION", cls.enable_compression),
        )
