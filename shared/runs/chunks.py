"""What a streamed run yields (``RunChunk``) and what a finished run returns (``RunResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proto.runs import (
    ApprovalRequested,
    RunCompleted,
    RunEvent,
    TextDelta,
    ToolCallFinished,
    ToolOutput,
    Usage,
)
from shared.runs.continuation import Continuation, transcript


@dataclass(frozen=True)
class ToolCallInfo:
    """A tool call the model made: its complete JSON ``arguments``, and ``output`` once the tool ran."""

    id: str
    name: str
    arguments: str
    output: str | None = None
    is_error: bool = False


@dataclass(frozen=True)
class RunChunk:
    """One event of a streamed run, the way the seed's chunks read: ``content`` is the text it adds (or
    None), ``tool_calls`` the calls it completes or reports (or None); ``event`` is the typed run event."""

    event: RunEvent
    content: str | None = None
    tool_calls: list[ToolCallInfo] | None = None

    @property
    def run_id(self) -> str:
        return self.event.run_id

    @property
    def approval(self) -> ApprovalRequested | None:
        """The tool call waiting for a decision (``Runner.approve`` / ``reject`` it), on its chunk only."""
        return self.event if isinstance(self.event, ApprovalRequested) else None

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def type(self) -> str:
        return str(type(self.event).__struct_config__.tag)

    def __getitem__(self, key: str) -> Any:
        """``chunk["content"]``, as the seed's hash chunks are read."""
        return getattr(self, key)

    @classmethod
    def of(cls, event: RunEvent) -> RunChunk:
        match event:
            case TextDelta(delta=delta):
                return cls(event, content=delta)
            case ToolCallFinished(call_id=call_id, name=name, arguments=arguments):
                return cls(event, tool_calls=[ToolCallInfo(call_id, name, arguments)])
            case ToolOutput(call_id=call_id, name=name, output=output, is_error=is_error):
                return cls(event, tool_calls=[ToolCallInfo(call_id, name, "", output, is_error)])
            case _:
                return cls(event)


class ChunkStream:
    """A run's events as the chunks a caller may simply concatenate, restarts hidden: after a restart the text
    already yielded of the interrupted step is not yielded again (``shared.runs.continuation``)."""

    def __init__(self) -> None:
        self._text = Continuation()

    def chunk(self, event: RunEvent) -> RunChunk | None:
        """The chunk for ``event``; None for a text delta that repeats what was yielded."""
        text = self._text.feed(event)
        if isinstance(event, TextDelta):
            return None if text is None else RunChunk(event, content=text)
        return RunChunk.of(event)


@dataclass(frozen=True)
class RunResult:
    """A completed run: ``output`` is the final answer; ``messages`` reads like the seed's ``result.messages``."""

    run_id: str
    input: str
    output: str
    agent: str
    usage: Usage
    turns: int
    events: list[RunEvent] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.input}, {"role": "assistant", "content": self.output}]

    @property
    def final_output(self) -> str:
        return self.output

    @property
    def tool_calls(self) -> list[ToolCallInfo]:
        outputs = {e.call_id: e for e in self.events if isinstance(e, ToolOutput)}
        calls = []
        for event in self.events:
            if isinstance(event, ToolCallFinished):
                out = outputs.get(event.call_id)
                calls.append(ToolCallInfo(event.call_id, event.name, event.arguments,
                                          out.output if out else None, out.is_error if out else False))
        return calls

    @classmethod
    def of(cls, input: str, events: list[RunEvent]) -> RunResult:
        """The result of a completed run's events (those of a step interrupted by a restart left out)."""
        events = transcript(events)
        final = events[-1]
        assert isinstance(final, RunCompleted)
        return cls(run_id=final.run_id, input=input, output=final.output, agent=final.agent, usage=final.usage,
                   turns=final.turns, events=events)
