"""The agent-runner's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_DURATION = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RunnerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter("raaf_run_requests_total", "Run requests received, by outcome (accepted or the "
                                "error code).", ["outcome"], registry=r)
        self.finished = Counter("raaf_runs_finished_total", "Runs that ended, by outcome (completed, failed, "
                                "cancelled) and error code.", ["outcome", "code"], registry=r)
        self.active = Gauge("raaf_runs_active", "Runs executing now.", registry=r)
        self.queued = Gauge("raaf_runs_queued", "Accepted runs waiting for a pool slot.", registry=r)
        self.pool_size = Gauge("raaf_run_pool_size", "Runs that may execute at once (ASYNC_POOL_SIZE).", registry=r)
        self.queue_size = Gauge("raaf_run_queue_size", "Runs that may wait (ASYNC_QUEUE_SIZE).", registry=r)
        self.duration = Histogram("raaf_run_duration_seconds", "From acceptance to the terminal event.",
                                  buckets=_DURATION, registry=r)
        self.first_token = Histogram("raaf_run_time_to_first_token_seconds", "From acceptance to the first "
                                     "text or tool-call delta.", buckets=_LATENCY, registry=r)
        self.events = Counter("raaf_run_events_total", "Run events stored.", registry=r)
        self.tokens = Counter("raaf_run_tokens_total", "Model tokens used, by kind (prompt, completion).",
                              ["kind"], registry=r)
        self.tool_calls = Counter("raaf_tool_calls_total", "Tool calls, by tool and outcome.", ["tool", "outcome"],
                                  registry=r)
        self.tool_duration = Histogram("raaf_tool_duration_seconds", "Tool call durations.", buckets=_LATENCY,
                                       registry=r)
        self.cancels = Counter("raaf_run_cancels_total", "Cancel requests for runs this runner owned.", registry=r)
        self.reaped = Counter("raaf_runs_reaped_total", "Orphaned runs (their runner died) this runner failed.",
                              registry=r)
