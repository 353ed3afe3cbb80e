"""The gateway's wire: client and server WebSocket/SSE messages, channel payloads on NATS, close codes."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from proto.approvals import DecisionAccepted, RunDecide
from proto.base import ClientRequest, Message
from proto.chat_ws import ChatClientMessage, ChatServerMessage
from proto.errors import Error
from proto.events import EmitEvent, Event, EventHistory, SubscribeEvents, UnsubscribeEvents
from proto.runs import (
    AgentChanged,
    AgentStream,
    ApprovalDecided,
    ApprovalRequested,
    CancelAccepted,
    CancelRunStream,
    Handoff,
    ResumeRun,
    RunAccepted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolOutput,
)

# 1-200 characters, no control characters: the gateway checks (answering ``invalid_name``), not the schema.
ChannelName = str
PresenceInfo = Annotated[dict[str, Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=16)]


class CloseCode(enum.IntEnum):
    """WebSocket close codes the gateway uses; 4000-4999 are the application's own."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the gateway is shutting down: reconnect (to another replica)
    PROTOCOL_ERROR = 1002
    MESSAGE_TOO_BIG = 1009  # a frame over WEBSOCKET_MAX_FRAME_SIZE
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # WEBSOCKET_MAX_CONNECTIONS reached, or the gateway is not ready
    IDLE_TIMEOUT = 4000  # no message from the client for WEBSOCKET_IDLE_TIMEOUT
    UNAUTHORIZED = 4001  # bad token, no ``auth`` within WEBSOCKET_AUTH_TIMEOUT, or the token expired
    HEARTBEAT_TIMEOUT = 4002  # no pong within WEBSOCKET_PONG_TIMEOUT
    SLOW_CONSUMER = 4008  # the send queue went over WEBSOCKET_SEND_QUEUE_BYTES


# ---- client -> gateway ------------------------------------------------------------------------


class Auth(ClientRequest, frozen=True, kw_only=True, tag="auth"):
    """Authenticate (or re-authenticate with a fresh token); answered by ``authenticated``."""

    token: Annotated[str, msgspec.Meta(max_length=16384)]


class Subscribe(ClientRequest, frozen=True, kw_only=True, tag="subscribe"):
    """Join a channel; ``presence`` also delivers its ``joined``/``left`` events; ``info`` is shown to others."""

    channel: ChannelName
    presence: bool = False
    info: PresenceInfo | None = None


class Unsubscribe(ClientRequest, frozen=True, kw_only=True, tag="unsubscribe"):
    channel: ChannelName


class Publish(ClientRequest, frozen=True, kw_only=True, tag="publish"):
    """Send ``data`` (any JSON) to every subscriber of ``channel`` on every gateway."""

    channel: ChannelName
    data: msgspec.Raw


class Ping(ClientRequest, frozen=True, kw_only=True, tag="ping"):
    """Application-level ping (also keeps the connection from going idle); answered by ``pong``."""


class PresenceQuery(ClientRequest, frozen=True, kw_only=True, tag="presence"):
    """Who is in ``channel``, across all gateways; answered by ``presence``."""

    channel: ChannelName


# Every message a client may send. Other issues add their messages here, one line each.
ClientMessage = (
    Auth
    | Subscribe
    | Unsubscribe
    | Publish
    | Ping
    | PresenceQuery
    | ChatClientMessage  # chat rooms (proto/chat_ws.py)
    | AgentStream
    | ResumeRun
    | CancelRunStream
    | RunDecide  # tool call approvals (proto/approvals.py)

    | SubscribeEvents
    | UnsubscribeEvents
    | EmitEvent
)

client_decoder = msgspec.json.Decoder(ClientMessage)


class ClientPeek(msgspec.Struct, frozen=True):
    """Just the ``type`` and ``id`` of a client message that did not decode, to answer it precisely."""

    type: str | None = None
    id: str | None = None


client_peek_decoder = msgspec.json.Decoder(ClientPeek)


# ---- gateway -> client ------------------------------------------------------------------------


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The per-connection limits, announced in ``welcome`` (0 means unlimited)."""

    max_message_size: int
    rate_limit: int
    max_subscriptions: int


class Member(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One connection in a channel: who (its token's display ``name``; ``subject`` where the deployment shows
    subjects) and its ``info`` from ``subscribe``."""

    connection_id: str
    subject: str | None = None  # only with GATEWAY_PRESENCE_SUBJECTS=true: subjects may be emails or internal ids
    info: dict[str, str] | None = None
    name: str | None = None  # the display name its token carries (the ``name`` claim)


