"""Every Prometheus metric the platform exports, defined once; services create theirs with ``spec.create``.

Dashboards, alert rules and tests are checked against this catalogue, so a metric is renamed here or nowhere.
``exporters`` says whose ``/metrics`` carry it: a service name, ``*`` for every service, ``events`` for the
event-emitter library and ``workers`` for job workers (both exported by whichever process hosts them).
"""

from __future__ import annotations

from shared.metrics.specs import (
    COUNT_BUCKETS,
    FAST_BUCKETS,
    JOB_DURATION_BUCKETS,
    JOB_PICKUP_BUCKETS,
    LATENCY_BUCKETS,
    CounterSpec,
    GaugeSpec,
    HistogramSpec,
    InfoSpec,
    MetricSpec,
)

EVERY = ("*",)
GATEWAY = ("gateway",)
RUNNER = ("agent-runner",)
SCHEDULER = ("scheduler",)
CHAT = ("chat",)
METRICS = ("metrics",)
EVENTS = ("events",)
WORKERS = ("workers",)
SUPERVISOR = ("supervisor",)

# ---- every service (shared.metrics.RuntimeMetrics) -------------------------------------------------------
SERVICE = InfoSpec(name="raaf_service", help="The service this process runs.", exporters=EVERY)
SERVICE_READY = GaugeSpec(name="raaf_service_ready", exporters=EVERY,
                          help="1 while the service is ready (NATS and Redis reachable).")
NATS_CONNECTED = GaugeSpec(name="raaf_nats_connected", help="1 while the NATS connection is up.", exporters=EVERY)
NATS_DISCONNECTS = CounterSpec(name="raaf_nats_disconnects_total", help="NATS disconnections.", exporters=EVERY)
NATS_RECONNECTS = CounterSpec(name="raaf_nats_reconnects_total", help="NATS reconnections.", exporters=EVERY)
NATS_ERRORS = CounterSpec(name="raaf_nats_errors_total", help="Errors reported by the NATS client.",
                          exporters=EVERY)
REDIS_ERRORS = CounterSpec(name="raaf_redis_errors_total", help="Failed Redis calls (job store, health checks).",
                           exporters=EVERY)
PROCESS_START = GaugeSpec(name="raaf_process_start_time_seconds", help="Unix time the service started.",
                          exporters=EVERY)

# ---- a pod's process supervisor (shared.service.supervisor; the agent-runner with RUN_WORKERS > 1) -------
SUPERVISOR_WORKERS = GaugeSpec(name="raaf_supervisor_workers", exporters=SUPERVISOR,
                               help="Worker processes running under the pod's supervisor.")
SUPERVISOR_RESTARTS = CounterSpec(name="raaf_supervisor_worker_restarts_total", exporters=SUPERVISOR,
                                  help="Worker processes the supervisor restarted after they died.")

# ---- gateway: connections, messages, channel fan-out (services/gateway/metrics.py) ---------------------
GATEWAY_CONNECTIONS = GaugeSpec(name="raaf_gateway_connections", exporters=GATEWAY, labels=("transport",),
                                help="Open client connections (transport: ws, sse).")
GATEWAY_CHANNELS = GaugeSpec(name="raaf_gateway_channels", exporters=GATEWAY,
                             help="Channels with subscribers on this gateway.")
GATEWAY_SUBSCRIPTIONS = GaugeSpec(name="raaf_gateway_subscriptions", exporters=GATEWAY,
                                  help="Channel subscriptions on this gateway.")
GATEWAY_PEERS = GaugeSpec(name="raaf_gateway_peers", exporters=GATEWAY,
                          help="Gateway replicas this one knows are alive (itself included).")
GATEWAY_CONNECTIONS_OPENED = CounterSpec(name="raaf_gateway_connections_opened_total", exporters=GATEWAY,
                                         labels=("transport",), help="Connections accepted.")
GATEWAY_CONNECTIONS_REFUSED = CounterSpec(name="raaf_gateway_connections_refused_total", exporters=GATEWAY,
                                          labels=("reason",), help="Connections refused before they started.")
GATEWAY_DISCONNECTS = CounterSpec(name="raaf_gateway_disconnects_total", exporters=GATEWAY, labels=("reason",),
                                  help="Connections ended, by reason.")
