"""Scheduler settings from the environment (the seed's ``BACKGROUND_*`` names)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings:
    runtime: RuntimeSettings
    workers: int = 10
    retry_count: int = 3
    retry_delay: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SchedulerSettings:
        env = Env(environ)
        return cls(
            runtime=RuntimeSettings.from_env(env, default_http_port=9103),
            workers=env.integer("BACKGROUND_WORKERS", cls.workers, min=1),
            retry_count=env.integer("BACKGROUND_RETRY_COUNT", cls.retry_count, min=0),
            retry_delay=env.number("BACKGROUND_RETRY_DELAY", cls.retry_delay, min=0),
        )
