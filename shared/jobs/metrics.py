"""Prometheus metrics of job workers and of the scheduler's queue maintenance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics.specs import JOB_DURATION_BUCKETS as DURATION_BUCKETS
from shared.metrics.specs import JOB_PICKUP_BUCKETS as PICKUP_BUCKETS


class WorkerMetrics:
    """What a worker process measures; job types are label values (they are few: the registered handlers)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "raaf_jobs_processed_total", "Job attempts finished by this worker, by outcome "
            "(succeeded, failed, cancelled, lost = lease lost, handed_back = returned on stop).",
            ["job_type", "outcome"], registry=registry)
        self.duration = Histogram("raaf_job_duration_seconds", "Handler run time per attempt.", ["job_type"],
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.pickup = Histogram("raaf_job_pickup_seconds", "From a job being due to a worker claiming it "
                                "(the Redis clock on both ends).", ["job_type"], buckets=PICKUP_BUCKETS,
                                registry=registry)
        self.in_flight = Gauge("raaf_jobs_in_flight", "Jobs this worker holds under a lease.", registry=registry)
        self.claims = Counter("raaf_job_claims_total", "Claim calls to Redis (each may claim many jobs).",
                              registry=registry)
        self.store_errors = Counter("raaf_job_store_errors_total", "Redis calls that failed (retried).",
                                    registry=registry)


class SchedulerMetrics:
    """What the scheduler's queue maintenance measures, per named queue."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.enqueued = Counter("raaf_jobs_enqueued_total", "Jobs written by this scheduler (NATS/HTTP requests "
                                "and recurring schedules), by priority.", ["queue", "priority"], registry=registry)
        self.duplicates = Counter("raaf_jobs_duplicate_total", "Enqueues whose job id existed (nothing written).",
                                  ["queue"], registry=registry)
        self.rejected = Counter("raaf_jobs_rejected_total", "Requests refused with a typed error, by code.",
                                ["code"], registry=registry)
        self.promoted = Counter("raaf_jobs_promoted_total", "Delayed jobs moved to their queue when due.",
                                ["queue"], registry=registry)
        self.lease_expired = Counter("raaf_jobs_lease_expired_total", "Jobs whose worker stopped renewing, by what "
                                     "happened to them (requeued, dead, cancelled).", ["queue", "outcome"],
                                     registry=registry)
        self.recurring_fired = Counter("raaf_jobs_recurring_fired_total", "Recurring schedules fired.", ["queue"],
                                       registry=registry)
        self.queue_length = Gauge("raaf_jobs_queue_length", "Ready jobs by priority.", ["queue", "priority"],
                                  registry=registry)
        self.scheduled = Gauge("raaf_jobs_scheduled", "Delayed and backing-off jobs.", ["queue"], registry=registry)
        self.running = Gauge("raaf_jobs_running", "Jobs held under a lease.", ["queue"], registry=registry)
        self.dead = Gauge("raaf_jobs_dead", "Jobs in the dead-letter store.", ["queue"], registry=registry)
        self.tick = Histogram("raaf_jobs_tick_seconds", "One maintenance pass over a queue.",
                              buckets=DURATION_BUCKETS, registry=registry)
        self.lateness = Histogram("raaf_jobs_promote_lateness_seconds", "How late delayed jobs were moved to their "
                                  "queue (first job of each pass).", buckets=PICKUP_BUCKETS, registry=registry)
        self.request = Histogram("raaf_jobs_request_seconds", "NATS request handling time, by request type.",
                                 ["request"], buckets=PICKUP_BUCKETS, registry=registry)
        self.inflight_requests = Gauge("raaf_jobs_inflight_requests", "NATS requests being handled.",
                                       registry=registry)
        self.store_errors = Counter("raaf_jobs_store_errors_total", "Redis calls that failed (retried).",
                                    registry=registry)
