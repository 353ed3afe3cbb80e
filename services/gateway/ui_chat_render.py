"""A run's stored events rendered as the AI SDK's UI message stream: the same events give the same parts, so a
resumed stream replays the message exactly (the SDK rebuilds it from the first part)."""

from __future__ import annotations

import json
from typing import Any

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
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolOutput,
)
from proto.ui_stream import (
    Abort,
    ErrorPart,
    Finish,
    FinishStep,
    Start,
    StartStep,
    StreamPart,
    TextDeltaPart,
    TextEnd,
    TextStart,
    ToolApprovalRequest,
    ToolApprovalResponse,
    ToolInputAvailable,
    ToolInputDelta,
    ToolInputStart,
    ToolOutputAvailable,
)
from shared.runs.continuation import Continuation

MESSAGE_KEY = "raaf.ui.message"  # run metadata: the assistant message a continuation adds to


def message_id(run_id: str) -> str:
    """The assistant message a run answers with (stable: a resumed stream continues the same message)."""
    return f"msg-{run_id}"


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class UiStreamRenderer:
    """Feed it a run's events in seq order; it returns the stream parts each one makes.

    The stream has no way to take text back: a restarted step continues the text part being written, past what
    it already holds (``Continuation``), so the message reads as if the runner had never died.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client_tools: frozenset[str] = frozenset()
        self._text: str | None = None  # the id of the text part being streamed
        self._texts = 0
        self._in_step = False
        self._after_tools = False  # tool results came: the model's next output is a new step
        self._continuation = Continuation()

    def _server(self, name: str) -> dict[str, Any]:
        return {} if name in self.client_tools else {"dynamic": True, "provider_executed": True}

    def _step(self, out: list[StreamPart]) -> None:
        if self._after_tools:
            self._end_text(out)
            out.append(FinishStep())
            self._in_step, self._after_tools = False, False
        if not self._in_step:
            out.append(StartStep())
            self._in_step = True

    def _end_text(self, out: list[StreamPart]) -> None:
        if self._text is not None:
            out.append(TextEnd(id=self._text))
            self._text = None

    def parked(self) -> list[StreamPart]:
        """The parts that end a stream whose run waits for the user's decision: the message so far is complete
        (the SDK's ``lastAssistantMessageIsCompleteWithApprovalResponses`` then sends the answer)."""
        out: list[StreamPart] = []
        self._finish(out)
        out.append(Finish(finish_reason="tool-calls"))
        return out

    def _finish(self, out: list[StreamPart]) -> None:
        self._end_text(out)
        if self._in_step:
            out.append(FinishStep())
            self._in_step = False

    def feed(self, event: RunEvent) -> list[StreamPart]:
        out: list[StreamPart] = []
        delta = self._continuation.feed(event)
        match event:
            case RunQueued() | RunStarted() if event.seq == 1:
                self.client_tools = frozenset(event.client_tools)
                out.append(Start(message_id=event.metadata.get(MESSAGE_KEY) or message_id(self.run_id)))
            case TextDelta() if delta is not None:
                self._step(out)
                if self._text is None:
                    self._texts += 1
                    self._text = f"text-{self._texts}"
                    out.append(TextStart(id=self._text))
                out.append(TextDeltaPart(id=self._text, delta=delta))
            case ToolCallStarted(call_id=call_id, name=name):
                self._step(out)
                self._end_text(out)
                out.append(ToolInputStart(tool_call_id=call_id, tool_name=name, **self._server(name)))
            case ToolCallDelta(call_id=call_id, delta=piece):
                out.append(ToolInputDelta(tool_call_id=call_id, input_text_delta=piece))
            case ToolCallFinished(call_id=call_id, name=name, arguments=arguments):
                out.append(ToolInputAvailable(tool_call_id=call_id, tool_name=name, input=_json_or_text(arguments),
                                              **self._server(name)))
            case ToolOutput(call_id=call_id, name=name, output=output):
                out.append(ToolOutputAvailable(tool_call_id=call_id, output=_json_or_text(output),
                                               **self._server(name)))
                self._after_tools = True
            case Handoff(call_id=call_id, to_agent=target):
                out.append(ToolOutputAvailable(tool_call_id=call_id, output={"assistant": target}, dynamic=True,
                                               provider_executed=True))
                self._after_tools = True
            case ApprovalRequested(call_id=call_id):
                out.append(ToolApprovalRequest(approval_id=call_id, tool_call_id=call_id))
            case ApprovalDecided(call_id=call_id, approved=approved, message=message):
                out.append(ToolApprovalResponse(approval_id=call_id, approved=approved,
                                                **({} if message is None else {"reason": message})))
            case AgentChanged():
                pass
            case RunCompleted(client_calls=calls, truncated=truncated):
                self._finish(out)
                out.append(Finish(finish_reason="tool-calls" if calls else "length" if truncated else "stop"))
            case RunFailed(message=message):
                self._finish(out)
                out.append(ErrorPart(error_text=message))
            case RunCancelled(reason=reason):
                self._finish(out)
                out.append(Abort(reason=reason))
        return out