GATEWAY_MESSAGES_RECEIVED = CounterSpec(name="raaf_gateway_messages_received_total", exporters=GATEWAY,
                                        help="Client messages received (WebSocket frames with data).")
GATEWAY_MESSAGES_SENT = CounterSpec(name="raaf_gateway_messages_sent_total", exporters=GATEWAY,
                                    help="Messages written to clients.")
GATEWAY_SENT_BYTES = CounterSpec(name="raaf_gateway_sent_bytes_total", exporters=GATEWAY,
                                 help="Bytes written to clients (frames and SSE events).")
GATEWAY_ERRORS_SENT = CounterSpec(name="raaf_gateway_errors_sent_total", exporters=GATEWAY,
                                  help="Typed errors sent to clients.")
GATEWAY_SLOW_CONSUMERS = CounterSpec(name="raaf_gateway_slow_consumers_total", exporters=GATEWAY,
                                     help="Connections cut off because their send queue was full.")
GATEWAY_RATE_LIMITED = CounterSpec(name="raaf_gateway_rate_limited_total", exporters=GATEWAY,
                                   help="Client messages refused by the rate limit.")
GATEWAY_PUBLISHED = CounterSpec(name="raaf_gateway_published_total", exporters=GATEWAY,
                                help="Channel messages published by this gateway's clients.")
GATEWAY_CHANNEL_MESSAGES = CounterSpec(name="raaf_gateway_channel_messages_total", exporters=GATEWAY,
                                       help="Channel messages received from NATS and fanned out.")
GATEWAY_FANOUT = HistogramSpec(name="raaf_gateway_fanout_seconds", exporters=GATEWAY,
                               buckets=(0.0001, 0.00025, *FAST_BUCKETS[:-1]),
                               help="Time to write one channel message from NATS to all of this gateway's subscribers.")
GATEWAY_FANOUT_RECIPIENTS = HistogramSpec(name="raaf_gateway_fanout_recipients", exporters=GATEWAY,
                                          buckets=COUNT_BUCKETS,
                                          help="Subscribers on this gateway one channel message was written to.")
RUN_STREAMS = GaugeSpec(name="raaf_run_streams", exporters=GATEWAY, labels=("transport",),
                        help="Run event streams the gateway is delivering (transport: sse, websocket, openai,"
                        " responses, and the other client dialects).")
RUN_STREAM_EVENTS = CounterSpec(name="raaf_run_stream_events_total", exporters=GATEWAY, labels=("transport",),
                                help="Run events the gateway delivered to clients.")

# ---- agent-runner: runs, tokens, tools, handoffs --------------------------------------------------------
RUNS_ACTIVE = GaugeSpec(name="raaf_runs_active", help="Agent runs in progress.", exporters=RUNNER)
RUNS_QUEUED = GaugeSpec(name="raaf_runs_queued", help="Agent runs accepted and waiting for the pool.",
                        exporters=RUNNER)
RUNS = CounterSpec(name="raaf_runs_total", exporters=RUNNER, labels=("outcome",),
                   help="Finished agent runs by outcome (completed, failed, cancelled).")
RUN_FAILURES = CounterSpec(name="raaf_run_failures_total", exporters=RUNNER, labels=("code",),
                           help="Failed agent runs by wire error code.")
RUN_TTFT = HistogramSpec(name="raaf_run_ttft_seconds", exporters=RUNNER,
                         help="Time from accepting a run to its first text token.")
RUN_INTER_TOKEN = HistogramSpec(name="raaf_run_inter_token_seconds", exporters=RUNNER, buckets=FAST_BUCKETS,
                                help="Time between consecutive text deltas of a run.")
RUN_DURATION = HistogramSpec(name="raaf_run_duration_seconds", exporters=RUNNER, buckets=LATENCY_BUCKETS,
                             help="Time from accepting a run to its end.")
RUN_TOKENS = CounterSpec(name="raaf_run_tokens_total", exporters=RUNNER, labels=("kind",),
                         help="Model tokens used by runs (kind: prompt, completion).")
