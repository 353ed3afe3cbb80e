"""Turns a Script into what the API would send: streamed delta frames, or a whole chat.completion."""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec

from shared.openai_mock.script import Script, ToolCall, split_fragments
from shared.openai_mock.wire import (
    SYSTEM_FINGERPRINT,
    AssistantMessage,
    ChatCompletion,
    ChatRequest,
    ChunkFrames,
    CompletionChoice,
    FunctionCall,
    ToolCallMessage,
    Usage,
    request_words,
)


def response_id(sequence: int) -> str:
    return f"chatcmpl-mock{sequence}"


def call_id(call: ToolCall, sequence: int, position: int) -> str:
    return call.id if call.id is not None else f"call_{sequence}_{position}"


def token_frames(script: Script, frames: ChunkFrames, sequence: int) -> Iterator[bytes]:
    """The delta chunks after the role chunk, one per token (see Script)."""
    for token in script.stream_tokens():
        yield frames.content(token)
    for position, call in enumerate(script.tool_calls):
        index = 0 if script.index_reuse else position
        yield frames.tool_call_start(index, call_id(call, sequence, position), call.name)
        for piece in split_fragments(call.arguments_json, call.fragments):
            yield frames.tool_call_arguments(index, piece)


def token_count(script: Script) -> int:
    """How many frames token_frames yields, without rendering them."""
    arguments = sum(len(split_fragments(call.arguments_json, call.fragments)) for call in script.tool_calls)
    return len(script.stream_tokens()) + len(script.tool_calls) + arguments


def usage_for(script: Script, request: ChatRequest, tokens: int) -> Usage:
    prompt = script.prompt_tokens if script.prompt_tokens is not None else request_words(request)
    completion = script.completion_tokens if script.completion_tokens is not None else tokens
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def completion_for(script: Script, request: ChatRequest, sequence: int, tokens: int) -> ChatCompletion:
    """The non-streamed answer: the same content and tool calls in one chat.completion object."""
    calls = [
        ToolCallMessage(
            id=call_id(call, sequence, position),
            type="function",
            function=FunctionCall(name=call.name, arguments=call.arguments_json),
        )
        for position, call in enumerate(script.tool_calls)
    ]
    text = script.full_text
    message = AssistantMessage(
        role="assistant",
        # The API sends null content, not "", when the answer is only tool calls.
        content=text if text or not calls else None,
        refusal=None,
        tool_calls=calls if calls else msgspec.UNSET,
    )
    choice = CompletionChoice(
        index=0, message=message, logprobs=None, finish_reason=script.resolved_finish_reason
    )
    return ChatCompletion(
        id=response_id(sequence),
        object="chat.completion",
        created=int(time.time()),
        model=request.model,
        system_fingerprint=SYSTEM_FINGERPRINT,
        choices=[choice],
        usage=usage_for(script, request, tokens),
    )
