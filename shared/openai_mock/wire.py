"""OpenAI chat-completions wire types (requests, chunks, completions, errors) and their JSON encoding."""

from __future__ import annotations

from typing import Final, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

FinishReason = Literal["stop", "tool_calls", "length"]

SYSTEM_FINGERPRINT: Final = "fp_raaf_mock"
DONE_FRAME: Final = b"data: [DONE]\n\n"

# --- requests (only the fields the mock reads; everything else is ignored) ---


class ContentPart(Struct, frozen=True):
    type: str
    text: str | None = None


class CalledFunction(Struct, frozen=True):
    name: str = ""


class CalledTool(Struct, frozen=True):
    function: CalledFunction = CalledFunction()


class ChatMessage(Struct, frozen=True):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[CalledTool] | None = None

    @property
    def text(self) -> str:
        """The message's text: plain content, or the text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if part.text)


class OfferedFunction(Struct, frozen=True):
    name: str = ""


class OfferedTool(Struct, frozen=True):
    function: OfferedFunction = OfferedFunction()


class StreamOptions(Struct, frozen=True):
    include_usage: bool | None = None


class ChatRequest(Struct, frozen=True):
    model: str
    messages: list[ChatMessage]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[OfferedTool] | None = None

    @property
    def tool_names(self) -> list[str]:
        """The names of the functions the request offers the model."""
        return [tool.function.name for tool in self.tools or ()]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""

    def tool_results(self) -> list[str]:
        """Tool outputs sent after the last user message: this request continues a tool-call turn."""
        results: list[str] = []
        for message in reversed(self.messages):
            if message.role == "user":
                break
            if message.role in ("tool", "function"):
                results.append(message.text)
        results.reverse()
        return results

    def called_tools(self) -> list[str]:
        """The names of the tools the model called since the last user message, in order."""
        names: list[str] = []
        for message in reversed(self.messages):
            if message.role == "user":
                break
            names[:0] = [call.function.name for call in message.tool_calls or ()]
        return names


# --- responses ---


class Usage(Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


# kw_only so the fields keep the API's order: only the first fragment of a call has the optional ones.
class FunctionDelta(Struct, frozen=True, kw_only=True):
    name: str | UnsetType = UNSET
    arguments: str


class ToolCallDelta(Struct, frozen=True, kw_only=True):
    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: FunctionDelta


class Delta(Struct, frozen=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET


class ChunkChoice(Struct, frozen=True):
    index: int
    delta: Delta
    logprobs: None
    finish_reason: FinishReason | None


class ChatCompletionChunk(Struct, frozen=True):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    # Absent unless the client asked for usage; then null on every chunk but the last.
    usage: Usage | UnsetType | None = UNSET


class FunctionCall(Struct, frozen=True):
    name: str
    arguments: str


class ToolCallMessage(Struct, frozen=True):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(Struct, frozen=True):
    role: Literal["assistant"]
    content: str | None
    refusal: None
    tool_calls: list[ToolCallMessage] | UnsetType = UNSET


class CompletionChoice(Struct, frozen=True):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: FinishReason


class ChatCompletion(Struct, frozen=True):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage


class ErrorObject(Struct, frozen=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(Struct, frozen=True):
    error: ErrorObject


class Model(Struct, frozen=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Struct, frozen=True):
    object: Literal["list"]
    data: list[Model]


json_encoder: Final = msgspec.json.Encoder()
any_decoder: Final = msgspec.json.Decoder()

_ERROR_KINDS: Final[dict[int, tuple[str, str | None, str]]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
}
_SERVER_ERROR: Final = (
    "server_error",
    None,
    "The server had an error while processing your request. Sorry about that!",
)


def error_body(status: int, message: str | None = None) -> ErrorBody:
    """The error object OpenAI sends for an HTTP status (also used for errors mid-stream)."""
    kind, code, default_message = _ERROR_KINDS.get(status, _SERVER_ERROR)
    return ErrorBody(ErrorObject(message=message or default_message, type=kind, param=None, code=code))


def request_words(request: ChatRequest) -> int:
    """A deterministic stand-in for the prompt's token count: whitespace-separated words."""
    return sum(len(message.text.split()) for message in request.messages)


class ChunkFrames:
    """Renders the SSE frames of one streamed response; everything but the delta is fixed per response."""

    __slots__ = ("_created", "_id", "_model", "_usage_placeholder")

    def __init__(self, *, response_id: str, created: int, model: str, include_usage: bool) -> None:
        self._id = response_id
        self._created = created
        self._model = model
        self._usage_placeholder: UnsetType | None = None if include_usage else UNSET

    def _frame(self, choices: list[ChunkChoice], usage: Usage | UnsetType | None) -> bytes:
        chunk = ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            system_fingerprint=SYSTEM_FINGERPRINT,
            choices=choices,
            usage=usage,
        )
        buffer = bytearray(b"data: ")
        json_encoder.encode_into(chunk, buffer, 6)
        buffer += b"\n\n"
        return bytes(buffer)

    def _delta(self, delta: Delta, finish_reason: FinishReason | None = None) -> bytes:
        choice = ChunkChoice(index=0, delta=delta, logprobs=None, finish_reason=finish_reason)
        return self._frame([choice], self._usage_placeholder)

    def role(self) -> bytes:
        return self._delta(Delta(role="assistant", content=""))

    def content(self, text: str) -> bytes:
        return self._delta(Delta(content=text))

    def tool_call_start(self, index: int, call_id: str, name: str) -> bytes:
        function = FunctionDelta(name=name, arguments="")
        call = ToolCallDelta(index=index, id=call_id, type="function", function=function)
        return self._delta(Delta(tool_calls=[call]))

    def tool_call_arguments(self, index: int, arguments: str) -> bytes:
        call = ToolCallDelta(index=index, function=FunctionDelta(arguments=arguments))
        return self._delta(Delta(tool_calls=[call]))

    def finish(self, reason: FinishReason) -> bytes:
        return self._delta(Delta(), reason)

    def usage(self, usage: Usage) -> bytes:
        return self._frame([], usage)

    @staticmethod
    def error(body: ErrorBody) -> bytes:
        return b"data: " + json_encoder.encode(body) + b"\n\n"
