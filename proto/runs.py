"""Agent runs on the wire: agent definitions, run requests and their replies, cancels, leases and run events."""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

from proto.base import ClientRequest, Message
from proto.errors import Error, ErrorCode

# Agent names become tool names (``transfer_to_<agent>``), which OpenAI limits to ``[A-Za-z0-9_-]{1,64}``.
_AGENT_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,48}")
# Run ids are subject tokens and ``Nats-Msg-Id`` prefixes; clients may choose them (idempotent starts).
_RUN_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
HANDOFF_PREFIX: Final = "transfer_to_"


def is_agent_name(name: str) -> bool:
    return _AGENT_NAME.fullmatch(name) is not None


def is_run_id(run_id: str) -> bool:
    return _RUN_ID.fullmatch(run_id) is not None


def handoff_tool_name(agent: str) -> str:
    """The tool a model calls to hand the conversation to ``agent``."""
    return f"{HANDOFF_PREFIX}{agent}"


# ---- agents and requests -----------------------------------------------------------------------------------


class AgentSpec(Message, frozen=True, kw_only=True, tag="agent"):
    """An agent: instructions, model, the tools it may call (by name) and the agents it may hand off to."""

    name: str
    instructions: str = ""
    model: str | None = None  # None: the runner's default model
    tools: list[str] = []
    handoffs: list[str] = []
    handoff_description: str | None = None  # how other agents' models see the transfer tool
    max_turns: int | None = None  # None: the runner's RUN_MAX_TURNS
    temperature: float | None = None
    max_tokens: int | None = None
    base_url: str | None = None  # None: OPENAI_BASE_URL (or the demo model)
    api_key_env: str | None = None  # the runner's environment variable holding this provider's key


class ToolCallRecord(Message, frozen=True, kw_only=True, tag="tool_call_record"):
    """A tool call an assistant message made: its id, the tool's name and the JSON arguments."""

    call_id: str
    name: str
    arguments: str = "{}"


class ChatMessage(Message, frozen=True, kw_only=True, tag="chat_message"):
    """One earlier message of the conversation a run continues.

    An assistant message may carry ``tool_calls``; a ``tool`` message is one call's result (``tool_call_id``).
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[ToolCallRecord] = []
    tool_call_id: str | None = None


class ClientTool(Message, frozen=True, kw_only=True, tag="client_tool"):
    """A function the client declares and runs itself: offered to the model; a call ends the run with it."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = {}  # JSON Schema of the arguments
    strict: bool | None = None


class RunRequest(Message, frozen=True, kw_only=True, tag="run_request"):
    """Start a run: published as a NATS request to ``Subjects.run_requests`` (a queue group of runners)."""

    run_id: str
    agent: str
    input: str
    history: list[ChatMessage] = []  # earlier conversation, oldest first
    agents: list[AgentSpec] = []  # agents defined by the caller; they take precedence over configured ones
    timeout: float | None = None  # seconds from acceptance; None: STREAMING_TIMEOUT
    retry_count: int | None = None  # provider retries before the first token; None: RUN_RETRY_COUNT
    retry_delay: float | None = None  # first backoff delay in seconds; None: RUN_RETRY_DELAY
    max_turns: int | None = None
    metadata: dict[str, str] = {}
    owner: str | None = None  # the authenticated subject that started it; only it may read or cancel the run
    room: str | None = None  # the chat room whose answer this run is (set by the chat service only)
    # Set by a draining runner handing over a run it accepted and queued but did not start: the receiver takes
    # the run over from ``handover_from`` and continues its stored events after seq ``resume_after``.
    handover_from: str | None = None
    resume_after: int = 0
    # Tools the client runs itself (OpenAI-compatible dialects), offered beside the agent's own.
    client_tools: list[ClientTool] = []
    tool_choice: Literal["auto", "none", "required"] | None = None  # None: the model's default ("auto")
    tool_choice_name: str | None = None  # force a call of this one tool (overrides ``tool_choice``)
    parallel_tool_calls: bool | None = None  # None: the model's default
    instructions: str | None = None  # the caller's instructions, after the agent's own
    max_output_tokens: int | None = None  # per model turn; None: the agent's max_tokens


