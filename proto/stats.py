"""Statistics on the wire: each instance's sections in the seed's ``Streaming.stats`` shape, and the cluster's.

Every service instance (and any library process that wants to be counted) answers a request on
``Subjects.service_stats`` with an :class:`InstanceStats`; the metrics service combines the answers into one
:class:`ClusterStats`. How a figure combines across replicas is declared on its section: ``shared_fields``
are read from shared state (Redis, JetStream) so every replica reports the same value and the cluster takes the
largest; booleans combine with "any"; every other number is the instance's own and the cluster sums it;
mappings merge by key (a key's figures combine by the same rules); ``settled()`` then derives what depends on them.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

import msgspec

from proto.base import Message
from proto.errors import Error


class Section(Message, frozen=True, kw_only=True, omit_defaults=False):
    """Base of the six sections; zeros are written out, so a reader sees every figure."""

    shared_fields: ClassVar[frozenset[str]] = frozenset()

    def settled(self) -> Self:
        """The section once replicas' answers are combined (figures derived from merged ones recomputed)."""
        return self


class WebSocketServerStats(Section, frozen=True, kw_only=True, tag="websocket_server"):
    # ``channels`` counts distinct channels on one gateway; across gateways the largest is a lower bound,
    # while ``subscriptions`` (client-channel pairs) adds up exactly.
    shared_fields: ClassVar[frozenset[str]] = frozenset({"channels"})

    running: bool = False
    connections: int = 0
    max_connections: int = 0
    channels: int = 0
    subscriptions: int = 0
    sse_streams: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    slow_consumer_disconnects: int = 0


class AsyncRunnerStats(Section, frozen=True, kw_only=True, tag="async_runner"):
    running: bool = False
    active_runs: int = 0
    queued: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    pool_size: int = 0
    queue_size: int = 0


class BackgroundProcessorStats(Section, frozen=True, kw_only=True, tag="background_processor"):
    # Queue lengths, scheduled and failed jobs live in Redis: every scheduler replica sees the same ones.
    shared_fields: ClassVar[frozenset[str]] = frozenset(
        {"high_priority_queue", "normal_priority_queue", "low_priority_queue", "scheduled_jobs", "failed_jobs"}
    )

    running: bool = False
    workers: int = 0
    active_jobs: int = 0
    completed_jobs: int = 0
    high_priority_queue: int = 0
    normal_priority_queue: int = 0
    low_priority_queue: int = 0
    scheduled_jobs: int = 0
    failed_jobs: int = 0


class MessageQueueStats(Section, frozen=True, kw_only=True, tag="message_queue"):
    shared_fields: ClassVar[frozenset[str]] = frozenset({"queues", "pending"})

    queues: int = 0
    pending: int = 0
    processed: int = 0
    batches: int = 0
    # Messages waiting per queue (its Redis stream key): instances of one queue report the same figure, so
    # the cluster counts each queue once and sums across queues. Empty from reporters that predate it.
    pending_by_queue: dict[str, int] = {}

    def settled(self) -> Self:
        if not self.pending_by_queue:
            return self
        return msgspec.structs.replace(self, queues=len(self.pending_by_queue),
                                       pending=sum(self.pending_by_queue.values()))


class EventEmitterStats(Section, frozen=True, kw_only=True, tag="event_emitter"):
    listeners: int = 0
    emitted: int = 0
    delivered: int = 0
    errors: int = 0


class ChatRoomStats(Section, frozen=True, kw_only=True, tag="chat_room"):
    # A room's figures are the fold of its JetStream events: replicas that hold the room agree on them.
    shared_fields: ClassVar[frozenset[str]] = frozenset({"participants", "messages"})

    participants: int = 0
    messages: int = 0


