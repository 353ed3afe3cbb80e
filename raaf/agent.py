"""``Agent``: an agent declared in Python, sent with each run to the agent-runners (which execute it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proto.runs import AgentSpec, is_agent_name
from shared.errors import BadRequestError


@dataclass(frozen=True, kw_only=True)
class Agent:
    """An agent: instructions, model, tools and the agents it may hand off to (the seed's ``Agent.new``).

    ``tools`` name tools of the runners' ``RAAF_TOOLS_MODULE`` (a function there may be passed as itself);
    tools run in the agent-runner, beside the model, not in this process. ``handoffs`` are other ``Agent``s
    (sent along) or names of agents from the runners' agents file. An agent defined here replaces a
    configured agent of the same name for the runs it is sent with; ``base_url`` and API keys can only be
    set in the agents file.
    """

    name: str
    instructions: str = ""
    model: str | None = None
    tools: Sequence[str | Callable[..., Any]] = ()
    handoffs: Sequence[Agent | str] = ()
    handoff_description: str | None = None
    max_turns: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not is_agent_name(self.name):
            raise BadRequestError(f"agent name {self.name!r} must be 1-48 letters, digits, '_' or '-'")

    def spec(self) -> AgentSpec:
        return AgentSpec(
            name=self.name, instructions=self.instructions, model=self.model,
            tools=[tool if isinstance(tool, str) else tool.__name__ for tool in self.tools],
            handoffs=[h if isinstance(h, str) else h.name for h in self.handoffs],
            handoff_description=self.handoff_description, max_turns=self.max_turns, temperature=self.temperature,
            max_tokens=self.max_tokens)

    def specs(self) -> list[AgentSpec]:
        """This agent and every ``Agent`` it can reach by handoffs, each once."""
        found: dict[str, AgentSpec] = {}
        pending: list[Agent] = [self]
        while pending:
            agent = pending.pop()
            spec = agent.spec()
            if agent.name in found:
                if found[agent.name] != spec:
                    raise BadRequestError(f"two different agents are named {agent.name!r}")
                continue
            found[agent.name] = spec
            pending.extend(h for h in agent.handoffs if isinstance(h, Agent))
        return list(found.values())