class RunAccepted(Message, frozen=True, kw_only=True, tag="run_accepted"):
    """The reply to a run request a runner took; its events follow on ``Subjects.run_events(run_id)``."""

    run_id: str
    instance: str
    queued: bool = False
    ref: str | None = None  # the client's ``ref`` of its ``agent_stream`` (set by the gateway)


class CancelRun(Message, frozen=True, kw_only=True, tag="cancel_run"):
    """Published as a request to ``Subjects.run_cancel(run_id)``; the runner owning the run answers."""

    run_id: str
    reason: str = "cancelled by client"


class CancelAccepted(Message, frozen=True, kw_only=True, tag="cancel_accepted"):
    run_id: str


class AgentsQuery(Message, frozen=True, kw_only=True, tag="agents_query"):
    """Ask a runner (``Subjects.run_agents``) which agents it serves."""


class AgentList(Message, frozen=True, kw_only=True, tag="agent_list"):
    agents: list[AgentSpec]
    demo: bool = False  # the runner answers with the offline demo model


class RunnerLease(Message, frozen=True, kw_only=True, tag="runner_lease"):
    """A runner's heartbeat in the leases bucket: the runs it owns, renewed every ``ttl / 3`` seconds."""

    instance: str
    at: float
    ttl: float
    runs: list[str] = []


# ---- run events --------------------------------------------------------------------------------------------


class Usage(Message, frozen=True, kw_only=True, tag="usage"):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class RunEventBase(Message, frozen=True, kw_only=True):
    """Fields every run event has: ``seq`` counts 1, 2, 3 ... per run without gaps."""

    run_id: str
    seq: int
    at: float


class RunQueued(RunEventBase, frozen=True, kw_only=True, tag="run_queued"):
    """Accepted while the pool was busy; ``run_started`` follows when a slot frees."""

    agent: str
    instance: str
    owner: str | None = None
    room: str | None = None
    # On the first event only, when the request had them: what a continuing conversation builds on.
    input: str = ""
    history: list[ChatMessage] = []
    metadata: dict[str, str] = {}
    client_tools: list[str] = []  # the names of the request's client tools


class RunStarted(RunEventBase, frozen=True, kw_only=True, tag="run_started"):
    agent: str
    model: str
    instance: str
    demo: bool = False  # answers come from the offline demo model, not a real LLM
    owner: str | None = None  # the run request's owner (on the first event only)
    room: str | None = None  # the run request's chat room (on the first event only)
    # On the first event only, when the request had them: what a continuing conversation builds on.
    input: str = ""
    history: list[ChatMessage] = []
    metadata: dict[str, str] = {}
    client_tools: list[str] = []  # the names of the request's client tools


class TextDelta(RunEventBase, frozen=True, kw_only=True, tag="run_text_delta"):
    agent: str
    delta: str


class ToolCallStarted(RunEventBase, frozen=True, kw_only=True, tag="run_tool_call_started"):
    agent: str
    call_id: str
    name: str


class ToolCallDelta(RunEventBase, frozen=True, kw_only=True, tag="run_tool_call_delta"):
    """A piece of a tool call's JSON arguments, as the model streams it."""

    call_id: str
    delta: str


class ToolCallFinished(RunEventBase, frozen=True, kw_only=True, tag="run_tool_call_finished"):
    call_id: str
    name: str
    arguments: str  # the complete JSON arguments


class ToolOutput(RunEventBase, frozen=True, kw_only=True, tag="run_tool_output"):
    call_id: str
    name: str
    output: str
    is_error: bool = False