TOOL_CALLS = CounterSpec(name="raaf_tool_calls_total", exporters=RUNNER, labels=("outcome",),
                         help="Tool calls made by agents (outcome: ok, error).")
HANDOFFS = CounterSpec(name="raaf_handoffs_total", exporters=RUNNER,
                       help="Handoffs from one agent to another inside runs (chat rooms' included).")
RUN_REQUESTS = CounterSpec(name="raaf_run_requests_total", exporters=RUNNER, labels=("outcome",),
                           help="Run requests received (outcome: accepted, or the error code they got).")
RUN_EVENTS = CounterSpec(name="raaf_run_events_total", exporters=RUNNER, help="Run events stored in JetStream.")
RUN_CANCELS = CounterSpec(name="raaf_run_cancels_total", exporters=RUNNER,
                          help="Cancel requests for runs this runner owned.")
RUNS_REAPED = CounterSpec(name="raaf_runs_reaped_total", exporters=RUNNER,
                          help="Orphaned runs (their runner died) this runner ended with a failure.")
RUN_RESTARTS = CounterSpec(name="raaf_run_restarts_total", exporters=RUNNER, labels=("outcome",),
                           help="Orphaned runs (their runner died) this runner took over, by outcome "
                                "(restarted, exhausted, timed_out).")
RUN_HANDOVERS = CounterSpec(name="raaf_run_handovers_total", exporters=RUNNER, labels=("outcome",),
                            help="Queued runs a stopping runner offered to another runner, by outcome "
                                 "(handed_over, kept).")
RUN_POOL_SIZE = GaugeSpec(name="raaf_run_pool_size", exporters=RUNNER,
                          help="Runs that may execute at once (ASYNC_POOL_SIZE).")
RUN_QUEUE_SIZE = GaugeSpec(name="raaf_run_queue_size", exporters=RUNNER,
                           help="Accepted runs that may wait for a slot (ASYNC_QUEUE_SIZE).")
TOOL_DURATION = HistogramSpec(name="raaf_tool_duration_seconds", exporters=RUNNER, buckets=LATENCY_BUCKETS,
                              help="Time tool calls took.")
PROVIDER_RETRIES = CounterSpec(name="raaf_provider_retries_total", exporters=RUNNER,
                               help="Model requests retried after failing before their first token.")

# ---- scheduler service: durable jobs in Redis (shared/jobs/metrics.py) ------------------------------------
JOBS_ENQUEUED = CounterSpec(name="raaf_jobs_enqueued_total", exporters=SCHEDULER, labels=("queue", "priority"),
                            help="Jobs written by this scheduler (NATS/HTTP requests and recurring schedules).")
JOBS_DUPLICATE = CounterSpec(name="raaf_jobs_duplicate_total", exporters=SCHEDULER, labels=("queue",),
                             help="Enqueues whose job id existed (nothing written).")
JOBS_REJECTED = CounterSpec(name="raaf_jobs_rejected_total", exporters=SCHEDULER, labels=("code",),
                            help="Requests refused with a typed error, by code.")
JOBS_PROMOTED = CounterSpec(name="raaf_jobs_promoted_total", exporters=SCHEDULER, labels=("queue",),
                            help="Delayed jobs moved to their queue when due.")
JOBS_LEASE_EXPIRED = CounterSpec(name="raaf_jobs_lease_expired_total", exporters=SCHEDULER,
                                 labels=("queue", "outcome"),
                                 help="Jobs whose worker stopped renewing (outcome: requeued, dead, cancelled).")
JOBS_RECURRING_FIRED = CounterSpec(name="raaf_jobs_recurring_fired_total", exporters=SCHEDULER, labels=("queue",),
                                   help="Recurring schedules fired.")
JOBS_QUEUE_LENGTH = GaugeSpec(name="raaf_jobs_queue_length", exporters=SCHEDULER, labels=("queue", "priority"),
                              help="Ready jobs by priority (read from Redis: the same on every replica).")
JOBS_SCHEDULED = GaugeSpec(name="raaf_jobs_scheduled", exporters=SCHEDULER, labels=("queue",),
                           help="Delayed and backing-off jobs.")
JOBS_RUNNING = GaugeSpec(name="raaf_jobs_running", exporters=SCHEDULER, labels=("queue",),
                         help="Jobs held under a lease.")
