"""The Vercel AI SDK's UI message stream (v1), as the gateway's chat endpoint speaks it to ``useChat``.

A foreign format: JSON in camelCase, each part one SSE ``data:`` line, the stream ending with ``data: [DONE]``.
Requests are what ``DefaultChatTransport`` sends: the chat id, the UI messages with their parts, the trigger.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import UNSET, Struct, UnsetType

UI_STREAM_HEADERS: Final = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                            "X-Accel-Buffering": "no", "x-vercel-ai-ui-message-stream": "v1"}
DONE: Final = b"data: [DONE]\n\n"

# ---- requests --------------------------------------------------------------------------------------------


class UiApproval(Struct, frozen=True, kw_only=True):
    """A tool part's ``approval``: its id (the call id), and once the user answered, ``approved`` and ``reason``."""

    id: str
    approved: bool | None = None
    reason: str | None = None


class UiPart(Struct, frozen=True, kw_only=True, rename="camel"):
    """One part of a UI message: ``text``, ``tool-<name>`` / ``dynamic-tool``, ``step-start`` ... (others skipped)."""

    type: str
    text: str | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    state: str | None = None
    input: Any = None
    output: Any = None
    error_text: str | None = None
    approval: UiApproval | None = None  # state ``approval-requested`` / ``approval-responded``


class UiMessage(Struct, frozen=True, kw_only=True):
    id: str = ""
    role: str
    parts: list[UiPart] = []


class UiTool(Struct, frozen=True, kw_only=True, rename="camel"):
    """A tool the client runs itself (``onToolCall``), declared in the request body (the transport's ``body``)."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None


class ChatRequest(Struct, frozen=True, kw_only=True, rename="camel"):
    id: str  # the chat id
    messages: list[UiMessage]
    trigger: str = "submit-message"  # or regenerate-message
    message_id: str | None = None
    tools: list[UiTool] = []


chat_request_decoder: Final = msgspec.json.Decoder(ChatRequest)

# ---- stream parts ----------------------------------------------------------------------------------------


class Part(Struct, frozen=True, kw_only=True, tag_field="type", rename="camel", omit_defaults=True):
    """Base of every stream part."""


class Start(Part, frozen=True, kw_only=True, tag="start"):
    message_id: str


class StartStep(Part, frozen=True, kw_only=True, tag="start-step"):
    pass


class FinishStep(Part, frozen=True, kw_only=True, tag="finish-step"):
    pass


class TextStart(Part, frozen=True, kw_only=True, tag="text-start"):
    id: str


class TextDeltaPart(Part, frozen=True, kw_only=True, tag="text-delta"):
    id: str
    delta: str


class TextEnd(Part, frozen=True, kw_only=True, tag="text-end"):
    id: str


class ToolInputStart(Part, frozen=True, kw_only=True, tag="tool-input-start"):
    tool_call_id: str
    tool_name: str
    dynamic: bool | UnsetType = UNSET  # a server-side tool the client has no definition of
    provider_executed: bool | UnsetType = UNSET  # run by the platform: the client must not run it


class ToolInputDelta(Part, frozen=True, kw_only=True, tag="tool-input-delta"):
    tool_call_id: str
    input_text_delta: str


class ToolInputAvailable(Part, frozen=True, kw_only=True, tag="tool-input-available"):
    tool_call_id: str
    tool_name: str
    input: Any
    dynamic: bool | UnsetType = UNSET
    provider_executed: bool | UnsetType = UNSET


class ToolOutputAvailable(Part, frozen=True, kw_only=True, tag="tool-output-available"):
    tool_call_id: str
    output: Any
    dynamic: bool | UnsetType = UNSET
    provider_executed: bool | UnsetType = UNSET


class ToolApprovalRequest(Part, frozen=True, kw_only=True, tag="tool-approval-request"):
    """The call waits for the user's decision (``addToolApprovalResponse``; the next request carries it)."""

    approval_id: str
    tool_call_id: str


class ToolApprovalResponse(Part, frozen=True, kw_only=True, tag="tool-approval-response"):
    """The decision on ``approval_id`` (from this client or any other)."""

    approval_id: str
    approved: bool
    reason: str | UnsetType = UNSET


class Finish(Part, frozen=True, kw_only=True, tag="finish"):
    finish_reason: str | UnsetType = UNSET


class ErrorPart(Part, frozen=True, kw_only=True, tag="error"):
    error_text: str


class Abort(Part, frozen=True, kw_only=True, tag="abort"):
    reason: str | UnsetType = UNSET


StreamPart = (Start | StartStep | FinishStep | TextStart | TextDeltaPart | TextEnd | ToolInputStart | ToolInputDelta
              | ToolInputAvailable | ToolOutputAvailable | ToolApprovalRequest | ToolApprovalResponse | Finish
              | ErrorPart | Abort)
ui_encoder: Final = msgspec.json.Encoder()
