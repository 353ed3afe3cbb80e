"""Agent-runner settings from the environment (the seed's ``ASYNC_*`` / ``STREAMING_*`` names)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class AgentRunnerSettings:
    runtime: RuntimeSettings
    pool_size: int = 20
    queue_size: int = 1000
    timeout: float = 60.0
    openai_api_key: str | None = None
    openai_base_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentRunnerSettings:
        env = Env(environ)
        return cls(
            runtime=RuntimeSettings.from_env(env, default_http_port=9101),
            pool_size=env.integer("ASYNC_POOL_SIZE", cls.pool_size, min=1, max=100_000),
            queue_size=env.integer("ASYNC_QUEUE_SIZE", cls.queue_size, min=0, max=1_000_000),
            timeout=env.number("STREAMING_TIMEOUT", cls.timeout, min=0.1),
            openai_api_key=env.optional("OPENAI_API_KEY"),
            openai_base_url=env.optional("OPENAI_BASE_URL"),
        )
