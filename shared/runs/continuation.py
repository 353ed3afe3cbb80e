"""Clients of a restarted run: which events a transcript keeps, and text delivered as one continuous stream."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from proto.runs import (
    AgentChanged,
    Handoff,
    RunEvent,
    RunStepRestarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolOutput,
)
from shared.runs.checkpoint import TOOL_CALLS

# What an interrupted step may have stored before its runner died; a restart voids them.
_STEP_EVENTS: Final = (TextDelta, ToolCallStarted, ToolCallDelta, ToolCallFinished)


def transcript(events: Iterable[RunEvent]) -> list[RunEvent]:
    """The events a client keeps: those of an interrupted step (after a restart's ``after_seq``) are dropped."""
    kept: list[RunEvent] = []
    for event in events:
        if isinstance(event, RunStepRestarted):
            kept = [e for e in kept if e.seq <= event.after_seq or not isinstance(e, _STEP_EVENTS)]
        kept.append(event)
    return kept


class Continuation:
    """Text for a client that cannot take back what it was sent (an OpenAI stream, a live chunk iterator).

    After a restart, the restarted step's text is delivered only past what the client already has of that step:
    a model that says the same again (a deterministic one) continues seamlessly; one that says something else
    continues from where the two differ.
    """

    def __init__(self) -> None:
        self._has = ""  # the current step's text the client has
        self._attempt = ""  # the current attempt's text (since the step began or was restarted)
        self._diverged = False

    def feed(self, event: RunEvent) -> str | None:
        """The text to deliver for ``event`` (None: none)."""
        match event:
            case TextDelta(delta=delta):
                return self._text(delta) or None
            case RunStepRestarted(step=step):
                self._attempt, self._diverged = "", False
                if step == TOOL_CALLS:
                    self._has = ""
            case ToolOutput() | Handoff() | AgentChanged():
                self._has, self._attempt, self._diverged = "", "", False
            case _:
                pass
        return None

    def _text(self, delta: str) -> str:
        self._attempt += delta
        if self._diverged:
            self._has += delta
            return delta
        attempt, has = self._attempt, self._has
        if has.startswith(attempt):
            return ""  # said again: the client has it
        if attempt.startswith(has):
            out = attempt[max(len(has), len(attempt) - len(delta)):]
            self._has = attempt
            return out
        common = 0
        while attempt[common] == has[common]:
            common += 1
        self._diverged = True
        out = attempt[common:]
        self._has += out
        return out
