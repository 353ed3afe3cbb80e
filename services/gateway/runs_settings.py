"""Settings of the gateway's run endpoints (REST, SSE, WebSocket, OpenAI-compatible) from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.service.settings import Env


@dataclass(frozen=True, kw_only=True)
class RunRouteSettings:
    max_body_bytes: int = 1024 * 1024  # HTTP request bodies of run endpoints; the runner has its own limit
    request_timeout: float = 5.0  # waiting for a runner to accept, cancel or list agents
    idle_check: float = 2.0  # a quiet run is re-checked (store, orphaned?) this often; SSE keepalives too
    max_streams_per_connection: int = 32  # runs one WebSocket connection may follow at once
    runs_per_minute: int = 60  # runs one identity may start per minute on one gateway; 0 = unlimited
    orphan_grace: float = 6.0  # no runner alive this long: a follower ends a run a runner could have restarted

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunRouteSettings:
        env = Env(environ)
        return cls(
            max_body_bytes=env.integer("GATEWAY_RUN_MAX_BODY_BYTES", cls.max_body_bytes, min=256,
                                       max=64 * 1024**2),
            request_timeout=env.number("GATEWAY_RUN_REQUEST_TIMEOUT", cls.request_timeout, min=0.1, max=300),
            idle_check=env.number("GATEWAY_RUN_IDLE_CHECK", cls.idle_check, min=0.05, max=300),
            max_streams_per_connection=env.integer("GATEWAY_RUN_MAX_STREAMS_PER_CONNECTION",
                                                   cls.max_streams_per_connection, min=1, max=10_000),
            runs_per_minute=env.integer("GATEWAY_RUNS_PER_MINUTE", cls.runs_per_minute, min=0, max=1_000_000),
            orphan_grace=env.number("GATEWAY_RUN_ORPHAN_GRACE", cls.orphan_grace, min=0, max=3600),
        )
