"""A run's stored events rendered as AG-UI events: text messages, tool calls with results, a step per agent
(a handoff finishes one and starts the next), and the run's end with the frontend tool calls it left."""

from __future__ import annotations

from proto.agui import (
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


class AgUiRenderer:
    """Feed it a run's events in seq order; it returns the AG-UI events each one makes.

    A restart shows as a ``CUSTOM`` event (``raaf.step_restarted``); the text message being written stays open
    and continues past what it already holds (``Continuation``: a client's message list cannot lose text), and
    tool calls the interrupted step left open are ended.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
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
                out.append(RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id))
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
                out.append(RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, outcome=outcome))
            case RunFailed(code=code, message=message):
                self._end_step(out)
                out.append(RunErrorEvent(message=message, code=code.value))
            case RunCancelled():
                self._end_step(out)
                out.append(RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id,
                                            outcome=Outcome(type="cancelled")))
        return out
