"""A run's checkpoint, derived from its stored events: the conversation and position after its last completed step.

Step boundaries are events the runner stores anyway: a model turn is complete when every tool call it started has
its ``run_tool_call_finished``; a tool call is complete when its ``run_tool_output`` (or ``run_handoff``) is
stored; a handoff is complete with ``run_agent_changed``. Everything after the last boundary is the interrupted
step, streamed afresh by the runner that continues the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from proto.runs import (
    AgentChanged,
    AgentSpec,
    ApprovalDecided,
    ApprovalRequested,
    Handoff,
    RunEvent,
    RunQueued,
    RunRequest,
    RunStarted,
    RunStepRestarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolOutput,
    handoff_tool_name,
)

MODEL_TURN: Final = "model_turn"  # the interrupted step is a model turn: it is asked of the model again
TOOL_CALLS: Final = "tool_calls"  # the model's turn stands; its tool calls (and handoff) are finished
_encoder: Final = msgspec.json.Encoder()


def handoff_output(target: str) -> str:
    """What the model sees as the result of the handoff call that moved the run to ``target``."""
    return _encoder.encode({"assistant": target}).decode()


def ignored_handoff_output(target: str) -> str:
    return f"ignored: the conversation was already handed to {target}"


@dataclass(frozen=True)
class CallRecord:
    """A tool call of a completed model turn."""

    id: str
    name: str
    arguments: str


@dataclass
class Checkpoint:
    """Where a run stands after its last completed step."""

    agent: str
    messages: list[dict[str, Any]]
    turns: int = 0  # model turns completed
    after_seq: int = 0  # the last event of the last completed step; later ones belong to the interrupted step
    last_seq: int = 0  # the newest stored event
    restarts: int = 0  # ``run_step_restarted`` events so far
    calls: list[CallRecord] | None = None  # the last turn's calls while its tool phase is unfinished
    outcomes: dict[str, tuple[str, bool]] = field(default_factory=dict)  # their reported (output, is_error)
    handoff: str | None = None  # the handoff reported in that tool phase
    # That tool phase's approvals (docs/approvals.md): calls that asked for a decision, and the decisions.
    requested: dict[str, ApprovalRequested] = field(default_factory=dict)
    decisions: dict[str, ApprovalDecided] = field(default_factory=dict)

    @property
    def undecided(self) -> list[ApprovalRequested]:
        """The approval requests of the unfinished tool phase that have no decision yet."""
        return [r for call_id, r in self.requested.items() if call_id not in self.decisions]

    @property
    def step(self) -> str:
        return TOOL_CALLS if self.calls is not None else MODEL_TURN

    @property
    def turn(self) -> int:
        """The turn the interrupted step belongs to."""
        return self.turns if self.calls is not None else self.turns + 1


def opening_messages(request: RunRequest, agent: AgentSpec) -> list[dict[str, Any]]:
    """The conversation a run starts with: the agent's and the request's instructions, the history, the input."""
    messages: list[dict[str, Any]] = []
    if agent.instructions:
        messages.append({"role": "system", "content": agent.instructions})
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    messages.extend(history_messages(request))
    return messages


def history_messages(request: RunRequest) -> list[dict[str, Any]]:
    """The request's history and input as model messages; no user message when the history ends with tool
    results and the input is empty (a client continuing after running its tools)."""
    messages: list[dict[str, Any]] = []
    for earlier in request.history:
        match earlier.role:
            case "system":
                messages.append({"role": "system", "content": earlier.content})
            case "user":
                messages.append({"role": "user", "content": earlier.content})
            case "assistant" if earlier.tool_calls:
                messages.append({"role": "assistant", "content": earlier.content or None, "tool_calls": [
                    {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in earlier.tool_calls]})
            case "assistant":
                messages.append({"role": "assistant", "content": earlier.content})
            case "tool":
                messages.append({"role": "tool", "tool_call_id": earlier.tool_call_id or "",
                                 "content": earlier.content})
    if request.input or not request.history or request.history[-1].role != "tool":
        messages.append({"role": "user", "content": request.input})
    return messages


def switch_instructions(messages: list[dict[str, Any]], agent: AgentSpec) -> None:
    """Replace the system instructions at the top of the conversation with ``agent``'s (a handoff)."""
    if messages and messages[0]["role"] == "system":
        messages.pop(0)
    if agent.instructions:
        messages.insert(0, {"role": "system", "content": agent.instructions})


