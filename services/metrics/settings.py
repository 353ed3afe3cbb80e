"""Metrics-service settings from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class MetricsSettings:
    runtime: RuntimeSettings
    discovery_interval: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MetricsSettings:
        env = Env(environ)
        return cls(
            runtime=RuntimeSettings.from_env(env, default_http_port=9100),
            discovery_interval=env.number("METRICS_DISCOVERY_INTERVAL", cls.discovery_interval, min=0.1),
        )