JOBS_DEAD = GaugeSpec(name="raaf_jobs_dead", exporters=SCHEDULER, labels=("queue",),
                      help="Jobs in the dead-letter store.")
JOBS_TICK = HistogramSpec(name="raaf_jobs_tick_seconds", exporters=SCHEDULER,
                          help="One maintenance pass over a queue.")
JOBS_PROMOTE_LATENESS = HistogramSpec(name="raaf_jobs_promote_lateness_seconds", exporters=SCHEDULER,
                                      help="How late delayed jobs were moved to their queue.")
JOBS_REQUEST = HistogramSpec(name="raaf_jobs_request_seconds", exporters=SCHEDULER, labels=("request",),
                             buckets=FAST_BUCKETS, help="NATS request handling time, by request type (enqueue, ...).")
JOBS_INFLIGHT_REQUESTS = GaugeSpec(name="raaf_jobs_inflight_requests", exporters=SCHEDULER,
                                   help="NATS requests being handled.")
JOBS_STORE_ERRORS = CounterSpec(name="raaf_jobs_store_errors_total", exporters=SCHEDULER,
                                help="Redis calls of the scheduler that failed (retried).")

# ---- job workers (BackgroundProcessor, in the processes that run jobs) ----------------------------------
JOBS_PROCESSED = CounterSpec(name="raaf_jobs_processed_total", exporters=WORKERS, labels=("job_type", "outcome"),
                             help="Job attempts finished by a worker (outcome: succeeded, failed, cancelled, ...).")
JOB_DURATION = HistogramSpec(name="raaf_job_duration_seconds", exporters=WORKERS, labels=("job_type",),
                             help="Handler run time per attempt.")
JOB_PICKUP = HistogramSpec(name="raaf_job_pickup_seconds", exporters=WORKERS, labels=("job_type",),
                           help="From a job being due to a worker claiming it.")
JOBS_IN_FLIGHT = GaugeSpec(name="raaf_jobs_in_flight", exporters=WORKERS, help="Jobs a worker holds under a lease.")
JOB_CLAIMS = CounterSpec(name="raaf_job_claims_total", exporters=WORKERS,
                         help="Claim calls to Redis (each may claim many jobs).")
JOB_STORE_ERRORS = CounterSpec(name="raaf_job_store_errors_total", exporters=WORKERS,
                               help="Redis calls of a worker that failed (retried).")

# ---- chat ------------------------------------------------------------------------------------------------
CHAT_ROOMS = GaugeSpec(name="raaf_chat_rooms", help="Chat rooms that exist.", exporters=CHAT)
CHAT_PARTICIPANTS = GaugeSpec(name="raaf_chat_participants", help="Participants across all chat rooms.",
                              exporters=CHAT)
CHAT_MESSAGES = CounterSpec(name="raaf_chat_messages_total", help="Chat messages posted.", exporters=CHAT)
CHAT_SESSIONS = GaugeSpec(name="raaf_chat_sessions", help="Client sessions joined across all chat rooms.",
                          exporters=CHAT)
CHAT_ACTIVE_ANSWERS = GaugeSpec(name="raaf_chat_active_answers", exporters=CHAT,
                                help="Agent answers being streamed across all chat rooms.")
CHAT_QUEUED_MESSAGES = GaugeSpec(name="raaf_chat_queued_messages", exporters=CHAT,
                                 help="Chat messages waiting for an agent's answer.")
CHAT_TYPING = GaugeSpec(name="raaf_chat_typing", help="Typing indicators on now.", exporters=CHAT)
CHAT_COMMANDS = CounterSpec(name="raaf_chat_commands_total", exporters=CHAT, labels=("command", "outcome"),
                            help="Chat commands handled, by command and outcome ('ok' or the error code).")
CHAT_COMMAND_DURATION = HistogramSpec(name="raaf_chat_command_duration_seconds", exporters=CHAT,
                                      labels=("command",), buckets=FAST_BUCKETS,
                                      help="Time to handle a chat command.")
CHAT_COMMANDS_IN_FLIGHT = GaugeSpec(name="raaf_chat_commands_in_flight", exporters=CHAT,
                                    help="Chat commands being handled now.")
