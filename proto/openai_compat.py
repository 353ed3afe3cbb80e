"""OpenAI's chat-completions wire format, as the gateway's ``/v1/chat/completions`` speaks it to clients.

A foreign format, so these Structs mirror OpenAI's JSON exactly (no ``type`` tag, unlike our own messages);
requests keep only the fields the gateway reads and ignore the rest, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

# ---- requests --------------------------------------------------------------------------------------------


class ContentPart(Struct, frozen=True, kw_only=True):
    type: str
    text: str | None = None


class RequestMessage(Struct, frozen=True, kw_only=True):
    role: str
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(Struct, frozen=True, kw_only=True):
    include_usage: bool = False


class CompletionRequest(Struct, frozen=True, kw_only=True):
    model: str  # the agent's name
    messages: list[RequestMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


# ---- responses -------------------------------------------------------------------------------------------


class Usage(Struct, frozen=True, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Delta(Struct, frozen=True, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET


class ChunkChoice(Struct, frozen=True, kw_only=True):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class CompletionChunk(Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | UnsetType | None = UNSET


class AssistantMessage(Struct, frozen=True, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class CompletionChoice(Struct, frozen=True, kw_only=True):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] = "stop"


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