def restore(request: RunRequest, agents: Mapping[str, AgentSpec], events: Iterable[RunEvent]) -> Checkpoint:
    """Fold a run's stored events (oldest first, not ended) into its checkpoint; ``KeyError`` for an agent the
    runner does not know (the run cannot be restored)."""
    agent = agents[request.agent]
    point = Checkpoint(agent=agent.name, messages=opening_messages(request, agent))
    text: list[str] = []
    started: dict[str, str] = {}  # call id -> name, in the order the model started them
    finished: dict[str, CallRecord] = {}
    for event in events:
        point.last_seq = event.seq
        match event:
            case RunQueued() | RunStarted():
                if not text and not started:
                    point.after_seq = event.seq
            case RunStepRestarted():
                point.restarts += 1
                point.after_seq = event.seq
                text, started, finished = [], {}, {}
            case TextDelta(delta=delta):
                text.append(delta)
            case ToolCallStarted(call_id=call_id, name=name):
                started[call_id] = name
            case ToolCallDelta():
                pass
            case ToolCallFinished(call_id=call_id, name=name, arguments=arguments):
                finished[call_id] = CallRecord(call_id, name, arguments)
                if set(finished) >= set(started):
                    calls = [finished[c] for c in started] + [c for i, c in finished.items() if i not in started]
                    point.messages.append({
                        "role": "assistant", "content": "".join(text) or None,
                        "tool_calls": [{"id": c.id, "type": "function",
                                        "function": {"name": c.name, "arguments": c.arguments}} for c in calls]})
                    point.turns += 1
                    point.calls, point.outcomes, point.handoff = calls, {}, None
                    point.requested, point.decisions = {}, {}
                    point.after_seq = event.seq
                    text, started, finished = [], {}, {}
                    _close_tool_phase(point, agent)
            case ToolOutput(call_id=call_id, output=output, is_error=is_error):
                point.outcomes[call_id] = (output, is_error)
                point.after_seq = event.seq
                _close_tool_phase(point, agent)
            case ApprovalRequested(call_id=call_id):
                point.requested[call_id] = event
                point.after_seq = event.seq
            case ApprovalDecided(call_id=call_id):
                point.decisions[call_id] = event
                point.after_seq = event.seq
            case Handoff(call_id=call_id, to_agent=target):
                point.outcomes[call_id] = (handoff_output(target), False)
                point.handoff = target
                point.after_seq = event.seq
            case AgentChanged(agent=name):
                agent = agents[name]
                point.agent = name
                if point.calls is not None:
                    point.messages.extend(tool_messages(point.calls, point.outcomes, point.handoff))
                point.calls, point.outcomes, point.handoff = None, {}, None
                switch_instructions(point.messages, agent)
                point.after_seq = event.seq
            case _:
                pass
    return point


def tool_messages(calls: list[CallRecord], outcomes: Mapping[str, tuple[str, bool]], handoff: str | None
                  ) -> list[dict[str, Any]]:
    """The tool results of a finished tool phase, in call order (extra handoff calls were ignored)."""
    messages = []
    for call in calls:
        output = outcomes[call.id][0] if call.id in outcomes else ignored_handoff_output(handoff or "")
        messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
    return messages


def _close_tool_phase(point: Checkpoint, agent: AgentSpec) -> None:
    """End the tool phase once every plain call is reported and no handoff is pending (``run_agent_changed``
    ends a phase with a handoff)."""
    if point.calls is None:
        return
    handoffs = {handoff_tool_name(name) for name in agent.handoffs}
    if any(call.name in handoffs for call in point.calls):
        return
    if all(call.id in point.outcomes for call in point.calls):
        point.messages.extend(tool_messages(point.calls, point.outcomes, None))
        point.calls, point.outcomes, point.handoff = None, {}, None