CHAT_ANSWERS = CounterSpec(name="raaf_chat_answers_total", exporters=CHAT, labels=("status",),
                           help="Agent answers relayed into rooms to their end (completed, failed, cancelled).")
CHAT_ANSWER_DURATION = HistogramSpec(name="raaf_chat_answer_duration_seconds", exporters=CHAT,
                                     help="Time from an answer's start in a room to its end.")
CHAT_ANSWER_FIRST_DELTA = HistogramSpec(name="raaf_chat_answer_first_delta_seconds", exporters=CHAT,
                                        help="Time from relaying an answer to its first text delta in the room.")
CHAT_HANDOFFS = CounterSpec(name="raaf_chat_handoffs_total", exporters=CHAT, labels=("by",),
                            help="Rooms whose current agent changed (by: agent, the answering agent handed off; "
                                 "user, a handoff command).")
CHAT_WRITE_CONFLICTS = CounterSpec(name="raaf_chat_write_conflicts_total", exporters=CHAT,
                                   help="Room appends refused because another replica wrote first (retried).")
CHAT_TYPING_EXPIRED = CounterSpec(name="raaf_chat_typing_expired_total", exporters=CHAT,
                                  help="Typing indicators that expired without a stop.")
CHAT_SESSIONS_REAPED = CounterSpec(name="raaf_chat_sessions_reaped_total", exporters=CHAT,
                                   help="Sessions of vanished gateways taken out of their rooms.")

# ---- event emitter (shared/events/metrics.py, in every process that hosts an EventEmitter) ------------------
EVENTS_EMITTED = CounterSpec(name="raaf_events_emitted_total", exporters=EVENTS,
                             help="Events published by EventEmitter.emit.")
EVENTS_RECEIVED = CounterSpec(name="raaf_events_received_total", exporters=EVENTS,
                              help="Events that arrived at listener subscriptions.")
EVENT_DELIVERIES = CounterSpec(name="raaf_event_deliveries_total", exporters=EVENTS,
                               help="Listener calls that returned normally.")
EVENT_LISTENER_ERRORS = CounterSpec(name="raaf_event_listener_errors_total", exporters=EVENTS,
                                    help="Listener calls (or filter/map functions) that raised.")
EVENTS_DROPPED = CounterSpec(name="raaf_events_dropped_total", exporters=EVENTS,
                             help="Events dropped because a pattern's buffer was full (slow listeners).")
EVENT_DUPLICATES = CounterSpec(name="raaf_event_duplicates_total", exporters=EVENTS,
                               help="Confirmed emits of an id JetStream had already stored.")
EVENT_EMIT_FAILURES = CounterSpec(name="raaf_event_emit_failures_total", exporters=EVENTS,
                                  help="Emits that failed (not connected, not confirmed, ...).")
EVENT_PUBLISH_RETRIES = CounterSpec(name="raaf_event_publish_retries_total", exporters=EVENTS,
                                    help="Confirmed emits published again (same id) for want of an ack.")
EVENT_PUBLISH_ACK = HistogramSpec(name="raaf_event_publish_ack_seconds", exporters=EVENTS, buckets=FAST_BUCKETS,
                                  help="Seconds from a confirmed emit to JetStream's acknowledgement.")
EVENT_LISTENERS = GaugeSpec(name="raaf_event_listeners", exporters=EVENTS, help="Registered listeners.")
EVENT_PATTERNS = GaugeSpec(name="raaf_event_patterns", exporters=EVENTS, help="Distinct listener patterns.")

# ---- metrics service: the cluster as seen from NATS ------------------------------------------------------
CLUSTER_INSTANCES = GaugeSpec(name="raaf_cluster_instances", exporters=METRICS, labels=("service",),
                              help="Service instances known to the metrics service.")
CLUSTER_INSTANCES_READY = GaugeSpec(name="raaf_cluster_instances_ready", exporters=METRICS, labels=("service",),
                                    help="Service instances whose /readyz passed at the last health check.")
STATS_GATHER = HistogramSpec(name="raaf_stats_gather_seconds", exporters=METRICS, buckets=FAST_BUCKETS,
                             help="Time to gather statistics from every instance.")
