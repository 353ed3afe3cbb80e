"""Scheduler settings from the environment (the seed's ``BACKGROUND_*`` names, and ``JOBS_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.errors import SettingsError
from shared.jobs.model import JobLimits, check_queue_name
from shared.jobs.processor import limits_from_env
from shared.service.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings:
    runtime: RuntimeSettings
    workers: int = 10  # BACKGROUND_WORKERS: run_agent jobs this service runs at once
    retry_count: int = 3  # BACKGROUND_RETRY_COUNT: default retries of jobs enqueued over NATS/HTTP
    retry_delay: float = 5.0  # BACKGROUND_RETRY_DELAY: first retry after this many seconds, then backoff
    retry_backoff: float = 2.0  # JOBS_RETRY_BACKOFF
    retry_max_delay: float = 300.0  # JOBS_RETRY_MAX_DELAY
    queues: tuple[str, ...] = ("jobs",)  # JOBS_QUEUES: the named queues this scheduler maintains and serves
    agent_jobs: bool = True  # JOBS_AGENT_JOBS: run the built-in run_agent jobs here (when the runs feature is in)
    lease_seconds: float = 10.0  # JOBS_LEASE_SECONDS: the lease of the jobs this service runs itself
    tick_interval: float = 0.05  # JOBS_TICK_INTERVAL: longest sleep between maintenance passes
    nudge_interval: float = 0.5  # JOBS_NUDGE_INTERVAL: re-nudge idle workers of types with waiting jobs
    maintenance_batch: int = 1000  # JOBS_MAINTENANCE_BATCH: jobs moved per script call
    max_inflight_requests: int = 1000  # JOBS_MAX_INFLIGHT_REQUESTS: NATS requests handled at once
    lifecycle_events: bool = True  # JOBS_LIFECYCLE_EVENTS
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
                raise SettingsError("JOBS_QUEUES", ",".join(queues), str(exc)) from None
        runtime = RuntimeSettings.from_env(env, default_http_port=9103)
        if runtime.redis_pool_size < len(queues) + 2:
            raise SettingsError("REDIS_POOL_SIZE", str(runtime.redis_pool_size),
                                f"the scheduler needs at least {len(queues) + 2} (one per queue, gauges, requests)")
        return cls(
            runtime=runtime,
            workers=env.integer("BACKGROUND_WORKERS", cls.workers, min=1, max=100_000),
            retry_count=env.integer("BACKGROUND_RETRY_COUNT", cls.retry_count, min=0, max=100),
            retry_delay=env.number("BACKGROUND_RETRY_DELAY", cls.retry_delay, min=0, max=7 * 86400),
            retry_backoff=env.number("JOBS_RETRY_BACKOFF", cls.retry_backoff, min=1, max=10),
            retry_max_delay=env.number("JOBS_RETRY_MAX_DELAY", cls.retry_max_delay, min=0, max=7 * 86400),
            queues=queues,
            agent_jobs=env.boolean("JOBS_AGENT_JOBS", cls.agent_jobs),
            lease_seconds=env.number("JOBS_LEASE_SECONDS", cls.lease_seconds, min=0.1, max=3600),
            tick_interval=env.number("JOBS_TICK_INTERVAL", cls.tick_interval, min=0.001, max=60),
            nudge_interval=env.number("JOBS_NUDGE_INTERVAL", cls.nudge_interval, min=0.01, max=3600),
            maintenance_batch=env.integer("JOBS_MAINTENANCE_BATCH", cls.maintenance_batch, min=1, max=100_000),
            max_inflight_requests=env.integer("JOBS_MAX_INFLIGHT_REQUESTS", cls.max_inflight_requests, min=1),
            lifecycle_events=env.boolean("JOBS_LIFECYCLE_EVENTS", cls.lifecycle_events),
            stats_interval=env.number("JOBS_STATS_INTERVAL", cls.stats_interval, min=0.05, max=3600),
            limits=limits_from_env(env),
        )
