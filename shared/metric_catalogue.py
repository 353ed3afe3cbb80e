"""Every Prometheus metric the platform exports, defined once; services create theirs with ``spec.create``.

Dashboards, alert rules and tests are checked against this catalogue, so a metric is renamed here or nowhere.
``exporters`` says whose ``/metrics`` carry it: a service name, ``*`` for every service, or ``events`` for the
event-emitter library (exported by whichever service hosts emitters).
"""

from __future__ import annotations

from shared.metric_specs import (
    COUNT_BUCKETS,
    FAST_BUCKETS,
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
SERVICES = ("gateway", "agent-runner", "chat", "scheduler", "metrics")

# ---- every service (shared.metrics.RuntimeMetrics) -------------------------------------------------------
SERVICE = InfoSpec(name="raaf_service", help="The service this process runs.", exporters=EVERY)
SERVICE_READY = GaugeSpec(name="raaf_service_ready", exporters=EVERY,
                          help="1 while the service is ready (NATS and Redis reachable).")
NATS_CONNECTED = GaugeSpec(name="raaf_nats_connected", help="1 while the NATS connection is up.", exporters=EVERY)
NATS_DISCONNECTS = CounterSpec(name="raaf_nats_disconnects_total", help="NATS disconnections.", exporters=EVERY)
NATS_RECONNECTS = CounterSpec(name="raaf_nats_reconnects_total", help="NATS reconnections.", exporters=EVERY)
NATS_ERRORS = CounterSpec(name="raaf_nats_errors_total", help="Errors reported by the NATS client.",
                          exporters=EVERY)
REDIS_ERRORS = CounterSpec(name="raaf_redis_errors_total", help="Failed Redis commands and health checks.",
                           exporters=EVERY)
PROCESS_START = GaugeSpec(name="raaf_process_start_time_seconds", help="Unix time the service started.",
                          exporters=EVERY)

# ---- gateway: WebSocket connections, messages, channel fan-out ------------------------------------------
WS_CONNECTIONS = GaugeSpec(name="raaf_ws_connections", help="Open WebSocket connections.", exporters=GATEWAY)
WS_CONNECTIONS_ACCEPTED = CounterSpec(name="raaf_ws_connections_accepted_total", exporters=GATEWAY,
                                      help="WebSocket connections accepted.")
WS_CONNECTIONS_REJECTED = CounterSpec(name="raaf_ws_connections_rejected_total", exporters=GATEWAY,
                                      labels=("reason",),
                                      help="WebSocket connections refused (reason: limit, unauthorized, ...).")
WS_MESSAGES_RECEIVED = CounterSpec(name="raaf_ws_messages_received_total", exporters=GATEWAY,
                                   help="WebSocket messages received from clients.")
WS_MESSAGES_SENT = CounterSpec(name="raaf_ws_messages_sent_total", exporters=GATEWAY,
                               help="WebSocket messages sent to clients.")
WS_RECEIVED_BYTES = CounterSpec(name="raaf_ws_received_bytes_total", exporters=GATEWAY,
                                help="Bytes of WebSocket messages received from clients.")
WS_SENT_BYTES = CounterSpec(name="raaf_ws_sent_bytes_total", exporters=GATEWAY,
                            help="Bytes of WebSocket messages sent to clients.")
WS_SLOW_CONSUMER_DISCONNECTS = CounterSpec(name="raaf_ws_slow_consumer_disconnects_total", exporters=GATEWAY,
                                           help="Clients disconnected because their send buffer overflowed.")
WS_CLIENT_ERRORS = CounterSpec(name="raaf_ws_client_errors_total", exporters=GATEWAY, labels=("code",),
                               help="Typed errors sent to clients, by wire error code.")
CHANNEL_SUBSCRIPTIONS = GaugeSpec(name="raaf_channel_subscriptions", exporters=GATEWAY,
                                  help="Client subscriptions to channels on this gateway.")
CHANNEL_FANOUT = HistogramSpec(name="raaf_channel_fanout_recipients", exporters=GATEWAY, buckets=COUNT_BUCKETS,
                               help="Local clients each channel message was delivered to.")
SSE_STREAMS = GaugeSpec(name="raaf_sse_streams", help="Open server-sent-event streams.", exporters=GATEWAY)
RUN_STREAMS = GaugeSpec(name="raaf_run_streams", exporters=GATEWAY, labels=("transport",),
                        help="Run event streams the gateway is delivering (transport: sse, websocket, openai).")
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
HANDOFFS = CounterSpec(name="raaf_handoffs_total", exporters=("agent-runner", "chat"),
                       help="Handoffs from one agent to another.")
RUN_REQUESTS = CounterSpec(name="raaf_run_requests_total", exporters=RUNNER, labels=("outcome",),
                           help="Run requests received (outcome: accepted, or the error code they got).")
RUN_EVENTS = CounterSpec(name="raaf_run_events_total", exporters=RUNNER, help="Run events stored in JetStream.")
RUN_CANCELS = CounterSpec(name="raaf_run_cancels_total", exporters=RUNNER,
                          help="Cancel requests for runs this runner owned.")
RUNS_REAPED = CounterSpec(name="raaf_runs_reaped_total", exporters=RUNNER,
                          help="Orphaned runs (their runner died) this runner ended with a failure.")
RUN_POOL_SIZE = GaugeSpec(name="raaf_run_pool_size", exporters=RUNNER,
                          help="Runs that may execute at once (ASYNC_POOL_SIZE).")
RUN_QUEUE_SIZE = GaugeSpec(name="raaf_run_queue_size", exporters=RUNNER,
                           help="Accepted runs that may wait for a slot (ASYNC_QUEUE_SIZE).")
TOOL_DURATION = HistogramSpec(name="raaf_tool_duration_seconds", exporters=RUNNER, buckets=LATENCY_BUCKETS,
                              help="Time tool calls took.")
PROVIDER_RETRIES = CounterSpec(name="raaf_provider_retries_total", exporters=RUNNER,
                               help="Model requests retried after failing before their first token.")

# ---- scheduler: durable jobs ---------------------------------------------------------------------------
JOBS_ENQUEUED = CounterSpec(name="raaf_jobs_enqueued_total", exporters=SCHEDULER, labels=("priority",),
                            help="Jobs enqueued, by priority (high, normal, low).")
JOBS_FINISHED = CounterSpec(name="raaf_jobs_finished_total", exporters=SCHEDULER, labels=("outcome",),
                            help="Jobs that ended (outcome: succeeded, dead, cancelled).")
JOB_ENQUEUE = HistogramSpec(name="raaf_job_enqueue_seconds", exporters=SCHEDULER, buckets=FAST_BUCKETS,
                            help="Time to store an enqueued job durably.")
JOB_PICKUP = HistogramSpec(name="raaf_job_pickup_seconds", exporters=SCHEDULER,
                           help="Time from a job being due to a worker claiming it.")
JOB_DURATION = HistogramSpec(name="raaf_job_duration_seconds", exporters=SCHEDULER,
                             help="Time a worker spent on a job attempt.")
JOB_RETRIES = CounterSpec(name="raaf_job_retries_total", exporters=SCHEDULER,
                          help="Job attempts that failed and were scheduled again.")
JOB_DEAD_LETTERS = CounterSpec(name="raaf_job_dead_letters_total", exporters=SCHEDULER,
                               help="Jobs moved to the dead-letter set after their last retry.")
JOB_QUEUE_DEPTH = GaugeSpec(name="raaf_job_queue_depth", exporters=SCHEDULER, labels=("priority",),
                            help="Jobs ready to run, by priority (the same on every scheduler replica).")
JOBS_SCHEDULED = GaugeSpec(name="raaf_jobs_scheduled", exporters=SCHEDULER,
                           help="Jobs waiting for their time (delayed and recurring).")
JOBS_DEAD = GaugeSpec(name="raaf_jobs_dead", exporters=SCHEDULER, help="Jobs in the dead-letter set.")

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
CHAT_WRITE_CONFLICTS = CounterSpec(name="raaf_chat_write_conflicts_total", exporters=CHAT,
                                   help="Room appends refused because another replica wrote first (retried).")
CHAT_TYPING_EXPIRED = CounterSpec(name="raaf_chat_typing_expired_total", exporters=CHAT,
                                  help="Typing indicators that expired without a stop.")
CHAT_SESSIONS_REAPED = CounterSpec(name="raaf_chat_sessions_reaped_total", exporters=CHAT,
                                   help="Sessions of vanished gateways taken out of their rooms.")

# ---- event emitter (library) -----------------------------------------------------------------------------
EVENTS_EMITTED = CounterSpec(name="raaf_events_emitted_total", help="Events emitted through EventEmitter.",
                             exporters=EVENTS)
EVENTS_DELIVERED = CounterSpec(name="raaf_events_delivered_total", exporters=EVENTS,
                               help="Events delivered to listeners.")
EVENT_LISTENER_ERRORS = CounterSpec(name="raaf_event_listener_errors_total", exporters=EVENTS,
                                    help="Listener callbacks that raised.")

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
