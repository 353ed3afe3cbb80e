"""A run's stored events rendered as OpenAI Responses stream events; the same events always give the same
stream, so ``sequence_number`` is a position in it and ``starting_after`` resumes exactly. A tool call that waits
for approval is an ``mcp_approval_request`` output item."""

from __future__ import annotations

from dataclasses import dataclass, field

from proto.openai_responses import (
    RESPONSE_ID_PREFIX,
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ContentPartEvent,
    FunctionCall,
    IncompleteDetails,
    McpApprovalRequest,
    OutputItem,
    OutputItemEvent,
    OutputMessage,
    OutputText,
    Response,
    ResponseError,
    ResponseEvent,
    ResponseUsage,
    Status,
    StreamEvent,
    TextDeltaEvent,
    TextDoneEvent,
)
from proto.runs import (
    ApprovalDecided,
    ApprovalRequested,
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
)
from shared.runs.continuation import Continuation

# Metadata keys the Responses facade keeps for itself in the run's metadata (not shown to the client).
BACKGROUND_KEY = "raaf.responses.background"
PREVIOUS_KEY = "raaf.responses.previous"


APPROVAL_ITEM_PREFIX = "mcpr_"  # an mcp_approval_request's id: the prefix and the call id


def response_id(run_id: str) -> str:
    return f"{RESPONSE_ID_PREFIX}{run_id}"


def approval_item_id(call_id: str) -> str:
    return f"{APPROVAL_ITEM_PREFIX}{call_id}"


def call_of(approval_request_id: str) -> str | None:
    """The call id behind an ``mcp_approval_request``'s id, or None if it is not one of ours."""
    call_id = approval_request_id.removeprefix(APPROVAL_ITEM_PREFIX)
    return call_id if approval_request_id.startswith(APPROVAL_ITEM_PREFIX) and call_id else None


@dataclass
class _Open:
    """The output item being streamed: a message (its text so far) or a client tool call (its arguments)."""

    index: int
    item_id: str
    name: str | None = None  # a function call's tool
    call_id: str | None = None
    parts: list[str] = field(default_factory=list)