class ToolProgress(RunEventBase, frozen=True, kw_only=True, tag="run_tool_progress"):
    """A running tool call's progress (an MCP server's progress notifications), before its ``run_tool_output``."""

    call_id: str = ""
    name: str = ""
    progress: float = 0.0
    total: float | None = None  # None: the tool does not know how much there is
    message: str | None = None


class Handoff(RunEventBase, frozen=True, kw_only=True, tag="run_handoff"):
    call_id: str
    from_agent: str
    to_agent: str


class AgentChanged(RunEventBase, frozen=True, kw_only=True, tag="run_agent_changed"):
    agent: str
    previous: str
    model: str


class RunStepRestarted(RunEventBase, frozen=True, kw_only=True, tag="run_step_restarted"):
    """The runner of this run died; ``instance`` continues it from its last completed step.

    Events with ``after_seq < seq <`` this event's ``seq`` belong to the interrupted step and are void: a client
    drops their text (the step is streamed afresh after this event). ``step`` is ``model_turn`` (turn ``turn`` is
    asked of the model again) or ``tool_calls`` (the model's turn ``turn`` stands; its tool calls are finished).
    """

    turn: int
    step: str
    after_seq: int
    restart: int  # 1 for the run's first restart
    reason: str
    instance: str
    previous: str | None = None  # the instance that died


class ApprovalRequested(RunEventBase, frozen=True, kw_only=True, tag="run_approval_requested"):
    """A tool call waits for a person's decision; the run is parked (no runner holds it) until one comes.

    Who may decide: the subjects in ``approvers`` (the run's owner and those the policy names), admins, and
    identities whose ``approvals`` grant matches ``agent``. ``deadline`` (wall clock, None: none) applies
    ``outcome`` (``reject``: the model is told; ``fail``: the run fails with ``timeout``) if nobody decided.
    """

    call_id: str
    name: str
    arguments: str  # the complete JSON arguments the model asked for
    agent: str = ""
    approvers: list[str] = []
    deadline: float | None = None
    outcome: Literal["reject", "fail"] = "reject"


class ApprovalDecided(RunEventBase, frozen=True, kw_only=True, tag="run_approval_decided"):
    """A decision on an ``run_approval_requested`` call: who, when (``at``), what.

    ``approved`` with ``arguments`` (None: the model's own) runs the tool; a rejection hands the model
    ``message`` as the tool's output. ``decided_by`` is the deciding subject, or ``deadline``.
    """

    call_id: str
    name: str
    approved: bool
    decided_by: str
    message: str | None = None
    arguments: str | None = None  # edited JSON arguments of an approval
    instance: str = ""  # the runner that took the decision and continues the run


class RunCompleted(RunEventBase, frozen=True, kw_only=True, tag="run_completed"):
    """The run's answer; with ``client_calls`` the last turn ended calling the client's own tools instead.

    The client runs those and continues the conversation in a new run whose history holds their results.
    """

    agent: str
    output: str
    usage: Usage = Usage()
    turns: int = 1
    client_calls: list[ToolCallRecord] = []
    truncated: bool = False  # the last turn stopped at its token limit (max_tokens / max_output_tokens)


class RunFailed(RunEventBase, frozen=True, kw_only=True, tag="run_failed"):
    code: ErrorCode
    message: str


class RunCancelled(RunEventBase, frozen=True, kw_only=True, tag="run_cancelled"):
    reason: str = "cancelled"


RunEvent = (
    RunQueued
    | RunStarted
    | TextDelta
    | ToolCallStarted
    | ToolCallDelta
    | ToolCallFinished
    | ToolProgress
    | ToolOutput
    | Handoff
    | AgentChanged
    | RunStepRestarted
    | ApprovalRequested
    | ApprovalDecided
    | RunCompleted
    | RunFailed
    | RunCancelled
)
TerminalRunEvent = RunCompleted | RunFailed | RunCancelled
TERMINAL_EVENTS: Final = (RunCompleted, RunFailed, RunCancelled)


