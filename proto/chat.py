"""Chat on the wire: commands to the chat service and replies, room log and feed events, typing notices."""

from __future__ import annotations

import enum
from typing import Final, Literal

import msgspec

from proto.base import Message
from proto.errors import Error, ErrorCode
from proto.runs import AgentSpec
from proto.stats import ChatSystemStats


class BusyPolicy(enum.StrEnum):
    """What a room does with a user message that arrives while its agent is still answering."""

    REJECT = "reject"  # refuse it with a typed error (``conflict``)
    ENQUEUE = "enqueue"  # answer it after the current answer, in order
    INTERRUPT = "interrupt"  # cancel the current answer and answer the newest message


class RoomConfig(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_config"):
    """A room's limits and rules, resolved at creation from the command and the service's defaults.

    Replies and events the clients read write every field out (``omit_defaults=False``)."""

    max_participants: int
    message_history: int
    restricted: bool = False
    allowed: list[str] = []  # identities that may join a restricted room besides those the gateway grants
    busy_policy: BusyPolicy = BusyPolicy.ENQUEUE
    max_message_length: int = 2000


# ---- commands: NATS requests to ``Subjects.chat_commands`` (a queue group of chat replicas) -------------------


class CreateRoom(Message, frozen=True, kw_only=True, omit_defaults=False, tag="create_room"):
    """Create a room; ``agents`` are defined here, ``agent`` names the primary (default: the first, else the
    service's CHAT_DEFAULT_AGENT). An AgentSpec with nothing but a name refers to an agent the runners serve."""

    name: str
    agent: str | None = None
    agents: list[AgentSpec] = []
    max_participants: int | None = None
    message_history: int | None = None
    restricted: bool = False
    allowed: list[str] = []
    busy_policy: BusyPolicy | None = None
    max_message_length: int | None = None
    by: str = ""
    exist_ok: bool = False  # an existing room of that name is returned instead of a ``conflict`` error


class DeleteRoom(Message, frozen=True, kw_only=True, omit_defaults=False, tag="delete_room"):
    room: str
    by: str = ""


class GetRoom(Message, frozen=True, kw_only=True, omit_defaults=False, tag="get_room"):
    room: str


class ListRooms(Message, frozen=True, kw_only=True, omit_defaults=False, tag="list_rooms"):
    pass


class JoinRoom(Message, frozen=True, kw_only=True, omit_defaults=False, tag="join_room"):
    """Join as ``user`` from one client ``session``; ``granted`` says the gateway's auth allows this room."""

    room: str
    user: str
    session: str
    granted: bool = False
    owner: str = ""  # the gateway instance holding the session, so sessions of a dead gateway can be reaped


class LeaveRoom(Message, frozen=True, kw_only=True, omit_defaults=False, tag="leave_room"):
    room: str
    user: str
    session: str
    reason: str = "left"


class PostMessage(Message, frozen=True, kw_only=True, omit_defaults=False, tag="post_message"):
    """A user's message; a retry with the same ``client_id`` is stored once."""

    room: str
    user: str
    session: str
    text: str
    client_id: str | None = None


class SetTyping(Message, frozen=True, kw_only=True, omit_defaults=False, tag="set_typing"):
    room: str
    user: str
    session: str
    typing: bool


class AddAgent(Message, frozen=True, kw_only=True, omit_defaults=False, tag="add_agent"):
    room: str
    agent: AgentSpec
    by: str = ""


class RequestHandoff(Message, frozen=True, kw_only=True, omit_defaults=False, tag="request_handoff"):
    """A participant asks to move the conversation to another of the room's agents."""

    room: str
    user: str
    session: str
    agent: str
    reason: str = ""


class GetHistory(Message, frozen=True, kw_only=True, omit_defaults=False, tag="get_history"):
    """The room's last ``limit`` conversation messages (at most its ``message_history``)."""

    room: str
    user: str
    granted: bool = False
    limit: int | None = None


class GetStats(Message, frozen=True, kw_only=True, omit_defaults=False, tag="get_stats"):
    pass


ChatCommand = (
    CreateRoom
    | DeleteRoom
    | GetRoom
    | ListRooms
    | JoinRoom
    | LeaveRoom
    | PostMessage
    | SetTyping
    | AddAgent
    | RequestHandoff
    | GetHistory
    | GetStats
)

# ---- room log: ``Subjects.chat_directory`` (rooms created / deleted) and ``Subjects.chat_room_log(room_id)`` -----


class RoomCreated(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_created"):
    room_id: str
    name: str
    config: RoomConfig
    agent: str  # the primary agent
    agents: list[AgentSpec] = []
    by: str = ""
    at: float


class RoomDeleted(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_deleted"):
    room_id: str
    name: str
    by: str = ""
    at: float


class AgentAdded(Message, frozen=True, kw_only=True, omit_defaults=False, tag="agent_added"):
    room_id: str
    agent: AgentSpec
    by: str = ""
    at: float


class ParticipantJoined(Message, frozen=True, kw_only=True, omit_defaults=False, tag="participant_joined"):
    room_id: str
    user: str
    session: str
    owner: str = ""
    first_session: bool = True  # the user was not in the room before
    at: float


class ParticipantLeft(Message, frozen=True, kw_only=True, omit_defaults=False, tag="participant_left"):
    room_id: str
    user: str
    session: str
    reason: str = "left"
    last_session: bool = True  # the user is no longer in the room
    at: float


class RoomClosed(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_closed"):
    """The last event of a deleted room's log, so readers following it learn the room is gone."""

    room_id: str
    name: str
    at: float


class Session(Message, frozen=True, kw_only=True, omit_defaults=False, tag="session"):
    user: str
    session: str
    owner: str = ""
    joined_at: float


class RoomSnapshot(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_snapshot"):
    """The fold of a room's log so far; written with ``Nats-Rollup: sub`` so it replaces what it sums up."""

    room_id: str
    sessions: list[Session] = []
    agents: list[AgentSpec] = []
    at: float


RoomLogEvent = (
    RoomCreated | RoomDeleted | AgentAdded | ParticipantJoined | ParticipantLeft | RoomSnapshot | RoomClosed
)

# ---- the feed: ``Subjects.chat_feed_messages(room_id)`` (capped at the history size) and
# ``Subjects.chat_feed_answers(room_id)`` (answers being streamed); one stream, so one order for everyone --------


class UserMessage(Message, frozen=True, kw_only=True, omit_defaults=False, tag="user_message"):
    id: str
    room_id: str
    user: str
    text: str
    agent: str  # the room's agent when it was posted: the one who answers it
    count: int  # messages in the room including this one
    client_id: str | None = None
    at: float


class AgentMessage(Message, frozen=True, kw_only=True, omit_defaults=False, tag="agent_message"):
    """An answer's end: its whole text, or what was streamed before it failed or was cancelled."""

    id: str  # the run id
    room_id: str
    agent: str  # the agent that answered last (after any handoff)
    text: str
    in_reply_to: str
    status: Literal["completed", "failed", "cancelled"] = "completed"
    error: ErrorCode | None = None
    reason: str | None = None
    count: int
    at: float


class AgentHandoff(Message, frozen=True, kw_only=True, omit_defaults=False, tag="agent_handoff"):
    """The room's conversation moves to ``to_agent``; ``by`` says whether the agent or a user asked."""

    room_id: str
    from_agent: str
    to_agent: str
    by: Literal["agent", "user"]
    user: str | None = None
    reason: str = ""
    run_id: str | None = None
    count: int
    at: float


class AnswerStarted(Message, frozen=True, kw_only=True, omit_defaults=False, tag="answer_started"):
    room_id: str
    run_id: str
    agent: str
    in_reply_to: str
    in_reply_seq: int = 0  # the feed sequence of the message answered
    at: float


class AnswerDelta(Message, frozen=True, kw_only=True, omit_defaults=False, tag="answer_delta"):
    """A piece of an answer's text; ``seq`` is the run event's seq, so a relay can resume where it stopped."""

    room_id: str
    run_id: str
    agent: str
    seq: int
    delta: str


class AnswerApproval(Message, frozen=True, kw_only=True, omit_defaults=False, tag="answer_approval"):
    """The answer's run waits for a decision on a tool call (its ``run_approval_requested``; ``seq`` is that
    event's seq). A participant with the grant decides it with the gateway's ``run_decide`` (``run_id``,
    ``call_id``): a subject in ``approvers`` (the room's creator, the policy's), an identity granted the agent,
    or an admin."""

    room_id: str
    run_id: str
    call_id: str
    seq: int
    name: str
    arguments: str  # JSON text
    agent: str = ""
    approvers: list[str] = []
    deadline: float | None = None
    at: float = 0.0


class AnswerDecision(Message, frozen=True, kw_only=True, omit_defaults=False, tag="answer_decision"):
    """A decision on an ``answer_approval`` (its ``run_approval_decided``): who, what; the answer goes on."""

    room_id: str
    run_id: str
    call_id: str
    seq: int
    approved: bool
    decided_by: str
    message: str | None = None
    at: float = 0.0


FeedEvent = UserMessage | AgentMessage | AgentHandoff | AnswerStarted | AnswerDelta | AnswerApproval | AnswerDecision
FeedMessage = UserMessage | AgentMessage | AgentHandoff

# ---- typing notices: core NATS on ``Subjects.chat_room_events(room_id)`` (never stored) ----------------------


class TypingStarted(Message, frozen=True, kw_only=True, omit_defaults=False, tag="typing_started"):
    room_id: str
    user: str
    expires_in: float  # seconds; receivers may expire it themselves if no stop arrives
    origin: str = ""  # the chat instance that expires it
    at: float


class TypingStopped(Message, frozen=True, kw_only=True, omit_defaults=False, tag="typing_stopped"):
    room_id: str
    user: str
    reason: Literal["stopped", "expired", "sent", "left"] = "stopped"
    at: float


TypingEvent = TypingStarted | TypingStopped

# ---- replies ------------------------------------------------------------------------------------------------


class Participant(Message, frozen=True, kw_only=True, omit_defaults=False, tag="participant"):
    user: str
    sessions: int
    joined_at: float


class RoomInfo(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_info"):
    id: str
    name: str
    config: RoomConfig
    agent: str  # the agent answering now
    primary: str
    agents: list[str]
    participants: list[Participant] = []
    messages: int = 0
    answering: bool = False
    queued: int = 0
    created_at: float
    created_by: str = ""


class RoomJoined(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_joined"):
    """Read the feed from ``history_from`` (the oldest history message) on: events before ``live_from`` are
    history (conversation messages only), the rest are live; presence changes follow the log after ``log_seq``."""

    room: RoomInfo
    history_from: int
    live_from: int
    log_seq: int
    typing: list[str] = []
    first_session: bool = True


class MessageAccepted(Message, frozen=True, kw_only=True, omit_defaults=False, tag="message_accepted"):
    room_id: str
    message_id: str
    count: int
    seq: int
    queued: bool = False  # another answer comes first
    interrupted: str | None = None  # the run this message cancelled
    duplicate: bool = False  # a retry of a message already stored


class Ack(Message, frozen=True, kw_only=True, omit_defaults=False, tag="ack"):
    room_id: str | None = None


class RoomSummary(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_summary"):
    id: str
    name: str
    restricted: bool
    participants: int
    max_participants: int
    messages: int
    agent: str


class RoomList(Message, frozen=True, kw_only=True, omit_defaults=False, tag="room_list"):
    rooms: list[RoomSummary]


class History(Message, frozen=True, kw_only=True, omit_defaults=False, tag="history"):
    room_id: str
    messages: list[FeedMessage]


# ``get_stats`` answers with ``proto.stats.ChatSystemStats``: the seed's ``chat.stats`` shape, rooms by name.
ChatReply = RoomInfo | RoomJoined | MessageAccepted | Ack | RoomList | History | ChatSystemStats | Error

chat_encoder: Final = msgspec.json.Encoder()
chat_command_decoder: Final[msgspec.json.Decoder[ChatCommand]] = msgspec.json.Decoder(ChatCommand)
chat_reply_decoder: Final[msgspec.json.Decoder[ChatReply]] = msgspec.json.Decoder(ChatReply)
room_log_decoder: Final[msgspec.json.Decoder[RoomLogEvent]] = msgspec.json.Decoder(RoomLogEvent)
feed_decoder: Final[msgspec.json.Decoder[FeedEvent]] = msgspec.json.Decoder(FeedEvent)
typing_decoder: Final[msgspec.json.Decoder[TypingEvent]] = msgspec.json.Decoder(TypingEvent)