class ChatSystemStats(Section, frozen=True, kw_only=True, tag="chat_system"):
    # Every figure is the fold of the chat's JetStream events (sessions and answers included), which each
    # chat replica holds whole: replicas report the same values.
    shared_fields: ClassVar[frozenset[str]] = frozenset(
        {"connected_clients", "active_sessions", "active_streams", "available_agents", "total_messages"})

    connected_clients: int = 0
    active_sessions: int = 0
    active_streams: int = 0
    available_agents: int = 0
    total_messages: int = 0
    rooms: dict[str, ChatRoomStats] = msgspec.field(default_factory=dict)


SECTION_TYPES: tuple[type[Section], ...] = (
    WebSocketServerStats,
    AsyncRunnerStats,
    BackgroundProcessorStats,
    MessageQueueStats,
    EventEmitterStats,
    ChatSystemStats,
)
SECTION_NAMES: tuple[str, ...] = (
    "websocket_server",
    "async_runner",
    "background_processor",
    "message_queue",
    "event_emitter",
    "chat_system",
)


class InstanceStats(Message, frozen=True, kw_only=True, tag="instance_stats"):
    """One instance's answer on ``Subjects.service_stats``; it fills only the sections it has."""

    service: str
    instance: str
    version: str = ""
    http_url: str | None = None
    at: float
    error: str | None = None  # set when the instance could not produce its figures
    websocket_server: WebSocketServerStats | None = None
    async_runner: AsyncRunnerStats | None = None
    background_processor: BackgroundProcessorStats | None = None
    message_queue: MessageQueueStats | None = None
    event_emitter: EventEmitterStats | None = None
    chat_system: ChatSystemStats | None = None


class InstanceRef(Message, frozen=True, kw_only=True, tag="instance_ref"):
    """Names one instance of a service (and what went wrong with its figures, if anything)."""

    service: str
    instance: str
    error: str | None = None


class ClusterStats(Message, frozen=True, kw_only=True, tag="cluster_stats", omit_defaults=False):
    """The seed's combined ``Streaming.stats`` across every replica that answered."""

    websocket_server: WebSocketServerStats = msgspec.field(default_factory=WebSocketServerStats)
    async_runner: AsyncRunnerStats = msgspec.field(default_factory=AsyncRunnerStats)
    background_processor: BackgroundProcessorStats = msgspec.field(default_factory=BackgroundProcessorStats)
    message_queue: MessageQueueStats = msgspec.field(default_factory=MessageQueueStats)
    event_emitter: EventEmitterStats = msgspec.field(default_factory=EventEmitterStats)
    chat_system: ChatSystemStats = msgspec.field(default_factory=ChatSystemStats)
    services: dict[str, int] = msgspec.field(default_factory=dict)  # instances that answered, per service
    unanswered: list[InstanceRef] = msgspec.field(default_factory=list)  # known instances that did not
    errors: list[InstanceRef] = msgspec.field(default_factory=list)  # answered, but could not give figures
    at: float = 0.0


class InstanceHealth(Message, frozen=True, kw_only=True, tag="instance_health", omit_defaults=False):
    """One instance and what its ``/readyz`` said (``ready`` is false when it could not be reached)."""

    service: str
    instance: str
    version: str = ""
    http_url: str | None = None
    ready: bool = False
    status: int = 0  # HTTP status of /readyz; 0 when unreachable
    checks: dict[str, bool] = msgspec.field(default_factory=dict)
    draining: bool = False
    error: str | None = None
    last_seen: float = 0.0


class ClusterHealth(Message, frozen=True, kw_only=True, tag="cluster_health", omit_defaults=False):
    """Every known instance with its readiness; ``status`` is ok (all ready), degraded (some) or down (none)."""

    status: Literal["ok", "degraded", "down"]
    instances: list[InstanceHealth] = msgspec.field(default_factory=list)
    at: float = 0.0


# What the metrics service answers on ``Subjects.cluster_stats`` / ``Subjects.cluster_health``.
MetricsReply = ClusterStats | ClusterHealth | Error

stats_encoder = msgspec.json.Encoder()
instance_stats_decoder = msgspec.json.Decoder(InstanceStats)
metrics_reply_decoder: msgspec.json.Decoder[ClusterStats | ClusterHealth | Error] = msgspec.json.Decoder(MetricsReply)
