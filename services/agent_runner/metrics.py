"""The agent-runner's Prometheus metrics (names and help from ``shared.metrics.catalogue``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from proto.errors import ErrorCode
from services.agent_runner.pool import RunPool
from shared.metrics import catalogue as names


class RunnerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = names.RUN_REQUESTS.create(r)
        self.runs = names.RUNS.create(r)
        self.failures = names.RUN_FAILURES.create(r)
        self.active = names.RUNS_ACTIVE.create(r)
        self.queued = names.RUNS_QUEUED.create(r)
        self.pool_size = names.RUN_POOL_SIZE.create(r)
        self.queue_size = names.RUN_QUEUE_SIZE.create(r)
        self.duration = names.RUN_DURATION.create(r)
        self.first_token = names.RUN_TTFT.create(r)
        self.inter_token = names.RUN_INTER_TOKEN.create(r)
        self.events = names.RUN_EVENTS.create(r)
        self.tokens = names.RUN_TOKENS.create(r)
        self.tool_calls = names.TOOL_CALLS.create(r)
        self.tool_duration = names.TOOL_DURATION.create(r)
        self.handoffs = names.HANDOFFS.create(r)
        self.cancels = names.RUN_CANCELS.create(r)
        self.reaped = names.RUNS_REAPED.create(r)
        self.handovers = names.RUN_HANDOVERS.create(r)
        self.restarts = names.RUN_RESTARTS.create(r)
        self.retries = names.PROVIDER_RETRIES.create(r)
        # Known label values start at zero, so dashboards and alerts see the series before the first run.
        for outcome in ("completed", "failed", "cancelled"):
            self.runs.labels(outcome=outcome)
        for code in ErrorCode:
            self.failures.labels(code=code.value)
        for kind in ("prompt", "completion"):
            self.tokens.labels(kind=kind)
        for outcome in ("ok", "error"):
            self.tool_calls.labels(outcome=outcome)
        self.requests.labels(outcome="accepted")
        for outcome in ("handed_over", "kept"):
            self.handovers.labels(outcome=outcome)
        for outcome in ("restarted", "exhausted", "timed_out"):
            self.restarts.labels(outcome=outcome)
        # Counted here too, for the seed's stats (AsyncRunnerStats).
        self.completed = 0
        self.failed = 0
        self.cancelled = 0

    def watch(self, pool: RunPool) -> None:
        """The pool's sizes, and its slots and places in use (read at each scrape)."""
        self.pool_size.set(pool.pool_size)
        self.queue_size.set(pool.queue_size)
        self.active.set_function(lambda: float(pool.active))
        self.queued.set_function(lambda: float(pool.queued))
