"""Scripted mock responses: what one chat completion says and does, and rules choosing it per request."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, Literal

import msgspec
from msgspec import Struct

from shared.openai_mock.wire import ChatRequest, FinishReason, any_decoder, json_encoder

CutMode = Literal["clean", "drop"]

# A word with the whitespace before it (the way BPE tokens carry their leading space), plus trailing space.
_WORD_TOKEN: Final = re.compile(r"\s*\S+|\s+$")
_TOOL_COMMAND: Final = re.compile(r"\[\[tool:(?P<name>[A-Za-z0-9_.-]+)(?P<arguments>.*?)\]\]", re.DOTALL)


def split_words(text: str) -> list[str]:
    """Split text into word tokens that concatenate back to exactly the text."""
    return _WORD_TOKEN.findall(text)


def split_fragments(text: str, parts: int) -> list[str]:
    """Split text into at most `parts` non-empty pieces of near-equal length."""
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    pieces: list[str] = []
    start = 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _check(condition: bool, message: str) -> None:
    # ValueError in __post_init__ becomes a msgspec.ValidationError when decoding from JSON.
    if not condition:
        raise ValueError(message)


class ToolCall(Struct, frozen=True, kw_only=True):
    """One function call the model makes; its arguments stream in `fragments` pieces."""

    name: str
    # A dict is encoded as JSON; a string is sent verbatim (it may be malformed JSON on purpose).
    arguments: str | dict[str, Any] = "{}"
    # None: a deterministic id derived from the request number and the call's position.
    id: str | None = None
    fragments: int = 3

    def __post_init__(self) -> None:
        _check(bool(self.name), "a tool call needs a name")
        _check(self.fragments >= 1, "fragments must be at least 1")

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json_encoder.encode(self.arguments).decode()


class Script(Struct, frozen=True, kw_only=True):
    """One scripted response: its content, tool calls, pacing and failure mode.

    A "token" is one streamed delta chunk: a text token, a tool call's opening fragment or an argument piece.
    """

    text: str = ""
    # Explicit tokenisation instead of splitting `text` into words.
    tokens: Sequence[str] | None = None
    tool_calls: Sequence[ToolCall] = ()
    # Stream every fragment of every tool call with index 0, a new id starting a new call (llama.cpp style).
    index_reuse: bool = False
    # None: "tool_calls" when there are tool calls, else "stop".
    finish_reason: FinishReason | None = None
    # None: estimated (prompt words / streamed tokens).
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Seconds between tokens; None: the server's default.
    token_delay: float | None = None
    # After this many tokens send an OpenAI error object as an SSE event and close the stream.
    error_after_tokens: int | None = None
    # After this many tokens end the stream without finish chunk or [DONE]: "clean" ends the HTTP body
    # normally, "drop" closes the connection mid-body (no chunked terminator: a transport error).
    cut_after_tokens: int | None = None
    cut_mode: CutMode = "clean"
    # Fail the request before any body with this status and an OpenAI error object (429: with retry-after).
    http_status: int | None = None
    retry_after: float = 1.0
    error_message: str | None = None

    def __post_init__(self) -> None:
        _check(self.tokens is None or not self.text, "give text or tokens, not both")
        _check(self.token_delay is None or self.token_delay >= 0, "token_delay must be >= 0")
        _check(
            self.error_after_tokens is None or self.cut_after_tokens is None,
            "error_after_tokens and cut_after_tokens exclude each other",
        )
        counts = (self.error_after_tokens, self.cut_after_tokens, self.prompt_tokens, self.completion_tokens)
        _check(all(count is None or count >= 0 for count in counts), "token counts must be >= 0")
        _check(self.http_status is None or 400 <= self.http_status <= 599, "http_status must be 4xx or 5xx")
        _check(self.retry_after >= 0, "retry_after must be >= 0")

    def stream_tokens(self) -> list[str]:
        return list(self.tokens) if self.tokens is not None else split_words(self.text)

    @property
    def full_text(self) -> str:
        return "".join(self.tokens) if self.tokens is not None else self.text

    @property
    def resolved_finish_reason(self) -> FinishReason:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def failure_after_tokens(self) -> int | None:
        return self.error_after_tokens if self.error_after_tokens is not None else self.cut_after_tokens


class Match(Struct, frozen=True, kw_only=True):
    """Which requests a rule applies to; every given condition must hold (no conditions: every request)."""

    # A substring of the last user message.
    user_contains: str | None = None
    # The request's model, exactly.
    model: str | None = None
    # True: the request carries tool results after the last user message (it continues a tool-call turn).
    has_tool_results: bool | None = None

    def matches(self, request: ChatRequest) -> bool:
        if self.model is not None and request.model != self.model:
            return False
        if self.user_contains is not None and self.user_contains not in request.last_user_text():
            return False
        return self.has_tool_results is None or self.has_tool_results == bool(request.tool_results())


class Rule(Struct, frozen=True, kw_only=True):
    """A script for the requests that match; a one-shot rule (`once`) is removed when it is used."""

    script: Script
    match: Match = msgspec.field(default_factory=Match)
    once: bool = False


def has_tool_command(text: str) -> bool:
    """Whether a message holds a `[[tool:NAME {json}]]` command."""
    return _TOOL_COMMAND.search(text) is not None


def default_script(request: ChatRequest) -> Script:
    """Demo behaviour without rules: report tool results, obey `[[tool:NAME {json}]]`, else echo."""
    results = request.tool_results()
    if results:
        return Script(text="Tool result: " + "; ".join(results))
    user_text = request.last_user_text()
    calls: list[ToolCall] = []
    for command in _TOOL_COMMAND.finditer(user_text):
        arguments = command["arguments"].strip() or "{}"
        try:
            decoded = any_decoder.decode(arguments)
        except msgspec.DecodeError:
            decoded = None
        if not isinstance(decoded, dict):
            return Script(
                text=f"[[tool:{command['name']}]] needs a JSON object as arguments, not {arguments}"
            )
        calls.append(ToolCall(name=command["name"], arguments=arguments))
    if calls:
        return Script(tool_calls=calls)
    return Script(text=f"You said: {user_text}")
