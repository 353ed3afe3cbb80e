"""Scheduler settings from the environment (the seed's ``BACKGROUND_*`` names, and ``JOBS_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.errors import invalid_setting
from shared.jobs.model import JobLimits, check_queue_name
from shared.jobs.settings import (
    LEASE_SECONDS,
    LIFECYCLE_EVENTS,
    RETRY_BACKOFF,
    RETRY_COUNT,
    RETRY_DELAY,
    RETRY_MAX_DELAY,
    WORKERS,
    limits_from_env,
)
from shared.service.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings:
    runtime: RuntimeSettings
    workers: int = WORKERS.default  # BACKGROUND_WORKERS: run_agent jobs this service runs at once
    retry_count: int = RETRY_COUNT.default  # BACKGROUND_RETRY_COUNT: default retries of jobs enqueued over NATS/HTTP
    retry_delay: float = RETRY_DELAY.default  # BACKGROUND_RETRY_DELAY: first retry after this, then backoff
    retry_backoff: float = RETRY_BACKOFF.default  # JOBS_RETRY_BACKOFF
    retry_max_delay: float = RETRY_MAX_DELAY.default  # JOBS_RETRY_MAX_DELAY
    queues: tuple[str, ...] = ("jobs",)  # JOBS_QUEUES: the named queues this scheduler maintains and serves
    agent_jobs: bool = True  # JOBS_AGENT_JOBS: run the built-in run_agent jobs here (when the runs feature is in)
    lease_seconds: float = LEASE_SECONDS.default  # JOBS_LEASE_SECONDS: the lease of the jobs this service runs itself
    tick_interval: float = 0.05  # JOBS_TICK_INTERVAL: longest sleep between maintenance passes
    nudge_interval: float = 0.5  # JOBS_NUDGE_INTERVAL: re-nudge idle workers of types with waiting jobs
    maintenance_batch: int = 1000  # JOBS_MAINTENANCE_BATCH: jobs moved per script call
    max_inflight_requests: int = 1000  # JOBS_MAX_INFLIGHT_REQUESTS: NATS requests handled at once
    lifecycle_events: bool = LIFECYCLE_EVENTS.default  # JOBS_LIFECYCLE_EVENTS
    stats_interval: float = 1.0  # JOBS_STATS_INTERVAL: how often queue gauges are refreshed
    limits: JobLimits = field(default_factory=JobLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SchedulerSettings:
        env = Env(environ)
        queues = env.items("JOBS_QUEUES", cls.queues) or cls.queues
        for queue in queues:
            try:
                check_queue_name(queue)
            except ValueError as exc:
                raise invalid_setting("JOBS_QUEUES", ",".join(queues), str(exc)) from None
        runtime = RuntimeSettings.from_env(env, default_http_port=9103)
        if runtime.redis_pool_size < len(queues) + 2:
            raise invalid_setting("REDIS_POOL_SIZE", str(runtime.redis_pool_size),
                                  f"the scheduler needs at least {len(queues) + 2} (one per queue, gauges, requests)")
        return cls(
            runtime=runtime,
            workers=WORKERS.read(env),
            retry_count=RETRY_COUNT.read(env),
            retry_delay=RETRY_DELAY.read(env),
            retry_backoff=RETRY_BACKOFF.read(env),
            retry_max_delay=RETRY_MAX_DELAY.read(env),
            queues=queues,
            agent_jobs=env.boolean("JOBS_AGENT_JOBS", cls.agent_jobs),
            lease_seconds=LEASE_SECONDS.read(env),
            tick_interval=env.number("JOBS_TICK_INTERVAL", cls.tick_interval, min=0.001, max=60),
            nudge_interval=env.number("JOBS_NUDGE_INTERVAL", cls.nudge_interval, min=0.01, max=3600),
            maintenance_batch=env.integer("JOBS_MAINTENANCE_BATCH", cls.maintenance_batch, min=1, max=100_000),
            max_inflight_requests=env.integer("JOBS_MAX_INFLIGHT_REQUESTS", cls.max_inflight_requests, min=1),
            lifecycle_events=LIFECYCLE_EVENTS.read(env),
            stats_interval=env.number("JOBS_STATS_INTERVAL", cls.stats_interval, min=0.05, max=3600),
            limits=limits_from_env(env),
        )
