"""Rooms as the fold of their events: deterministic and free of I/O, so a restart is a replay of the streams."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from proto.chat import (
    AgentAdded,
    AgentHandoff,
    AgentMessage,
    AnswerApproval,
    AnswerDecision,
    AnswerDelta,
    AnswerStarted,
    BusyPolicy,
    FeedEvent,
    Participant,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomConfig,
    RoomCreated,
    RoomDeleted,
    RoomInfo,
    RoomLogEvent,
    RoomSnapshot,
    RoomSummary,
    Session,
    UserMessage,
)
from proto.runs import AgentSpec
from proto.stats import ChatRoomStats, ChatSystemStats

RATE_WINDOW = 60.0  # seconds: CHAT_RATE_LIMIT counts messages per minute
_CLIENT_IDS = 512  # recent (user, client_id) pairs a room remembers, so a retried post is stored once


@dataclass(slots=True)
class Pending:
    """A user message waiting for its answer."""

    id: str
    seq: int
    user: str
    at: float


@dataclass(slots=True)
class Answer:
    """An answer being streamed: its run, and the last run event the relay copied into the feed."""

    run_id: str
    agent: str
    in_reply_to: str
    message_seq: int
    started_at: float
    relayed_seq: int = 0
    last_activity: float = 0.0


@dataclass
class Room:
    id: str
    name: str
    config: RoomConfig
    primary: str
    created_at: float
    created_by: str = ""
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    sessions: dict[tuple[str, str], Session] = field(default_factory=dict)  # (user, session) -> session
    users: dict[str, list[str]] = field(default_factory=dict)  # user -> its sessions, in join order
    current_agent: str = ""
    messages: int = 0
    unanswered: list[Pending] = field(default_factory=list)
    answer: Answer | None = None
    # The stream sequence of the last event applied from each of the room's subjects: the next write's
    # Nats-Expected-Last-Subject-Sequence, and the rule that skips an event applied already.
    log_seq: int = 0
    msg_seq: int = 0
    answer_seq: int = 0
    recent: deque[int] = field(default_factory=deque)  # feed sequences of the newest conversation messages
    log_events: int = 0  # room log events since the last snapshot
    client_ids: OrderedDict[tuple[str, str], tuple[str, int, int]] = field(default_factory=OrderedDict)
    last_message_at: float = 0.0

    @classmethod
    def created(cls, event: RoomCreated, *, keep: int) -> Room:
        room = cls(id=event.room_id, name=event.name, config=event.config, primary=event.agent,
                   created_at=event.at, created_by=event.by, current_agent=event.agent,
                   recent=deque(maxlen=max(1, keep)))
        for agent in event.agents:
            room.agents[agent.name] = agent
        return room

    # ---- the fold ------------------------------------------------------------------------------------------

    def apply_log(self, event: AgentAdded | ParticipantJoined | ParticipantLeft | RoomSnapshot, seq: int) -> bool:
        if seq <= self.log_seq:
            return False
        self.log_seq = seq
        self.log_events += 1
        match event:
            case AgentAdded(agent=agent):
                self.agents[agent.name] = agent
            case ParticipantJoined(user=user, session=session, owner=owner, at=at):
                self._add_session(Session(user=user, session=session, owner=owner, joined_at=at))
            case ParticipantLeft(user=user, session=session):
                self._remove_session(user, session)
            case RoomSnapshot(sessions=sessions, agents=agents):
                self.sessions.clear()
                self.users.clear()
                for session_ in sessions:
                    self._add_session(session_)
                self.agents = {agent.name: agent for agent in agents}
                self.log_events = 0
        return True

    def apply_feed(self, event: FeedEvent, seq: int) -> bool:
        match event:
            case UserMessage() | AgentMessage() | AgentHandoff():
                if seq <= self.msg_seq:
                    return False
                self.msg_seq = seq
                self.recent.append(seq)
                self.messages = event.count
                self.last_message_at = event.at
                self._apply_message(event, seq)
            case AnswerStarted(run_id=run_id, agent=agent, in_reply_to=in_reply_to, in_reply_seq=message_seq, at=at):
                if seq <= self.answer_seq:
                    return False
                self.answer_seq = seq
                self.answer = Answer(run_id=run_id, agent=agent, in_reply_to=in_reply_to, message_seq=message_seq,
                                     started_at=at, last_activity=at)
                # Answering a message settles every older one waiting (busy policy interrupt skips them).
                for i, pending in enumerate(self.unanswered):
                    if pending.id == in_reply_to:
                        del self.unanswered[: i + 1]
                        break
            case AnswerDelta(run_id=run_id, agent=agent, seq=run_seq):
                if seq <= self.answer_seq:
                    return False
                self.answer_seq = seq
                if self.answer is not None and self.answer.run_id == run_id:
                    self.answer.relayed_seq = max(self.answer.relayed_seq, run_seq)
                    self.answer.agent = agent
            case AnswerApproval(run_id=run_id, seq=run_seq) | AnswerDecision(run_id=run_id, seq=run_seq):
                if seq <= self.answer_seq:
                    return False
                self.answer_seq = seq
                if self.answer is not None and self.answer.run_id == run_id:
                    self.answer.relayed_seq = max(self.answer.relayed_seq, run_seq)
        return True

    def _apply_message(self, event: UserMessage | AgentMessage | AgentHandoff, seq: int) -> None:
        match event:
            case UserMessage(id=id_, user=user, agent=agent, client_id=client_id, count=count, at=at):
                self.current_agent = agent
                self.unanswered.append(Pending(id=id_, seq=seq, user=user, at=at))
                if client_id is not None:
                    self.client_ids[(user, client_id)] = (id_, seq, count)
                    while len(self.client_ids) > _CLIENT_IDS:
                        self.client_ids.popitem(last=False)
            case AgentMessage(id=run_id, agent=agent, in_reply_to=in_reply_to):
                self.current_agent = agent
                if self.answer is not None and self.answer.run_id == run_id:
                    self.answer = None
                self.unanswered = [p for p in self.unanswered if p.id != in_reply_to]
            case AgentHandoff(to_agent=to_agent):
                self.current_agent = to_agent

    def _add_session(self, session: Session) -> None:
        key = (session.user, session.session)
        if key in self.sessions:
            return
        self.sessions[key] = session
        self.users.setdefault(session.user, []).append(session.session)

    def _remove_session(self, user: str, session: str) -> None:
        if self.sessions.pop((user, session), None) is None:
            return
        sessions = self.users.get(user, [])
        if session in sessions:
            sessions.remove(session)
        if not sessions:
            self.users.pop(user, None)

    # ---- questions the service asks --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """The agent answers, or a message waits for it."""
        return self.answer is not None or bool(self.unanswered)

    def next_to_answer(self) -> Pending | None:
        """The message the agent answers next: the oldest waiting, or the newest under busy policy interrupt."""
        if self.answer is not None or not self.unanswered:
            return None
        if self.config.busy_policy is BusyPolicy.INTERRUPT:
            return self.unanswered[-1]
        return self.unanswered[0]

    def has_session(self, user: str, session: str) -> bool:
        return (user, session) in self.sessions

    def agent_names(self) -> list[str]:
        names = [self.primary] + [name for name in self.agents if name != self.primary]
        return names

    def history_from(self, limit: int) -> int:
        """The feed sequence of the oldest of the newest ``limit`` conversation messages (0: none)."""
        if limit <= 0 or not self.recent:
            return 0
        return self.recent[-min(limit, len(self.recent))]

    def live_from(self) -> int:
        return max(self.msg_seq, self.answer_seq) + 1

    def participants(self) -> list[Participant]:
        out = []
        for user, sessions in self.users.items():
            first = self.sessions[(user, sessions[0])]
            out.append(Participant(user=user, sessions=len(sessions), joined_at=first.joined_at))
        return out

    def info(self) -> RoomInfo:
        return RoomInfo(id=self.id, name=self.name, config=self.config, agent=self.current_agent,
                        primary=self.primary, agents=self.agent_names(), participants=self.participants(),
                        messages=self.messages, answering=self.answer is not None, queued=len(self.unanswered),
                        created_at=self.created_at, created_by=self.created_by)

    def summary(self) -> RoomSummary:
        return RoomSummary(id=self.id, name=self.name, restricted=self.config.restricted,
                           participants=len(self.users), max_participants=self.config.max_participants,
                           messages=self.messages, agent=self.current_agent)

    def snapshot(self, at: float) -> RoomSnapshot:
        return RoomSnapshot(room_id=self.id, sessions=list(self.sessions.values()),
                            agents=list(self.agents.values()), at=at)


class ChatState:
    """Every room, folded from the directory, the room logs and the feed, plus who posted in the last minute."""

    def __init__(self, *, keep_recent: int) -> None:
        self.keep_recent = keep_recent  # feed sequences remembered per room (history and agent context)
        self.rooms: dict[str, Room] = {}
        self.by_name: dict[str, str] = {}
        self.dir_seq = 0
        self.posts: dict[str, deque[float]] = {}

    def apply(self, event: RoomLogEvent | FeedEvent, seq: int) -> Room | None:
        """Fold one stored event; returns the room it changed, or None if it was applied already or is moot."""
        match event:
            case RoomCreated():
                if seq <= self.dir_seq:
                    return None
                self.dir_seq = seq
                room = Room.created(event, keep=max(self.keep_recent, event.config.message_history))
                self.rooms[room.id] = room
                self.by_name[room.name] = room.id
                return room
            case RoomDeleted(room_id=deleted_id, name=name):
                if seq <= self.dir_seq:
                    return None
                self.dir_seq = seq
                gone = self.rooms.pop(deleted_id, None)
                if self.by_name.get(name) == deleted_id:
                    del self.by_name[name]
                return gone
            case AgentAdded() | ParticipantJoined() | ParticipantLeft() | RoomSnapshot():
                target = self.rooms.get(event.room_id)
                return target if target is not None and target.apply_log(event, seq) else None
            case RoomClosed():
                return None  # follows the directory's room_deleted, which removed the room
            case _:
                target = self.rooms.get(event.room_id)
                if target is None or not target.apply_feed(event, seq):
                    return None
                if isinstance(event, UserMessage):
                    self._count_post(event.user, event.at)
                return target

    def room_named(self, name: str) -> Room | None:
        room_id = self.by_name.get(name)
        return None if room_id is None else self.rooms.get(room_id)

    def posts_within(self, user: str, now: float) -> deque[float]:
        """The user's posts in the minute before ``now`` (older ones are dropped)."""
        posts = self.posts.get(user)
        if posts is None:
            return deque()
        while posts and posts[0] <= now - RATE_WINDOW:
            posts.popleft()
        if not posts:
            del self.posts[user]
        return posts

    def _count_post(self, user: str, at: float) -> None:
        posts = self.posts.setdefault(user, deque())
        posts.append(at)
        while posts and posts[0] <= at - RATE_WINDOW:
            posts.popleft()

    def stats(self) -> ChatSystemStats:
        sessions: set[str] = set()
        users: set[str] = set()
        agents: set[str] = set()
        for room in self.rooms.values():
            sessions.update(session for _, session in room.sessions)
            users.update(room.users)
            agents.update(room.agent_names())
        return ChatSystemStats(
            connected_clients=len(sessions),
            active_sessions=len(users),
            active_streams=sum(1 for room in self.rooms.values() if room.answer is not None),
            available_agents=len(agents),
            total_messages=sum(room.messages for room in self.rooms.values()),
            rooms={room.name: ChatRoomStats(participants=len(room.users), messages=room.messages)
                   for room in self.rooms.values()},
        )
