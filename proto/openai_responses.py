"""OpenAI's Responses API wire format, as the gateway's ``/v1/responses`` speaks it to clients.

A foreign format, so these Structs mirror OpenAI's JSON exactly (``type`` is a plain field, not our tag);
requests keep only the fields the gateway reads and ignore the rest, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import Struct

# ---- requests --------------------------------------------------------------------------------------------


class InputContent(Struct, frozen=True, kw_only=True):
    type: str  # input_text, output_text, refusal, ... (only text parts are read)
    text: str | None = None
    refusal: str | None = None


class InputItem(Struct, frozen=True, kw_only=True):
    """One input item: a message (``type`` absent or ``message``), ``function_call``, ``function_call_output``
    or ``mcp_approval_response`` (a decision on an ``mcp_approval_request`` the previous response gave)."""

    type: str | None = None
    role: str | None = None
    content: str | list[InputContent] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputContent] | None = None
    approval_request_id: str | None = None
    approve: bool | None = None
    reason: str | None = None

    @property
    def text(self) -> str:
        value = self.output if self.type == "function_call_output" else self.content
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        return "".join(part.text or part.refusal or "" for part in value)


class FunctionTool(Struct, frozen=True, kw_only=True):
    type: str  # "function" tools are served, "mcp" ones declare who decides approvals; others are refused
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    server_label: str | None = None  # an "mcp" tool's: this client answers that label's approval requests


class NamedToolChoice(Struct, frozen=True, kw_only=True):
    type: str
    name: str | None = None


class ResponsesRequest(Struct, frozen=True, kw_only=True):
    model: str  # the agent's name
    input: str | list[InputItem] = ""
    instructions: str | None = None
    stream: bool = False
    background: bool = False
    store: bool = True
    previous_response_id: str | None = None
    tools: list[FunctionTool] = []
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    max_output_tokens: int | None = None
    user: str | None = None


# ---- the response object -----------------------------------------------------------------------------------


class OutputText(Struct, frozen=True, kw_only=True):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class OutputMessage(Struct, frozen=True, kw_only=True):
    id: str
    type: Literal["message"] = "message"
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class FunctionCall(Struct, frozen=True, kw_only=True):
    id: str
    type: Literal["function_call"] = "function_call"
    status: Literal["in_progress", "completed", "incomplete"]
    call_id: str
    name: str
    arguments: str


class McpApprovalRequest(Struct, frozen=True, kw_only=True):
    """A tool call that waits for a person's approval (``server_label``: the agent that called it)."""

    id: str
    type: Literal["mcp_approval_request"] = "mcp_approval_request"
    arguments: str
    name: str
    server_label: str


OutputItem = OutputMessage | FunctionCall | McpApprovalRequest


class InputTokensDetails(Struct, frozen=True, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(Struct, frozen=True, kw_only=True):
    reasoning_tokens: int = 0


class ResponseUsage(Struct, frozen=True, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class IncompleteDetails(Struct, frozen=True, kw_only=True):
    reason: str  # max_output_tokens


class ResponseError(Struct, frozen=True, kw_only=True):
    code: str
    message: str


class TextFormat(Struct, frozen=True, kw_only=True):
    type: Literal["text"] = "text"


class TextConfig(Struct, frozen=True, kw_only=True):
    format: TextFormat = TextFormat()


Status = Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]


class Response(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Status
    background: bool = False
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    temperature: float | None = None
    text: TextConfig = TextConfig()
    tool_choice: str = "auto"
    tools: list[Any] = []
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}


class DeletedResponse(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


# ---- streaming events (each ``event: <type>`` / ``data: <json>``; no ``[DONE]``) -----------------------------


class ResponseEvent(Struct, frozen=True, kw_only=True):
    """response.created / .queued / .in_progress / .completed / .failed / .incomplete"""

    type: str
    sequence_number: int
    response: Response


class OutputItemEvent(Struct, frozen=True, kw_only=True):
    """response.output_item.added / .done"""

    type: str
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartEvent(Struct, frozen=True, kw_only=True):
    """response.content_part.added / .done"""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int = 0
    part: OutputText


class TextDeltaEvent(Struct, frozen=True, kw_only=True):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int = 0
    delta: str
    logprobs: list[Any] = []


class TextDoneEvent(Struct, frozen=True, kw_only=True):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int = 0
    text: str
    logprobs: list[Any] = []


class ArgumentsDeltaEvent(Struct, frozen=True, kw_only=True):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(Struct, frozen=True, kw_only=True):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    sequence_number: int
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(Struct, frozen=True, kw_only=True):
    """error: the stream ends without the response ending (the caller's token expired)."""

    type: Literal["error"] = "error"
    sequence_number: int
    code: str | None = None
    message: str
    param: str | None = None


StreamEvent = (ResponseEvent | OutputItemEvent | ContentPartEvent | TextDeltaEvent | TextDoneEvent
               | ArgumentsDeltaEvent | ArgumentsDoneEvent)

responses_encoder: Final = msgspec.json.Encoder()
responses_request_decoder: Final = msgspec.json.Decoder(ResponsesRequest)
RESPONSE_ID_PREFIX: Final = "resp_"