class Welcome(Message, frozen=True, kw_only=True, tag="welcome"):
    connection_id: str
    instance: str
    auth_required: bool
    heartbeat_interval: float
    limits: Limits
    subject: str | None = None  # set when the upgrade request already carried a valid token


class Authenticated(Message, frozen=True, kw_only=True, tag="authenticated"):
    ref: str | None = None
    subject: str | None = None
    roles: list[str] = []
    expires_at: float | None = None


class Ack(Message, frozen=True, kw_only=True, tag="ack"):
    """The client message with ``id == ref`` was done: a subscription is active on NATS (a message
    published anywhere after the ack reaches it), a publish was handed to NATS."""

    ref: str


class Pong(Message, frozen=True, kw_only=True, tag="pong"):
    ref: str | None = None
    at: float


class ChannelMessage(Message, frozen=True, kw_only=True, tag="message"):
    """A message in a channel. This exact JSON is also the payload on the channel's NATS subject."""

    channel: str
    data: msgspec.Raw
    sender: str | None = None  # the publisher's authenticated subject
    connection_id: str | None = None  # the publishing connection, if it came through a gateway
    at: float | None = None


class Joined(Message, frozen=True, kw_only=True, tag="joined"):
    channel: str
    member: Member
    at: float


class Left(Message, frozen=True, kw_only=True, tag="left"):
    channel: str
    member: Member
    at: float


class Presence(Message, frozen=True, kw_only=True, tag="presence"):
    ref: str | None = None
    channel: str
    members: list[Member]


# Every message the gateway sends to clients. Other issues add their messages here, one line each.
ServerMessage = (
    Welcome
    | Authenticated
    | Ack
    | Error
    | Pong
    | ChannelMessage
    | Joined
    | Left
    | Presence
    | ChatServerMessage  # chat rooms (proto/chat_ws.py)
    | RunAccepted
    | CancelAccepted
    | RunQueued
    | RunStarted
    | TextDelta
    | ToolCallStarted
    | ToolCallDelta
    | ToolCallFinished
    | ToolOutput
    | Handoff
    | AgentChanged
    | ApprovalRequested
    | ApprovalDecided
    | DecisionAccepted
    | RunCompleted
    | RunFailed
    | RunCancelled

    | Event
    | EventHistory
)

server_encoder = msgspec.json.Encoder()
server_decoder = msgspec.json.Decoder(ServerMessage)

# The NATS payloads of channel subjects (ChannelMessage) and presence subjects (Joined | Left).
channel_message_decoder = msgspec.json.Decoder(ChannelMessage)
PresenceEvent = Joined | Left
presence_event_decoder = msgspec.json.Decoder(PresenceEvent)


# ---- gateway <-> gateway (NATS) ---------------------------------------------------------------


class PresenceRequest(Message, frozen=True, kw_only=True, tag="presence_request"):
    channel: str


class StatsRequest(Message, frozen=True, kw_only=True, tag="stats_request"):
    pass


class PeerAlive(Message, frozen=True, kw_only=True, tag="peer_alive"):
    """A gateway announces itself every few seconds; peers expire it after three missed beats."""

    instance: str
    every: float


class PeerGone(Message, frozen=True, kw_only=True, tag="peer_gone"):
    instance: str


GatewayControl = PresenceRequest | StatsRequest | PeerAlive | PeerGone
control_decoder = msgspec.json.Decoder(GatewayControl)


class GatewayStats(msgspec.Struct, frozen=True, kw_only=True):
    """One gateway's counters (``/v1/stats``; summed across replicas for the cluster view)."""

    connections: int = 0
    websocket_connections: int = 0
    sse_connections: int = 0
    authenticated_connections: int = 0
    channels: int = 0
    subscriptions: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    errors_sent: int = 0
    slow_consumers: int = 0
    rate_limited: int = 0
    uptime_seconds: float = 0.0


class PresenceReply(Message, frozen=True, kw_only=True, tag="presence_reply"):
    instance: str
    members: list[Member]


class StatsReply(Message, frozen=True, kw_only=True, tag="stats_reply"):
    instance: str
    stats: GatewayStats


GatewayReply = PresenceReply | StatsReply


# ---- REST answers -------------------------------------------------------------------------------


class Published(Message, frozen=True, kw_only=True, tag="published"):
    """``POST /v1/channels/{channel}/messages``: NATS accepted the message for every subscriber."""

    channel: str
    at: float


class Stats(Message, frozen=True, kw_only=True, tag="stats"):
    """``GET /v1/stats``: this gateway, and the sum over every gateway that answered."""

    instance: str
    local: GatewayStats
    cluster: GatewayStats
    gateways: int
reply_decoder = msgspec.json.Decoder(GatewayReply)
control_encoder = msgspec.json.Encoder()