class ResponseRenderer:
    """Feed it a run's events in seq order; it returns the Responses events each one makes, numbered from 0.

    A restarted step (``run_step_restarted``) cannot take back text: the message being written stays open and the
    step's text continues past what it already holds (``Continuation``); a client tool call the interrupted step
    left half streamed is done as ``incomplete`` (and left out of the response's ``output``, so no client runs
    it), and the step's new call is a new item.

    A ``run_approval_requested`` is an ``mcp_approval_request`` item (added and done at once); while calls wait,
    the response reads ``completed`` (as OpenAI's does while its approval requests are open), and the decision
    that lets the run go on is a ``response.in_progress`` event. ``paused`` ends a stream at the wait.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.id = response_id(run_id)
        self.sequence = -1
        self.status: Status = "queued"
        self.model = ""
        self.created_at = 0
        self.metadata: dict[str, str] = {}
        self.background = False
        self.previous: str | None = None
        self.client_tools: frozenset[str] = frozenset()
        self.output: list[OutputItem] = []
        self.usage: ResponseUsage | None = None
        self.error: ResponseError | None = None
        self.incomplete: IncompleteDetails | None = None
        self._open: _Open | None = None
        self._calls: dict[str, _Open] = {}
        self._messages = 0
        self._text = Continuation()
        self._items: dict[str, int] = {}  # function call item id -> how many items of that call so far
        self._voided: set[int] = set()  # output indexes of calls a restart cut off
        self._waiting: set[str] = set()  # call ids asked about and not decided yet
        self.shown_from = 0  # the first output index the snapshot shows (an approval answer: the items after it)

    def snapshot(self) -> Response:
        """The response object as of the events fed so far."""
        status: Status = "completed" if self._waiting and self.status == "in_progress" else self.status
        return Response(id=self.id, created_at=self.created_at, status=status, background=self.background,
                        model=self.model, usage=self.usage, error=self.error,
                        output=[item for i, item in enumerate(self.output)
                                if i >= self.shown_from and i not in self._voided],
                        incomplete_details=self.incomplete,
                        previous_response_id=self.previous, metadata=self.metadata)

    def _n(self) -> int:
        self.sequence += 1
        return self.sequence

    def _lifecycle(self, kind: str) -> ResponseEvent:
        return ResponseEvent(type=f"response.{kind}", sequence_number=self._n(), response=self.snapshot())

    def feed(self, event: RunEvent) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        text = self._text.feed(event)
        match event:
            case RunQueued() | RunStarted() if event.seq == 1:
                self.model, self.created_at = event.agent, int(event.at)
                self.metadata = {k: v for k, v in event.metadata.items() if not k.startswith("raaf.responses.")}
                self.background = event.metadata.get(BACKGROUND_KEY) == "1"
                self.previous = event.metadata.get(PREVIOUS_KEY)
                self.client_tools = frozenset(event.client_tools)
                self.status = "queued" if isinstance(event, RunQueued) else "in_progress"
                out.append(self._lifecycle("created"))
                out.append(self._lifecycle("queued" if isinstance(event, RunQueued) else "in_progress"))
            case RunStarted():  # a queued run starting
                self.status = "in_progress"
                out.append(self._lifecycle("in_progress"))
            case TextDelta():
                if text is None:
                    return out  # the restarted step says again what the client has
                if self._open is None or self._open.name is not None:
                    self._close(out)
                    self._start_message(out)
                assert self._open is not None
                self._open.parts.append(text)
                out.append(TextDeltaEvent(sequence_number=self._n(), item_id=self._open.item_id,
                                          output_index=self._open.index, delta=text))
            case RunStepRestarted():
                for call in list(self._calls.values()):  # started in the interrupted step, never finished
                    self._end_call(out, call, "incomplete")
                    self._voided.add(call.index)
            case ToolCallStarted(call_id=call_id, name=name) if name in self.client_tools:
                self._close(out)
                again = self._items.get(call_id, 0)  # the same call again, after a restart: a new item
                self._items[call_id] = again + 1
                item_id = f"fc_{call_id}_{again}" if again else f"fc_{call_id}"
                call = _Open(index=len(self.output), item_id=item_id, name=name, call_id=call_id)
                self._open = self._calls[call_id] = call
                self.output.append(self._call_item(call, "in_progress"))
                out.append(OutputItemEvent(type="response.output_item.added", sequence_number=self._n(),
                                           output_index=call.index, item=self.output[call.index]))
            case ToolCallDelta(call_id=call_id, delta=delta) if call_id in self._calls:
                call = self._calls[call_id]
                call.parts.append(delta)
                out.append(ArgumentsDeltaEvent(sequence_number=self._n(), item_id=call.item_id,
                                               output_index=call.index, delta=delta))
            case ToolCallFinished(call_id=call_id, arguments=arguments) if call_id in self._calls:
                call = self._calls[call_id]
                call.parts = [arguments]
                self._end_call(out, call, "completed")
            case ApprovalRequested(call_id=call_id, name=name, arguments=arguments, agent=agent):
                self._close(out)
                self._waiting.add(call_id)
                item = McpApprovalRequest(id=approval_item_id(call_id), arguments=arguments, name=name,
                                          server_label=agent or self.model)
                self.output.append(item)
                index = len(self.output) - 1
                for kind in ("response.output_item.added", "response.output_item.done"):
                    out.append(OutputItemEvent(type=kind, sequence_number=self._n(), output_index=index, item=item))
            case ApprovalDecided(call_id=call_id):
                self._waiting.discard(call_id)
                if not self._waiting and self.status == "in_progress":
                    out.append(self._lifecycle("in_progress"))  # the run goes on
            case RunCompleted(usage=usage, truncated=truncated):
                self._close(out)
                self.status = "incomplete" if truncated else "completed"
                self.incomplete = IncompleteDetails(reason="max_output_tokens") if truncated else None
                self.usage = ResponseUsage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens,
                                           total_tokens=usage.total_tokens)
                out.append(self._lifecycle(self.status))
            case RunFailed(code=code, message=message):
                self._close(out)
                self.status = "failed"
                self.error = ResponseError(code=code.value, message=message)
                out.append(self._lifecycle("failed"))
            case RunCancelled(reason=reason):
                self._close(out)
                self.status = "cancelled"
                self.error = ResponseError(code="cancelled", message=reason)
                out.append(self._lifecycle("failed"))
            case _:
                if self._open is not None and self._open.name is None:
                    self._close(out)  # a server tool call or handoff ends the message the model was writing
        return out

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def paused(self) -> list[StreamEvent]:
        """The end of a stream that stops while the run waits for decisions: ``response.completed`` with the
        approval requests in ``output``, numbered as the last event sent (it is no event of the run's, so
        ``starting_after`` that number resumes right)."""
        return [ResponseEvent(type="response.completed", sequence_number=max(self.sequence, 0),
                              response=self.snapshot())]

    def _end_call(self, out: list[StreamEvent], call: _Open, status: str) -> None:
        assert call.name is not None and call.call_id is not None
        del self._calls[call.call_id]
        if self._open is call:
            self._open = None
        self.output[call.index] = item = self._call_item(call, status)
        if status == "completed":
            out.append(ArgumentsDoneEvent(sequence_number=self._n(), item_id=call.item_id, output_index=call.index,
                                          name=call.name, arguments="".join(call.parts)))
        out.append(OutputItemEvent(type="response.output_item.done", sequence_number=self._n(),
                                   output_index=call.index, item=item))

    def _call_item(self, call: _Open, status: str) -> FunctionCall:
        assert call.name is not None and call.call_id is not None
        return FunctionCall(id=call.item_id, status=status, call_id=call.call_id, name=call.name,  # type: ignore[arg-type]
                            arguments="".join(call.parts))

    def _start_message(self, out: list[StreamEvent]) -> None:
        self._messages += 1
        message = _Open(index=len(self.output), item_id=f"msg_{self.run_id}_{self._messages}")
        self._open = message
        self.output.append(OutputMessage(id=message.item_id, status="in_progress", content=[]))
        out.append(OutputItemEvent(type="response.output_item.added", sequence_number=self._n(),
                                   output_index=message.index, item=self.output[message.index]))
        out.append(ContentPartEvent(type="response.content_part.added", sequence_number=self._n(),
                                    item_id=message.item_id, output_index=message.index, part=OutputText(text="")))

    def _close(self, out: list[StreamEvent]) -> None:
        """End the message being written (text, part, item: each ``done``); a call in flight stays open."""
        message = self._open
        if message is None or message.name is not None:
            return
        self._open = None
        text = "".join(message.parts)
        part = OutputText(text=text)
        item = OutputMessage(id=message.item_id, status="completed", content=[part])
        self.output[message.index] = item
        out.append(TextDoneEvent(sequence_number=self._n(), item_id=message.item_id, output_index=message.index,
                                 text=text))
        out.append(ContentPartEvent(type="response.content_part.done", sequence_number=self._n(),
                                    item_id=message.item_id, output_index=message.index, part=part))
        out.append(OutputItemEvent(type="response.output_item.done", sequence_number=self._n(),
                                   output_index=message.index, item=item))


def render_all(run_id: str, events: list[RunEvent]) -> ResponseRenderer:
    renderer = ResponseRenderer(run_id)
    for event in events:
        renderer.feed(event)
    return renderer

