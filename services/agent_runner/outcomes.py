"""Counting how a run ended on this runner: the run metrics and the run span's outcome."""

from __future__ import annotations

import time
from typing import Any

from proto.runs import RunCancelled, RunCompleted, RunEvent, RunFailed
from services.agent_runner.engine import RunJob
from services.agent_runner.metrics import RunnerMetrics
from services.agent_runner.pool import RunPool
from shared.tracing import genai


def count_end(m: RunnerMetrics, job: RunJob, terminal: RunEvent | None) -> None:
    if job.handed_over or job.parked:
        return  # counted by the runner that finishes it
    m.events.inc(job.writer.seq)
    m.duration.observe(time.monotonic() - job.accepted_at)
    match terminal:
        case RunCompleted(usage=usage):
            genai.record_outcome(job.span, "completed", input_tokens=usage.prompt_tokens,
                                 output_tokens=usage.completion_tokens)
            m.runs.labels(outcome="completed").inc()
            m.completed += 1
            m.tokens.labels(kind="prompt").inc(usage.prompt_tokens)
            m.tokens.labels(kind="completion").inc(usage.completion_tokens)
        case RunFailed(code=code):
            genai.record_outcome(job.span, "failed", code=code.value)
            m.runs.labels(outcome="failed").inc()
            m.failures.labels(code=code.value).inc()
            m.failed += 1
        case RunCancelled():
            genai.record_outcome(job.span, "cancelled")
            m.runs.labels(outcome="cancelled").inc()
            m.cancelled += 1


def runner_stats(m: RunnerMetrics, pool: RunPool, *, running: bool) -> dict[str, Any]:
    """The seed's ``AsyncRunner`` figures for ``raaf.stats()``."""
    return {"async_runner": {
        "running": running, "active_runs": pool.active, "queued": pool.queued,
        "completed": m.completed, "failed": m.failed, "cancelled": m.cancelled,
        "pool_size": pool.pool_size, "queue_size": pool.queue_size}}
