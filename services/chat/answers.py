"""Agent answers: one run per user message, its events relayed into the room's feed in order, handoffs, cancels.

Every step is a write the fold can check, so a relay can be resumed after a restart (from the run's stored
events) and two replicas relaying the same run store each piece once (``Nats-Msg-Id`` ``<run>:<seq>``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from proto.chat import (
    AgentHandoff,
    AgentMessage,
    AnswerApproval,
    AnswerDecision,
    AnswerDelta,
    AnswerStarted,
    BusyPolicy,
    UserMessage,
)
from proto.errors import Error, ErrorCode
from proto.runs import (
    AgentSpec,
    ApprovalDecided,
    ApprovalRequested,
    ChatMessage,
    Handoff,
    RunAccepted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunRequest,
    RunStarted,
    TextDelta,
)
from proto.subjects import Subjects
from services.chat.decide import is_reference
from services.chat.metrics import ChatMetrics
from services.chat.room import Answer, ChatState, Room
from services.chat.settings import ChatSettings
from services.chat.store import ChatStore
from services.chat.traces import MessageTraces
from services.chat.writer import Planned, RoomWriter
from shared.chat.errors import ChatUnavailable
from shared.clients.runs import RunClient
from shared.errors import StreamingError
from shared.tracing import TRACING, linked_root, traceparent

log = logging.getLogger("raaf.chat.answers")

Spawn = Callable[..., asyncio.Task[Any]]
Status = Literal["completed", "failed", "cancelled"]
_REQUEST_TIMEOUT = 5.0
_IDLE_CHECK = 2.0  # seconds a quiet run waits before its runner's lease is checked
_STORE_AWAY_FOR = 30.0  # seconds a relay write is retried while the store cannot be reached


def new_answer_run_id() -> str:
    """A fresh, unguessable run id for an answer; ``answer_started`` records it before the run is requested, so a
    start repeated after a crash is the same run."""
    return f"chat-{secrets.token_hex(16)}"


class AnswerRelay:
    """Starts the answer to a room's next waiting message and relays its run into the room's feed."""

    def __init__(self, nc: NATS, js: JetStreamContext, subjects: Subjects, settings: ChatSettings,
                 state: ChatState, store: ChatStore, writer: RoomWriter, metrics: ChatMetrics, spawn: Spawn,
                 traces: MessageTraces | None = None) -> None:
        self.nc = nc
        self.subjects = subjects
        self.settings = settings
        self.state = state
        self.store = store
        self.writer = writer
        self.metrics = metrics
        self.spawn = spawn
        self.runs = RunClient(nc, js, subjects, request_timeout=_REQUEST_TIMEOUT, idle_check=_IDLE_CHECK)
        self._relays: dict[str, asyncio.Task[Any]] = {}  # run id -> its relay
        # message id -> the traceparent of the command that posted it: from the stored messages (any replica's)
        self.traces = MessageTraces() if traces is None else traces

    def remember(self, message_id: str) -> None:
        """Keep the current span's trace context for the message's answer to link to (before the fold reads it)."""
        if TRACING.on:
            self.traces.remember(message_id, traceparent())

    # ---- starting ------------------------------------------------------------------------------------------

    async def begin(self, room_id: str) -> None:
        """If nobody answers in the room and a message waits, store ``answer_started`` and start its run."""

        def plan() -> Planned | None:
            room = self.state.rooms.get(room_id)
            nxt = room.next_to_answer() if room is not None else None
            if room is None or nxt is None:
                return None
            event = AnswerStarted(room_id=room.id, run_id=new_answer_run_id(), agent=room.current_agent,
                                  in_reply_to=nxt.id, in_reply_seq=nxt.seq, at=time.time())
            return self.writer.to_answers(room, event, msg_id=f"{nxt.id}:answer-started")

        try:
            written = await self.writer.write(room_id, plan)
        except StreamingError as exc:
            log.warning("could not start an answer in room %s: %s", room_id, exc)
            return
        if written is None or written.duplicate:
            return
        assert isinstance(written.event, AnswerStarted)
        self._relay(room_id, written.event.run_id, fresh=True)

    async def recover(self) -> None:
        """After a (re)start: resume relaying answers in progress, and start answers that never started."""
        for room in list(self.state.rooms.values()):
            if room.answer is not None:
                self._relay(room.id, room.answer.run_id, fresh=False)
            elif room.unanswered:
                await self.begin(room.id)

    async def adopt_stalled(self) -> None:
        """Forever: relay here every answer in progress that no relay of this replica follows and whose feed
        has not moved for ``CHAT_RELAY_ADOPT_AFTER`` seconds (its replica stopped or died). Two relays of one
        answer are harmless: each step is planned from the fold and stored once under its ``Nats-Msg-Id``."""
        after = self.settings.relay_adopt_after
        seen: dict[str, tuple[int, float]] = {}  # run id -> (the room's feed position, since when)
        while True:
            await asyncio.sleep(after / 2)  # the sweep's own pace
            now = time.monotonic()
            still: dict[str, tuple[int, float]] = {}
            for room in list(self.state.rooms.values()):
                answer = room.answer
                if answer is None or answer.run_id in self._relays:
                    continue
                before = seen.get(answer.run_id)
                if before is None or before[0] != room.answer_seq:
                    still[answer.run_id] = (room.answer_seq, now)
                elif now - before[1] >= after:
                    log.info("relaying answer %s in room %s: no progress for %.1fs", answer.run_id, room.id,
                             now - before[1])
                    self._relay(room.id, answer.run_id, fresh=False)
                else:
                    still[answer.run_id] = before
            seen = still

    async def cancel(self, run_id: str, reason: str) -> None:
        """Ask the run's runner to cancel it (busy policy interrupt); its ``run_cancelled`` ends the answer."""
        reply = await self.runs.cancel(run_id, reason)
        if isinstance(reply, Error):
            log.info("cancel of run %s: %s", run_id, reply.message)

    async def stop(self) -> None:
        """Stop relaying (the runs go on); a restarted replica resumes each relay from the stored events."""
        tasks = list(self._relays.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def relaying(self) -> int:
        return len(self._relays)

    def _relay(self, room_id: str, run_id: str, *, fresh: bool) -> None:
        if run_id in self._relays:
            return
        task = self.spawn(self._answer(room_id, run_id, fresh=fresh), name=f"answer-{run_id}")
        self._relays[run_id] = task
        task.add_done_callback(lambda _: self._relays.pop(run_id, None))

    # ---- one answer ----------------------------------------------------------------------------------------

    async def _answer(self, room_id: str, run_id: str, *, fresh: bool) -> None:
        started = time.monotonic()
        try:
            status = await self._run(room_id, run_id, fresh=fresh)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("answer %s failed in the relay", run_id)
            await self._finish(room_id, run_id, "failed", "", ErrorCode.INTERNAL, f"relay failed: {exc}")
            status = "failed"
        self.metrics.answers.labels(status=status).inc()
        self.metrics.answer_seconds.observe(time.monotonic() - started)
        await self.begin(room_id)

    async def _run(self, room_id: str, run_id: str, *, fresh: bool) -> Status:
        """The answer in a span of its own trace, linked to the span that posted the message it answers."""
        room = self.state.rooms.get(room_id)
        answer = room.answer if room is not None else None
        message_id = answer.in_reply_to if answer is not None and answer.run_id == run_id else ""
        attributes = {"raaf.chat.room_id": room_id, "raaf.chat.message_id": message_id, "raaf.run.id": run_id}
        with linked_root("raaf.chat", "chat answer", self.traces.of(message_id), attributes):
            return await self._answer_run(room_id, run_id, fresh=fresh)

    async def _answer_run(self, room_id: str, run_id: str, *, fresh: bool) -> Status:
        if fresh or await self._last_event_seq(run_id) == 0:
            error = await self._request(room_id, run_id)
            if error is not None:
                await self._finish(room_id, run_id, "failed", "", error.code, error.message)
                return "failed"
        return await self._relay_events(room_id, run_id)

    async def _last_event_seq(self, run_id: str) -> int:
        """The seq of the run's newest stored event; 0 if it has none (or no runner ever made the stream)."""
        try:
            last = await self.runs.log.last(run_id)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return 0
        return 0 if last is None else last.seq

    async def _relay_events(self, room_id: str, run_id: str) -> Status:
        text: list[str] = []
        first = True
        started = time.monotonic()
        async for event, _ in self.runs.follow(run_id):
            if event.seq == 1 and (not isinstance(event, RunStarted | RunQueued) or event.room != room_id):
                # Not the run this room requested: never relay someone else's run as the room's answer.
                await self._finish(room_id, run_id, "failed", "", ErrorCode.CONFLICT,
                                   "the answer's run id is taken by a run of another room or client")
                return "failed"
            match event:
                case TextDelta(seq=seq, agent=agent, delta=delta):
                    text.append(delta)
                    if first:
                        self.metrics.first_delta_seconds.observe(time.monotonic() - started)
                        first = False
                    await self._delta(room_id, run_id, seq, agent, delta)
                case Handoff(seq=seq, from_agent=from_agent, to_agent=to_agent):
                    await self._handoff(room_id, run_id, seq, from_agent, to_agent)
                case ApprovalRequested() | ApprovalDecided():
                    await self._approval(room_id, run_id, event)
                case RunCompleted(agent=agent, output=output):
                    await self._finish(room_id, run_id, "completed", output or "".join(text), agent=agent)
                    return "completed"
                case RunFailed(code=code, message=message):
                    await self._finish(room_id, run_id, "failed", "".join(text), code, message)
                    return "failed"
                case RunCancelled(reason=reason):
                    await self._finish(room_id, run_id, "cancelled", "".join(text), ErrorCode.CANCELLED, reason)
                    return "cancelled"
                case _:
                    pass
        return "failed"

    async def _request(self, room_id: str, run_id: str) -> Error | None:
        """Send the run request (the room's agent, the message and the conversation before it)."""
        room = self.state.rooms.get(room_id)
        if room is None or room.answer is None or room.answer.run_id != run_id:
            return Error(code=ErrorCode.NOT_FOUND, message="the answer is no longer expected")
        message, history = await self._conversation(room, room.answer)
        if message is None:
            return Error(code=ErrorCode.NOT_FOUND, message="the message to answer is gone from the history")
        request = RunRequest(run_id=run_id, agent=room.answer.agent, input=message.text, history=history,
                             agents=self._agents(room), timeout=self.settings.answer_timeout,
                             metadata={"room": room.name, "room_id": room.id, "user": message.user,
                                       "message_id": message.id}, room=room.id,
                             owner=room.created_by or None)  # the room's creator may decide its approvals
        reply = await self.runs.start(request)
        # ``conflict``: the run exists already (a request repeated after a restart): follow it.
        if isinstance(reply, RunAccepted) or reply.code == ErrorCode.CONFLICT:
            self._interrupt_if_superseded(room_id, run_id)
            return None
        return reply

    def _interrupt_if_superseded(self, room_id: str, run_id: str) -> None:
        """A message that arrived while the run was being requested may have asked to interrupt it."""
        room = self.state.rooms.get(room_id)
        if (room is not None and room.config.busy_policy is BusyPolicy.INTERRUPT and room.unanswered
                and room.answer is not None and room.answer.run_id == run_id):
            self.spawn(self.cancel(run_id, "interrupted by a newer message"), name=f"cancel-{run_id}")

    async def _conversation(self, room: Room, answer: Answer) -> tuple[UserMessage | None, list[ChatMessage]]:
        """The message answered and up to CHAT_CONTEXT_MESSAGES conversation messages before it."""
        recent = list(room.recent)
        context = self.settings.context_messages
        at = recent.index(answer.message_seq) if answer.message_seq in recent else None
        first = recent[max(0, at - context)] if at is not None else answer.message_seq
        wanted = (at - recent.index(first) + 1) if at is not None else 1
        messages = await self.store.read_messages(room.id, first, limit=wanted)
        if not messages or not isinstance(messages[-1], UserMessage) or messages[-1].id != answer.in_reply_to:
            return None, []
        history: list[ChatMessage] = []
        for earlier in messages[:-1]:
            if isinstance(earlier, UserMessage):
                history.append(ChatMessage(role="user", content=f"{earlier.user}: {earlier.text}"))
            elif isinstance(earlier, AgentMessage) and earlier.text:
                history.append(ChatMessage(role="assistant", content=earlier.text))
        return messages[-1], history

    def _agents(self, room: Room) -> list[AgentSpec]:
        """The room's own agents; each may hand off to the others unless it names its handoffs itself."""
        names = room.agent_names()
        out = []
        for spec in room.agents.values():
            if is_reference(spec):
                continue
            if not self.settings.enable_handoffs:
                spec = msgspec.structs.replace(spec, handoffs=[])
            elif not spec.handoffs:
                spec = msgspec.structs.replace(spec, handoffs=[n for n in names if n != spec.name])
            out.append(spec)
        return out

    # ---- relaying ------------------------------------------------------------------------------------------

    async def _delta(self, room_id: str, run_id: str, seq: int, agent: str, delta: str) -> None:
        def plan() -> Planned | None:
            room = self.state.rooms.get(room_id)
            if room is None or room.answer is None or room.answer.run_id != run_id or room.answer.relayed_seq >= seq:
                return None  # relayed before (a resumed relay), or the answer ended
            event = AnswerDelta(room_id=room_id, run_id=run_id, agent=agent, seq=seq, delta=delta)
            return self.writer.to_answers(room, event, msg_id=f"{run_id}:{seq}", guarded=False)

        await self._write(room_id, plan)

    async def _approval(self, room_id: str, run_id: str, event: ApprovalRequested | ApprovalDecided) -> None:
        """A wait for a decision (or the decision) as a feed event the room's participants see."""
        def plan() -> Planned | None:
            room = self.state.rooms.get(room_id)
            if room is None or room.answer is None or room.answer.run_id != run_id or \
                    room.answer.relayed_seq >= event.seq:
                return None  # relayed before (a resumed relay), or the answer ended
            feed: AnswerApproval | AnswerDecision
            if isinstance(event, ApprovalRequested):
                feed = AnswerApproval(room_id=room_id, run_id=run_id, call_id=event.call_id, seq=event.seq,
                                      name=event.name, arguments=event.arguments, agent=event.agent,
                                      approvers=event.approvers, deadline=event.deadline, at=event.at)
            else:
                feed = AnswerDecision(room_id=room_id, run_id=run_id, call_id=event.call_id, seq=event.seq,
                                      approved=event.approved, decided_by=event.decided_by, message=event.message,
                                      at=event.at)
            return self.writer.to_answers(room, feed, msg_id=f"{run_id}:{event.seq}", guarded=False)

        await self._write(room_id, plan)

    async def _handoff(self, room_id: str, run_id: str, seq: int, from_agent: str, to_agent: str) -> None:
        def plan() -> Planned | None:
            room = self.state.rooms.get(room_id)
            if room is None or room.answer is None or room.answer.run_id != run_id:
                return None
            if room.current_agent == to_agent:
                return None  # stored before this relay was resumed
            event = AgentHandoff(room_id=room_id, from_agent=from_agent, to_agent=to_agent, by="agent",
                                 run_id=run_id, count=room.messages, at=time.time())
            return self.writer.to_messages(room, event, msg_id=f"{run_id}:handoff:{seq}")

        if await self._write(room_id, plan):
            self.metrics.handoffs.labels(by="agent").inc()

    async def _finish(self, room_id: str, run_id: str, status: Status, text: str, code: ErrorCode | None = None,
                      reason: str | None = None, agent: str | None = None) -> None:
        def plan() -> Planned | None:
            room = self.state.rooms.get(room_id)
            if room is None or room.answer is None or room.answer.run_id != run_id:
                return None  # finished by another relay
            answer = room.answer
            event = AgentMessage(id=run_id, room_id=room_id, agent=agent or answer.agent, text=text,
                                 in_reply_to=answer.in_reply_to, status=status, error=code, reason=reason,
                                 count=room.messages + 1, at=time.time())
            return self.writer.to_messages(room, event, msg_id=f"{run_id}:done")

        await self._write(room_id, plan)

    async def _write(self, room_id: str, plan: Callable[[], Planned | None]) -> bool:
        """Write one step of the relay; while the store is away (a NATS server or stream leader lost), retry:
        every step has its ``Nats-Msg-Id`` and is planned again from the fold, so a retry stores it once."""
        deadline = time.monotonic() + _STORE_AWAY_FOR
        delay = 0.05
        while True:
            try:
                return await self.writer.write(room_id, plan) is not None
            except (ChatUnavailable, nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    log.warning("relay write in room %s failed for %.0fs: %s", room_id, _STORE_AWAY_FOR, exc)
                    return False
                await asyncio.sleep(delay)  # backoff while the cluster elects a leader
                delay = min(1.0, delay * 2)
            except StreamingError as exc:
                log.warning("relay write in room %s failed: %s", room_id, exc)
                return False