class RunPark(Message, frozen=True, kw_only=True, tag="run_park"):
    """A parked run in ``<PREFIX>_RUN_STATE``: the calls still waiting for a decision, and since when."""

    since: float  # wall clock; the run's timeout does not count while it is parked
    pending: list[str] = []  # call ids without a decision


class RunState(Message, frozen=True, kw_only=True, tag="run_state"):
    """What a run's stored events do not hold, kept in the KV bucket ``<PREFIX>_RUN_STATE`` while it is open:
    enough for another runner to continue it (the events up to its last completed step hold the rest)."""

    request: RunRequest
    accepted_at: float  # wall clock: the run's timeout counts from here on every runner
    timeout: float  # seconds, as resolved when the run was accepted
    max_turns: int
    max_restarts: int  # RUN_MAX_RESTARTS of the accepting runner
    usage: Usage = Usage()  # tokens of the model turns so far
    usage_turns: int = 0  # how many turns ``usage`` covers
    parked: RunPark | None = None  # the run waits for approval decisions (no runner holds it)


def event_type(message: Message) -> str:
    """The ``type`` tag a message is sent with (``run_text_delta`` ...)."""
    return str(type(message).__struct_config__.tag)


RunReply = RunAccepted | Error
CancelReply = CancelAccepted | Error

runs_encoder: Final = msgspec.json.Encoder()
run_event_decoder: Final[msgspec.json.Decoder[RunEvent]] = msgspec.json.Decoder(RunEvent)
run_request_decoder: Final = msgspec.json.Decoder(RunRequest)
run_reply_decoder: Final[msgspec.json.Decoder[RunAccepted | Error]] = msgspec.json.Decoder(RunReply)
cancel_run_decoder: Final = msgspec.json.Decoder(CancelRun)
cancel_reply_decoder: Final[msgspec.json.Decoder[CancelAccepted | Error]] = msgspec.json.Decoder(CancelReply)
agents_query_decoder: Final = msgspec.json.Decoder(AgentsQuery)
agent_list_decoder: Final[msgspec.json.Decoder[AgentList | Error]] = msgspec.json.Decoder(AgentList | Error)
runner_lease_decoder: Final = msgspec.json.Decoder(RunnerLease)
run_state_decoder: Final = msgspec.json.Decoder(RunState)


# ---- clients of the gateway (WebSocket messages; ``AgentStream`` is also the body of ``POST /v1/runs``) --------


class AgentStream(ClientRequest, frozen=True, kw_only=True, tag="agent_stream"):
    """Start a run and receive its events (the seed's ``agent_stream``); ``run_id`` is chosen if omitted."""

    agent: str
    input: str
    run_id: str | None = None
    history: list[ChatMessage] = []
    agents: list[AgentSpec] = []
    timeout: float | None = None
    retry_count: int | None = None
    retry_delay: float | None = None
    max_turns: int | None = None
    metadata: dict[str, str] = {}
    stream: bool = False  # POST /v1/runs only: answer with the run's event stream instead of 202


class ResumeRun(ClientRequest, frozen=True, kw_only=True, tag="resume"):
    """Continue receiving a run's events after ``last_seq`` (0: from the start)."""

    run_id: str
    last_seq: int = 0


class CancelRunStream(ClientRequest, frozen=True, kw_only=True, tag="cancel"):
    """Cancel a run: its upstream model stream is closed and ``run_cancelled`` ends it."""

    run_id: str
    reason: str = "cancelled by client"


RunClientMessage = AgentStream | ResumeRun | CancelRunStream
agent_stream_decoder: Final = msgspec.json.Decoder(AgentStream)
run_client_message_decoder: Final[msgspec.json.Decoder[AgentStream | ResumeRun | CancelRunStream]] = (
    msgspec.json.Decoder(RunClientMessage))
