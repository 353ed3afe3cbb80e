"""OpenAI's chat-completions wire format, as the gateway's ``/v1/chat/completions`` speaks it to clients.

A foreign format, so these Structs mirror OpenAI's JSON exactly (no ``type`` tag, unlike our own messages);
requests keep only the fields the gateway reads and ignore the rest, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

# ---- requests --------------------------------------------------------------------------------------------


class ContentPart(Struct, frozen=True, kw_only=True):
    type: str
    text: str | None = None


class RequestFunction(Struct, frozen=True, kw_only=True):
    name: str
    arguments: str = "{}"


class RequestToolCall(Struct, frozen=True, kw_only=True):
    id: str
    type: str = "function"
    function: RequestFunction


class RequestMessage(Struct, frozen=True, kw_only=True):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[RequestToolCall] | None = None  # an assistant message's calls of the client's tools
    tool_call_id: str | None = None  # a tool message: the call it answers

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(Struct, frozen=True, kw_only=True):
    include_usage: bool = False


class FunctionSpec(Struct, frozen=True, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(Struct, frozen=True, kw_only=True):
    type: str  # only "function" tools are served; others are refused by name
    function: FunctionSpec | None = None


class NamedFunction(Struct, frozen=True, kw_only=True):
    name: str


class ChatToolChoice(Struct, frozen=True, kw_only=True):
    type: str
    function: NamedFunction | None = None


class CompletionRequest(Struct, frozen=True, kw_only=True):
    model: str  # the agent's name
    messages: list[RequestMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    tools: list[ChatTool] = []  # the client's own tools: their calls come back as tool_calls
    tool_choice: str | ChatToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None


# ---- responses -------------------------------------------------------------------------------------------


class Usage(Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionDelta(Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str | UnsetType = UNSET
    arguments: str = ""


class DeltaToolCall(Struct, frozen=True, kw_only=True, omit_defaults=True):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: FunctionDelta


class Delta(Struct, frozen=True, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[DeltaToolCall] | UnsetType = UNSET


FinishReason = Literal["stop", "length", "tool_calls"]


class ChunkChoice(Struct, frozen=True, kw_only=True):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: FinishReason | None = None


class CompletionChunk(Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | UnsetType | None = UNSET


class MessageToolCall(Struct, frozen=True, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: RequestFunction


class AssistantMessage(Struct, frozen=True, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[MessageToolCall] | UnsetType = UNSET


class CompletionChoice(Struct, frozen=True, kw_only=True):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason = "stop"


class Completion(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(Struct, frozen=True, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "raaf"


class ModelList(Struct, frozen=True, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(Struct, frozen=True, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(Struct, frozen=True, kw_only=True):
    error: ErrorDetail


openai_encoder: Final = msgspec.json.Encoder()
completion_request_decoder: Final = msgspec.json.Decoder(CompletionRequest)
DONE: Final = b"data: [DONE]\n\n"


# ---- streamed chunks as a provider sends them (read by the agent-runner) -----------------------------------


class FunctionPiece(Struct, frozen=True, kw_only=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallPiece(Struct, frozen=True, kw_only=True):
    index: int = 0
    id: str | None = None
    function: FunctionPiece | None = None


class StreamDelta(Struct, frozen=True, kw_only=True):
    content: str | None = None
    tool_calls: list[ToolCallPiece] | None = None


class StreamChoice(Struct, frozen=True, kw_only=True):
    index: int = 0
    delta: StreamDelta = StreamDelta()
    finish_reason: str | None = None


class StreamUsage(Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class StreamError(Struct, frozen=True, kw_only=True):
    message: str | None = None
    type: str | None = None


class StreamFrame(Struct, frozen=True, kw_only=True):
    """One ``data:`` frame of a streamed chat completion: a chunk, the usage chunk, or an error object."""

    choices: list[StreamChoice] = []
    usage: StreamUsage | None = None
    error: StreamError | None = None


stream_frame_decoder: Final = msgspec.json.Decoder(StreamFrame)
