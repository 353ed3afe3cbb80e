"""A run's stored events rendered as AG-UI events: text messages, tool calls with results, a step per agent
(a handoff finishes one and starts the next), the run's end with the frontend tool calls it left, and a wait for
approval as AG-UI's interrupt outcome."""

from __future__ import annotations

import datetime
from typing import Any, Final

import msgspec

from proto.agui import (
    AgInterrupt,
    AnyAgEvent,
    CustomEvent,
    Outcome,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from proto.runs import (
    AgentChanged,
    ApprovalDecided,
    ApprovalRequested,
    Handoff,
    RunCancelled,
    RunCompleted,
    RunEvent,
    RunFailed,
    RunQueued,
    RunStarted,
    RunStepRestarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolOutput,
)
from shared.runs.continuation import Continuation

THREAD_KEY = "raaf.agui.thread"  # run metadata: the AG-UI thread the run belongs to
STEP_RESTARTED = "raaf.step_restarted"  # the CUSTOM event a restart shows as
APPROVAL_DECIDED = "raaf.approval_decided"  # the CUSTOM event a decision shows as
TOOL_APPROVAL = "tool_approval"  # the reason of an interrupt that waits for a decision on a tool call
DECISION_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"},
                   "message": {"type": "string", "description": "a rejection's message for the model"},
                   "editedArgs": {"type": "object", "description": "an approval's replacement arguments"}},
    "required": ["approved"],
}


def interrupt_id(run_id: str, call_id: str) -> str:
    """The interrupt's id names the run and the call (a run id has no ``:``), so a resume finds both."""
    return f"{run_id}:{call_id}"


def parse_interrupt_id(value: str) -> tuple[str, str] | None:
    run_id, colon, call_id = value.partition(":")
    return (run_id, call_id) if colon and run_id and call_id else None


def to_interrupt(request: ApprovalRequested) -> AgInterrupt:
    expires = datetime.datetime.fromtimestamp(request.deadline, datetime.UTC).isoformat() \
        if request.deadline is not None else None
    interrupt = AgInterrupt(
        id=interrupt_id(request.run_id, request.call_id), reason=TOOL_APPROVAL, tool_call_id=request.call_id,
        message=f"Approve {request.name} with {request.arguments}?", response_schema=DECISION_SCHEMA,
        metadata={"runId": request.run_id, "tool": request.name, "arguments": request.arguments,
                  "agent": request.agent, "approvers": request.approvers, "seq": request.seq,
                  "outcome": request.outcome})
    return interrupt if expires is None else msgspec.structs.replace(interrupt, expires_at=expires)


