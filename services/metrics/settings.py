"""Metrics-service settings from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.service.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class MetricsSettings:
    runtime: RuntimeSettings
    discovery_interval: float = 5.0  # seconds between $SRV.PING rounds (and background health checks)
    gather_timeout: float = 1.0  # how long a /stats gather waits for instances that have not answered
    gather_grace: float = 0.05  # how long it still listens once every known instance answered (unknown reporters)
    health_timeout: float = 1.0  # per-instance /readyz timeout
    health_concurrency: int = 64  # /readyz requests in flight at once
    instance_ttl: float = 30.0  # an instance not seen for this long is forgotten
    max_instances: int = 1000  # instances tracked and answers gathered at most
    observe_events: bool = True  # count messages and bytes on the application event subjects
    observe_jobs: bool = True  # fold job lifecycle events into the raaf_cluster_job_* metrics
    max_job_series: int = 1000  # (queue, job_type) pairs labelled at most; further pairs count as "_other"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MetricsSettings:
        env = Env(environ)
        return cls(
            runtime=RuntimeSettings.from_env(env, default_http_port=9100),
            discovery_interval=env.number("METRICS_DISCOVERY_INTERVAL", cls.discovery_interval, min=0.1),
            gather_timeout=env.number("METRICS_GATHER_TIMEOUT", cls.gather_timeout, min=0.01, max=60),
            gather_grace=env.number("METRICS_GATHER_GRACE", cls.gather_grace, min=0, max=60),
            health_timeout=env.number("METRICS_HEALTH_TIMEOUT", cls.health_timeout, min=0.01, max=60),
            health_concurrency=env.integer("METRICS_HEALTH_CONCURRENCY", cls.health_concurrency, min=1,
                                           max=10_000),
            instance_ttl=env.number("METRICS_INSTANCE_TTL", cls.instance_ttl, min=0.1),
            max_instances=env.integer("METRICS_MAX_INSTANCES", cls.max_instances, min=1, max=100_000),
            observe_events=env.boolean("METRICS_OBSERVE_EVENTS", cls.observe_events),
            observe_jobs=env.boolean("METRICS_OBSERVE_JOBS", cls.observe_jobs),
            max_job_series=env.integer("METRICS_MAX_JOB_SERIES", cls.max_job_series, min=1, max=100_000),
        )
