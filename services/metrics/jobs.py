"""Cluster-wide job figures, folded from the job lifecycle events every queue's workers and schedulers publish."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from proto.jobs import (
    JobCancelled,
    JobDead,
    JobEnqueued,
    JobFailed,
    JobLifecycleEvent,
    JobRetried,
    JobStarted,
    JobSucceeded,
    Priority,
)
from shared.metrics import catalogue as names

log = logging.getLogger("raaf.metrics")

RETRY_REASONS = ("error", "lease_expired", "dead_letter_retry")
# The label value every (queue, job_type) pair past ``max_series`` is counted under, and unknown retry reasons.
OTHER = "_other"


class JobLifecycleMetrics:
    """``raaf_cluster_job_*``: one update per lifecycle event, labelled by queue and job type.

    Labels come off the wire, so the (queue, job_type) pairs are bounded by ``max_series``; events of further
    pairs are counted under ``_other``. A pair's counters start at zero when it is first seen (its enqueue or
    first start), so ``increase()`` sees the first failure or dead letter too.
    """

    def __init__(self, registry: CollectorRegistry, *, max_series: int) -> None:
        self.max_series = max_series
        self.enqueues = names.CLUSTER_JOB_ENQUEUES.create(registry)
        self.pickup = names.CLUSTER_JOB_PICKUP.create(registry)
        self.duration = names.CLUSTER_JOB_DURATION.create(registry)
        self.successes = names.CLUSTER_JOB_SUCCESSES.create(registry)
        self.failures = names.CLUSTER_JOB_FAILURES.create(registry)
        self.retries = names.CLUSTER_JOB_RETRIES.create(registry)
        self.dead_letters = names.CLUSTER_JOB_DEAD_LETTERS.create(registry)
        self.cancellations = names.CLUSTER_JOB_CANCELLATIONS.create(registry)
        self.undecodable = names.CLUSTER_JOB_EVENTS_UNDECODABLE.create(registry)
        self._pairs: set[tuple[str, str]] = set()
        self.folded = 0  # events counted under _other because max_series pairs were already tracked

    def observe(self, event: JobLifecycleEvent) -> None:
        queue, job_type = self._pair(event.queue, event.job_type)
        match event:
            case JobEnqueued(priority=priority):
                self.enqueues.labels(queue, job_type, priority.value).inc()
            case JobStarted(waited=waited):
                self.pickup.labels(queue, job_type).observe(max(0.0, waited))
            case JobSucceeded(duration=duration):
                self.successes.labels(queue, job_type).inc()
                self.duration.labels(queue, job_type).observe(max(0.0, duration))
            case JobFailed(duration=duration):
                self.failures.labels(queue, job_type).inc()
                if duration is not None:
                    self.duration.labels(queue, job_type).observe(max(0.0, duration))
            case JobRetried(reason=reason):
                self.retries.labels(queue, job_type, reason if reason in RETRY_REASONS else OTHER).inc()
            case JobDead():
                self.dead_letters.labels(queue, job_type).inc()
            case JobCancelled():
                self.cancellations.labels(queue, job_type).inc()

    def _pair(self, queue: str, job_type: str) -> tuple[str, str]:
        pair = (queue, job_type)
        if pair in self._pairs:
            return pair
        if len(self._pairs) >= self.max_series:
            self.folded += 1
            if self.folded == 1:
                log.warning("job metrics track %d (queue, job_type) pairs (METRICS_MAX_JOB_SERIES); further "
                            "pairs are counted as %s", self.max_series, OTHER)
            pair = (OTHER, OTHER)
            if pair in self._pairs:
                return pair
        self._pairs.add(pair)
        self._start_at_zero(*pair)
        return pair

    def _start_at_zero(self, queue: str, job_type: str) -> None:
        for priority in Priority:
            self.enqueues.labels(queue, job_type, priority.value)
        for reason in RETRY_REASONS:
            self.retries.labels(queue, job_type, reason)
        for counter in (self.successes, self.failures, self.dead_letters, self.cancellations):
            counter.labels(queue, job_type)