class AgUiRenderer:
    """Feed it a run's events in seq order; it returns the AG-UI events each one makes.

    A restart shows as a ``CUSTOM`` event (``raaf.step_restarted``); the text message being written stays open
    and continues past what it already holds (``Continuation``: a client's message list cannot lose text), and
    tool calls the interrupted step left open are ended.

    A run that waits for approval ends the AG-UI run (``interrupt``); the client's resume starts a new AG-UI run
    (``resumed``, its own ``runId``) that goes on with the same run's events.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.agui_run_id = run_id  # the AG-UI run being streamed: the run's id, then each resume's own
        self.thread_id = ""
        self._step: str | None = None
        self._message: str | None = None  # the text message being streamed
        self._last_message: str | None = None
        self._messages = 0
        self._calls: list[str] = []  # tool calls started and not ended
        self._continuation = Continuation()

    def _end_text(self, out: list[AnyAgEvent]) -> None:
        if self._message is not None:
            out.append(TextMessageEndEvent(message_id=self._message))
            self._message = None

    def _end_step(self, out: list[AnyAgEvent]) -> None:
        self._end_text(out)
        if self._step is not None:
            out.append(StepFinishedEvent(step_name=self._step))
            self._step = None

    def feed(self, event: RunEvent) -> list[AnyAgEvent]:
        out: list[AnyAgEvent] = []
        text = self._continuation.feed(event)
        match event:
            case RunQueued() | RunStarted() if event.seq == 1:
                self.thread_id = event.metadata.get(THREAD_KEY, "")
                out.append(RunStartedEvent(thread_id=self.thread_id, run_id=self.agui_run_id))
                self._step = event.agent
                out.append(StepStartedEvent(step_name=event.agent))
            case TextDelta() if text:
                if self._message is None:
                    self._messages += 1
                    self._message = self._last_message = f"{self.run_id}-m{self._messages}"
                    out.append(TextMessageStartEvent(message_id=self._message))
                out.append(TextMessageContentEvent(message_id=self._message, delta=text))
            case RunStepRestarted(turn=turn, step=step, restart=restart, reason=reason):
                for call_id in self._calls:
                    out.append(ToolCallEndEvent(tool_call_id=call_id))
                self._calls.clear()
                out.append(CustomEvent(name=STEP_RESTARTED, value={
                    "turn": turn, "step": step, "restart": restart, "reason": reason, "seq": event.seq}))
            case ToolCallStarted(call_id=call_id, name=name):
                self._end_text(out)
                self._calls.append(call_id)
                if self._last_message is None:
                    out.append(ToolCallStartEvent(tool_call_id=call_id, tool_call_name=name))
                else:
                    out.append(ToolCallStartEvent(tool_call_id=call_id, tool_call_name=name,
                                                  parent_message_id=self._last_message))
            case ToolCallDelta(call_id=call_id, delta=delta) if delta:
                out.append(ToolCallArgsEvent(tool_call_id=call_id, delta=delta))
            case ToolCallFinished(call_id=call_id):
                if call_id in self._calls:
                    self._calls.remove(call_id)
                out.append(ToolCallEndEvent(tool_call_id=call_id))
            case ToolOutput(call_id=call_id, output=output):
                out.append(ToolCallResultEvent(message_id=f"{call_id}-result", tool_call_id=call_id, content=output))
            case Handoff(call_id=call_id, to_agent=target):
                out.append(ToolCallResultEvent(message_id=f"{call_id}-result", tool_call_id=call_id,
                                               content=f'{{"assistant":"{target}"}}'))
                self._end_step(out)
            case AgentChanged(agent=agent):
                self._end_step(out)
                self._step = agent
                out.append(StepStartedEvent(step_name=agent))
            case RunCompleted(client_calls=calls):
                self._end_step(out)
                outcome = Outcome(type="success", pending_tool_call_ids=[c.call_id for c in calls]) if calls \
                    else Outcome(type="success")
                out.append(RunFinishedEvent(thread_id=self.thread_id, run_id=self.agui_run_id, outcome=outcome))
            case RunFailed(code=code, message=message):
                self._end_step(out)
                out.append(RunErrorEvent(message=message, code=code.value))
            case RunCancelled():
                self._end_step(out)
                out.append(RunFinishedEvent(thread_id=self.thread_id, run_id=self.agui_run_id,
                                            outcome=Outcome(type="cancelled")))
            case ApprovalDecided(call_id=call_id, approved=approved, decided_by=who, message=message):
                out.append(CustomEvent(name=APPROVAL_DECIDED, value={
                    "callId": call_id, "approved": approved, "decidedBy": who, "message": message,
                    "seq": event.seq}))
        return out

    def interrupt(self, requests: list[ApprovalRequested]) -> list[AnyAgEvent]:
        """The run waits for these decisions: the AG-UI run finishes with an ``interrupt`` outcome (the step
        stays this renderer's, for ``resumed``)."""
        out: list[AnyAgEvent] = []
        self._end_text(out)
        if self._step is not None:
            out.append(StepFinishedEvent(step_name=self._step))
        out.append(RunFinishedEvent(thread_id=self.thread_id, run_id=self.agui_run_id, outcome=Outcome(
            type="interrupt", interrupts=[to_interrupt(r) for r in requests])))
        return out

    def resumed(self, agui_run_id: str, thread_id: str) -> list[AnyAgEvent]:
        """A resume's AG-UI run starts where the interrupted one finished (fed the events up to there)."""
        self._end_text([])
        self.agui_run_id = agui_run_id
        self.thread_id = thread_id or self.thread_id
        out: list[AnyAgEvent] = [RunStartedEvent(thread_id=self.thread_id, run_id=agui_run_id)]
        if self._step is not None:
            out.append(StepStartedEvent(step_name=self._step))
        return out
