"""Event system settings from the environment (the seed's ``config.events`` keys as ``EVENTS_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.service.settings import Env, RuntimeSettings, Setting

DAY = 86_400.0

# The seed's ``config.events`` keys (``raaf.configure(events=...)`` validates by these same declarations).
MAX_LISTENERS = Setting("EVENTS_MAX_LISTENERS", 100, min=1, max=1_000_000)
ENABLE_WILDCARDS = Setting("EVENTS_ENABLE_WILDCARDS", True)
ENABLE_HISTORY = Setting("EVENTS_ENABLE_HISTORY", True)
HISTORY_SIZE = Setting("EVENTS_HISTORY_SIZE", 1000, min=1)


@dataclass(frozen=True, kw_only=True)
class EventSettings:
    """Limits and switches of :class:`raaf.EventEmitter`; every one is an ``EVENTS_*`` variable."""

    runtime: RuntimeSettings  # NATS_URL, RAAF_PREFIX, JETSTREAM_REPLICAS, INSTANCE_ID, ...
    max_listeners: int = MAX_LISTENERS.default  # EVENTS_MAX_LISTENERS: listeners on one pattern
    max_patterns: int = 1000  # EVENTS_MAX_PATTERNS: distinct patterns (NATS subscriptions) of one emitter
    enable_wildcards: bool = ENABLE_WILDCARDS.default  # EVENTS_ENABLE_WILDCARDS
    enable_history: bool = ENABLE_HISTORY.default  # EVENTS_ENABLE_HISTORY: keep events in <PREFIX>_EVENTS
    history_size: int = HISTORY_SIZE.default  # EVENTS_HISTORY_SIZE: events kept per event name
    history_max_msgs: int = 1_000_000  # EVENTS_HISTORY_MAX_MSGS: events kept in all
    history_max_bytes: int = 1 << 30  # EVENTS_HISTORY_MAX_BYTES
    max_age: float = 7 * DAY  # EVENTS_MAX_AGE: seconds an event is kept
    duplicate_window: float = 120.0  # EVENTS_DUPLICATE_WINDOW: seconds a repeated event id is not stored again
    storage: str = "file"  # EVENTS_STORAGE: file or memory
    max_event_size: int = 1 << 20  # EVENTS_MAX_EVENT_SIZE: bytes of one encoded event (also capped by NATS)
    pending_limit: int = 65_536  # EVENTS_PENDING_LIMIT: events buffered per pattern before they are dropped
    pending_bytes_limit: int = 128 << 20  # EVENTS_PENDING_BYTES_LIMIT: bytes buffered per pattern before drops
    direct_delivery: bool = True  # EVENTS_DIRECT_DELIVERY: events skip nats-py's per-message queue (fastpaths)
    lean_publish: bool = True  # EVENTS_LEAN_PUBLISH: unconfirmed emits skip nats-py's publish (fastpaths)
    confirm: bool = True  # EVENTS_CONFIRM: with history on, emit waits until JetStream has stored the event
    max_pending_emits: int = 10_000  # EVENTS_MAX_PENDING_EMITS: emit_async calls in flight at once
    publish_timeout: float = 5.0  # EVENTS_PUBLISH_TIMEOUT: seconds to wait for JetStream to confirm one try
    publish_retries: int = 2  # EVENTS_PUBLISH_RETRIES: more tries of an unconfirmed emit, with the same id
    wait_timeout: float = 30.0  # EVENTS_WAIT_TIMEOUT: wait_for_event's default timeout
    history_max_read: int = 10_000  # EVENTS_HISTORY_MAX_READ: the most events one history() call returns
    connect_timeout: float = 10.0  # EVENTS_CONNECT_TIMEOUT: seconds connect() waits for NATS
    source: str = ""  # EVENTS_SOURCE: the envelope's source (default: INSTANCE_ID)
    report_stats: bool = True  # EVENTS_REPORT_STATS: a connected emitter answers raaf.stats() (event_emitter)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EventSettings:
        env = Env(environ)
        runtime = RuntimeSettings.from_env(env, default_http_port=0)
        return cls(
            runtime=runtime,
            max_listeners=MAX_LISTENERS.read(env),
            max_patterns=env.integer("EVENTS_MAX_PATTERNS", cls.max_patterns, min=1, max=1_000_000),
            enable_wildcards=ENABLE_WILDCARDS.read(env),
            enable_history=ENABLE_HISTORY.read(env),
            history_size=HISTORY_SIZE.read(env),
            history_max_msgs=env.integer("EVENTS_HISTORY_MAX_MSGS", cls.history_max_msgs, min=1),
            history_max_bytes=env.integer("EVENTS_HISTORY_MAX_BYTES", cls.history_max_bytes, min=1024),
            max_age=env.number("EVENTS_MAX_AGE", cls.max_age, min=1, max=3650 * DAY),
            duplicate_window=env.number("EVENTS_DUPLICATE_WINDOW", cls.duplicate_window, min=0.1, max=DAY),
            storage=env.choice("EVENTS_STORAGE", cls.storage, ("file", "memory")),
            max_event_size=env.integer("EVENTS_MAX_EVENT_SIZE", cls.max_event_size, min=256, max=64 << 20),
            pending_limit=env.integer("EVENTS_PENDING_LIMIT", cls.pending_limit, min=1),
            pending_bytes_limit=env.integer("EVENTS_PENDING_BYTES_LIMIT", cls.pending_bytes_limit, min=1024),
            direct_delivery=env.boolean("EVENTS_DIRECT_DELIVERY", cls.direct_delivery),
            lean_publish=env.boolean("EVENTS_LEAN_PUBLISH", cls.lean_publish),
            confirm=env.boolean("EVENTS_CONFIRM", cls.confirm),
            max_pending_emits=env.integer("EVENTS_MAX_PENDING_EMITS", cls.max_pending_emits, min=1),
            publish_timeout=env.number("EVENTS_PUBLISH_TIMEOUT", cls.publish_timeout, min=0.01, max=600),
            publish_retries=env.integer("EVENTS_PUBLISH_RETRIES", cls.publish_retries, min=0, max=100),
            wait_timeout=env.number("EVENTS_WAIT_TIMEOUT", cls.wait_timeout, min=0.001, max=DAY),
            history_max_read=env.integer("EVENTS_HISTORY_MAX_READ", cls.history_max_read, min=1),
            connect_timeout=env.number("EVENTS_CONNECT_TIMEOUT", cls.connect_timeout, min=0.1, max=3600),
            source=env.string("EVENTS_SOURCE", runtime.instance_id),
            report_stats=env.boolean("EVENTS_REPORT_STATS", cls.report_stats),
        )
