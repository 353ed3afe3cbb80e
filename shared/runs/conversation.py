"""A stored run as conversation messages: what it was asked, what it answered, the tool calls between."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from proto.runs import (
    ChatMessage,
    Handoff,
    RunCompleted,
    RunEvent,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallRecord,
    ToolOutput,
)

_encoder: Final = msgspec.json.Encoder()


@dataclass
class _Turn:
    text: list[str] = field(default_factory=list)
    calls: list[ToolCallRecord] = field(default_factory=list)


def conversation(events: Iterable[RunEvent]) -> list[ChatMessage]:
    """The run's whole conversation (its history, its input, then its own messages), as a run that continues
    it takes as ``history``: assistant text, the tool calls it made, the server tools' results.

    A call to a client tool has no result here: the client that continues the conversation adds it.
    """
    messages: list[ChatMessage] = []
    turn = _Turn()

    def flush() -> None:
        nonlocal turn
        if turn.text or turn.calls:
            messages.append(ChatMessage(role="assistant", content="".join(turn.text), tool_calls=turn.calls))
        turn = _Turn()

    for event in events:
        match event:
            case RunQueued() | RunStarted() if event.seq == 1:
                messages.extend(event.history)
                if event.input or not event.history or event.history[-1].role != "tool":
                    messages.append(ChatMessage(role="user", content=event.input))
            case TextDelta(delta=delta):
                if turn.calls:  # text after the calls is the next turn's
                    flush()
                turn.text.append(delta)
            case ToolCallFinished(call_id=call_id, name=name, arguments=arguments):
                turn.calls.append(ToolCallRecord(call_id=call_id, name=name, arguments=arguments))
            case ToolOutput(call_id=call_id, output=output):
                flush()
                messages.append(ChatMessage(role="tool", content=output, tool_call_id=call_id))
            case Handoff(call_id=call_id, to_agent=target):
                flush()
                messages.append(ChatMessage(role="tool", content=_encoder.encode({"assistant": target}).decode(),
                                            tool_call_id=call_id))
            case RunCompleted():
                flush()
    return messages