STATS_UNANSWERED = CounterSpec(name="raaf_stats_unanswered_total", exporters=METRICS,
                               help="Known instances that did not answer a statistics request in time.")
EVENT_BUS_MESSAGES = CounterSpec(name="raaf_event_bus_messages_total", exporters=METRICS,
                                 help="Messages published on the application event subjects.")
EVENT_BUS_BYTES = CounterSpec(name="raaf_event_bus_bytes_total", exporters=METRICS,
                              help="Payload bytes published on the application event subjects.")

# ---- metrics service: every queue's jobs, folded from the job lifecycle events (services/metrics/jobs.py) --
# The workers' own raaf_job_* histograms cover one process each and reach Prometheus only where that process
# serves /metrics; these cover every worker and queue that publishes lifecycle events (JOBS_LIFECYCLE_EVENTS).
JOB_LABELS = ("queue", "job_type")
CLUSTER_JOB_ENQUEUES = CounterSpec(name="raaf_cluster_job_enqueues_total", exporters=METRICS,
                                   labels=(*JOB_LABELS, "priority"),
                                   help="Jobs enqueued anywhere in the cluster (scheduler or library), by priority.")
CLUSTER_JOB_PICKUP = HistogramSpec(name="raaf_cluster_job_pickup_seconds", exporters=METRICS, labels=JOB_LABELS,
                                   buckets=JOB_PICKUP_BUCKETS,
                                   help="From a job being due to a worker claiming it, across every worker.")
CLUSTER_JOB_DURATION = HistogramSpec(name="raaf_cluster_job_duration_seconds", exporters=METRICS,
                                     labels=JOB_LABELS, buckets=JOB_DURATION_BUCKETS,
                                     help="Handler run time of attempts that succeeded or failed, across every worker.")
CLUSTER_JOB_SUCCESSES = CounterSpec(name="raaf_cluster_job_successes_total", exporters=METRICS, labels=JOB_LABELS,
                                    help="Job attempts that succeeded.")
CLUSTER_JOB_FAILURES = CounterSpec(name="raaf_cluster_job_failures_total", exporters=METRICS, labels=JOB_LABELS,
                                   help="Job attempts whose handler failed (retried or dead next).")
CLUSTER_JOB_RETRIES = CounterSpec(name="raaf_cluster_job_retries_total", exporters=METRICS,
                                  labels=(*JOB_LABELS, "reason"),
                                  help="Jobs sent back for another attempt (reason: error, lease_expired, "
                                       "dead_letter_retry).")
CLUSTER_JOB_DEAD_LETTERS = CounterSpec(name="raaf_cluster_job_dead_letters_total", exporters=METRICS,
                                       labels=JOB_LABELS, help="Jobs moved to the dead-letter store.")
CLUSTER_JOB_CANCELLATIONS = CounterSpec(name="raaf_cluster_job_cancellations_total", exporters=METRICS,
                                        labels=JOB_LABELS, help="Jobs cancelled.")
CLUSTER_JOB_EVENTS_UNDECODABLE = CounterSpec(name="raaf_cluster_job_events_undecodable_total", exporters=METRICS,
                                             help="Messages on the job lifecycle subjects that were not job events.")


CATALOGUE: tuple[MetricSpec, ...] = tuple(v for v in list(globals().values()) if isinstance(v, MetricSpec))


def _check_unique() -> None:
    seen: dict[str, str] = {}
    for spec in CATALOGUE:
        for sample in spec.sample_names:
            if sample in seen:
                raise ValueError(f"metric series {sample!r} declared twice ({seen[sample]}, {spec.name})")
            seen[sample] = spec.name


_check_unique()


def exported_by(service: str) -> tuple[MetricSpec, ...]:
    """The metrics ``service``'s ``/metrics`` should carry (its own and every service's)."""
    return tuple(s for s in CATALOGUE if service in s.exporters or "*" in s.exporters)


def spec_for_sample(sample: str) -> MetricSpec | None:
    """The catalogue entry a series name (``raaf_run_ttft_seconds_bucket`` ...) belongs to, if any."""
    for spec in CATALOGUE:
        if sample in spec.sample_names:
            return spec
    return None
