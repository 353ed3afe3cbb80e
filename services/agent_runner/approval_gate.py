"""Before a turn's tool calls run: ask for the approvals the policy requires, and park the run until decided."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from proto.runs import AgentSpec, ApprovalDecided, ApprovalRequested, Usage, handoff_tool_name
from services.agent_runner.provider import PendingCall
from services.agent_runner.writer import RunWriter
from shared.runs.approvals import ApprovalPolicy
from shared.runs.checkpoint import Checkpoint
from shared.runs.tools import Tool

DEFAULT_REJECTION = "The user rejected this tool call."


class RunParked(Exception):
    """The run waits for decisions on ``pending``: its runner lets it go (``shared.runs`` keeps it)."""

    def __init__(self, pending: list[ApprovalRequested], usage: Usage, turns: int) -> None:
        super().__init__(f"waiting for {len(pending)} approval(s)")
        self.pending = pending
        self.usage = usage
        self.turns = turns


@dataclass(frozen=True)
class Decided:
    """What a decision does to a call: run it (with these arguments), or give the model ``rejection``."""

    arguments: str | None = None  # None: as the model asked
    rejection: str | None = None  # set: not run; this is the tool's output (an error the model reads)


class ApprovalGate:
    """Applies the approval policy to a turn's calls; the decisions come from the run log (the checkpoint)."""

    def __init__(self, policy: ApprovalPolicy) -> None:
        self.policy = policy

    async def check(self, writer: RunWriter, agent: AgentSpec, owner: str | None, calls: list[PendingCall],
                    tools: Mapping[str, Tool], resume: Checkpoint | None, *, usage: Usage, turns: int
                    ) -> dict[str, Decided]:
        """The decisions on ``calls`` (by call id); ``RunParked`` when any still waits for one (its
        ``run_approval_requested`` stored first)."""
        requested = resume.requested if resume is not None else {}
        decisions = resume.decisions if resume is not None else {}
        reported = resume.outcomes if resume is not None else {}
        handoffs = {handoff_tool_name(name) for name in agent.handoffs}
        pending: list[ApprovalRequested] = []
        for call in calls:
            if call.name in handoffs or call.id in reported or call.id in decisions:
                continue
            if call.id in requested:
                pending.append(requested[call.id])
                continue
            tool = tools.get(call.name)
            need = self.policy.requirement(agent.name, call.name, call.arguments_json,
                                           always=tool is not None and tool.requires_approval)
            if need is None:
                continue
            approvers = list(dict.fromkeys([*([owner] if owner else []), *need.approvers]))
            pending.append(await writer.emit(
                ApprovalRequested, call_id=call.id, name=call.name, arguments=call.arguments_json, agent=agent.name,
                approvers=approvers, outcome=need.outcome,
                deadline=None if need.deadline is None else time.time() + need.deadline))
        if pending:
            raise RunParked(pending, usage, turns)
        return {call_id: decided(d) for call_id, d in decisions.items()}


def decided(decision: ApprovalDecided) -> Decided:
    if decision.approved:
        return Decided(arguments=decision.arguments)
    return Decided(rejection=decision.message or DEFAULT_REJECTION)


def with_arguments(call: PendingCall, arguments: str | None) -> PendingCall:
    """The call as it runs: with the approver's edited arguments, if any."""
    if arguments is None:
        return call
    return PendingCall(id=call.id, name=call.name, arguments=[arguments])


def encode_arguments(arguments: dict[str, object] | None) -> str | None:
    return None if arguments is None else msgspec.json.encode(arguments).decode()
