"""The jobs engine's variables (the seed's ``BACKGROUND_*`` and ``JOBS_*``), shared by workers and the scheduler."""

from __future__ import annotations

from shared.jobs.model import JobLimits
from shared.service.settings import Env, Setting

WEEK = 7 * 86_400.0

WORKERS = Setting("BACKGROUND_WORKERS", 10, min=1, max=100_000)  # jobs run at once by one process
RETRY_COUNT = Setting("BACKGROUND_RETRY_COUNT", 3, min=0, max=100)
RETRY_DELAY = Setting("BACKGROUND_RETRY_DELAY", 5.0, min=0, max=WEEK)  # first retry after this, then backoff
POOL_TIMEOUT = Setting("BACKGROUND_POOL_TIMEOUT", 10.0, min=0.01, max=600)  # wait for a free Redis connection
RETRY_BACKOFF = Setting("JOBS_RETRY_BACKOFF", 2.0, min=1, max=10)
RETRY_MAX_DELAY = Setting("JOBS_RETRY_MAX_DELAY", 300.0, min=0, max=WEEK)
LEASE_SECONDS = Setting("JOBS_LEASE_SECONDS", 10.0, min=0.1, max=3600)
LIFECYCLE_EVENTS = Setting("JOBS_LIFECYCLE_EVENTS", True)


def limits_from_env(env: Env) -> JobLimits:
    """The ``JOBS_*`` limits, shared by workers and the scheduler service."""
    d = JobLimits()
    return JobLimits(
        max_payload_bytes=env.integer("JOBS_MAX_PAYLOAD_BYTES", d.max_payload_bytes, min=64, max=512 * 1024 * 1024),
        max_queue_depth=env.integer("JOBS_MAX_QUEUE_DEPTH", d.max_queue_depth, min=0),
        max_scheduled=env.integer("JOBS_MAX_SCHEDULED", d.max_scheduled, min=0),
        dead_letter_max=env.integer("JOBS_DEAD_LETTER_MAX", d.dead_letter_max, min=0),
        result_ttl=env.number("JOBS_RESULT_TTL", d.result_ttl, min=0),
        require_known_type=env.boolean("JOBS_REQUIRE_KNOWN_TYPE", d.require_known_type),
        wait_replicas=env.integer("REDIS_WAIT_REPLICAS", d.wait_replicas, min=0, max=100),
        wait_timeout=env.number("REDIS_WAIT_TIMEOUT", d.wait_timeout, min=0.001, max=60),
    )
