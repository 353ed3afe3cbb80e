"""AG-UI's wire format (CopilotKit's Agent-User Interaction protocol), as the gateway's AG-UI endpoint speaks it.

A foreign format: camelCase JSON, events tagged by an upper-case ``type``, each one SSE ``data:`` line.
Requests are ``RunAgentInput`` as ``@ag-ui/client``'s ``HttpAgent`` posts it.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

# ---- requests --------------------------------------------------------------------------------------------


class AgContentPart(Struct, frozen=True, kw_only=True):
    type: str
    text: str | None = None


class AgFunctionCall(Struct, frozen=True, kw_only=True):
    name: str
    arguments: str = "{}"


class AgToolCall(Struct, frozen=True, kw_only=True):
    id: str
    type: str = "function"
    function: AgFunctionCall


class AgMessage(Struct, frozen=True, kw_only=True, rename="camel"):
    id: str = ""
    role: str
    content: str | list[AgContentPart] | None = None
    tool_calls: list[AgToolCall] | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class AgTool(Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


class AgContext(Struct, frozen=True, kw_only=True):
    description: str
    value: str


class AgResumeEntry(Struct, frozen=True, kw_only=True, rename="camel"):
    """The client's answer to one interrupt of the run before (``resolved`` with a ``payload``, or
    ``cancelled``: abandoned)."""

    interrupt_id: str
    status: Literal["resolved", "cancelled"] = "resolved"
    payload: Any = None
    metadata: Any = None


class RunAgentInput(Struct, frozen=True, kw_only=True, rename="camel"):
    thread_id: str
    run_id: str
    parent_run_id: str | None = None
    state: Any = None
    messages: list[AgMessage] = []
    tools: list[AgTool] = []
    context: list[AgContext] = []
    forwarded_props: Any = None
    resume: list[AgResumeEntry] = []  # answers to the interrupts that ended the previous run


run_agent_input_decoder: Final = msgspec.json.Decoder(RunAgentInput)

# ---- events ----------------------------------------------------------------------------------------------


class AgEvent(Struct, frozen=True, kw_only=True, tag_field="type", rename="camel", omit_defaults=True):
    """Base of every AG-UI event."""


class RunStartedEvent(AgEvent, frozen=True, kw_only=True, tag="RUN_STARTED"):
    thread_id: str
    run_id: str


class AgInterrupt(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Something the run needs before it goes on (here: a decision on a tool call); a resume entry answers it
    by ``id``."""

    id: str
    reason: str
    message: str | UnsetType = UNSET
    tool_call_id: str | UnsetType = UNSET
    response_schema: dict[str, Any] | UnsetType = UNSET
    expires_at: str | UnsetType = UNSET  # ISO 8601
    metadata: dict[str, Any] | UnsetType = UNSET


class Outcome(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    type: str  # success, interrupt, cancelled
    pending_tool_call_ids: list[str] | UnsetType = UNSET  # frontend tools the client is to answer
    interrupts: list[AgInterrupt] | UnsetType = UNSET  # what an ``interrupt`` outcome waits for


class RunFinishedEvent(AgEvent, frozen=True, kw_only=True, tag="RUN_FINISHED"):
    thread_id: str
    run_id: str
    outcome: Outcome | UnsetType = UNSET


class RunErrorEvent(AgEvent, frozen=True, kw_only=True, tag="RUN_ERROR"):
    message: str
    code: str | UnsetType = UNSET


class StepStartedEvent(AgEvent, frozen=True, kw_only=True, tag="STEP_STARTED"):
    step_name: str


class StepFinishedEvent(AgEvent, frozen=True, kw_only=True, tag="STEP_FINISHED"):
    step_name: str


class TextMessageStartEvent(AgEvent, frozen=True, kw_only=True, tag="TEXT_MESSAGE_START"):
    message_id: str
    role: str = "assistant"


class TextMessageContentEvent(AgEvent, frozen=True, kw_only=True, tag="TEXT_MESSAGE_CONTENT"):
    message_id: str
    delta: str


class TextMessageEndEvent(AgEvent, frozen=True, kw_only=True, tag="TEXT_MESSAGE_END"):
    message_id: str


class ToolCallStartEvent(AgEvent, frozen=True, kw_only=True, tag="TOOL_CALL_START"):
    tool_call_id: str
    tool_call_name: str
    parent_message_id: str | UnsetType = UNSET


class ToolCallArgsEvent(AgEvent, frozen=True, kw_only=True, tag="TOOL_CALL_ARGS"):
    tool_call_id: str
    delta: str


class ToolCallEndEvent(AgEvent, frozen=True, kw_only=True, tag="TOOL_CALL_END"):
    tool_call_id: str


class ToolCallResultEvent(AgEvent, frozen=True, kw_only=True, tag="TOOL_CALL_RESULT"):
    message_id: str
    tool_call_id: str
    content: str
    role: str = "tool"


class CustomEvent(AgEvent, frozen=True, kw_only=True, tag="CUSTOM"):
    """AG-UI's application event: ``name`` says what ``value`` is (``raaf.step_restarted``,
    ``raaf.approval_decided``)."""

    name: str
    value: dict[str, str | int | None] = {}


AnyAgEvent = (RunStartedEvent | RunFinishedEvent | RunErrorEvent | StepStartedEvent | StepFinishedEvent
              | TextMessageStartEvent | TextMessageContentEvent | TextMessageEndEvent | ToolCallStartEvent
              | ToolCallArgsEvent | ToolCallEndEvent | ToolCallResultEvent | CustomEvent)
agui_encoder: Final = msgspec.json.Encoder()
