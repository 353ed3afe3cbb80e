"""Agent-run spans with the OpenTelemetry GenAI semantic conventions: the run, each model turn, tools, handoffs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Final
from urllib.parse import urlsplit

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from shared.tracing.propagation import context_from, link_from
from shared.tracing.setup import TRACING
from shared.tracing.spans import tracer

COMPONENT: Final = "raaf.agent-runner"
PROVIDER: Final = "openai"  # the wire every model endpoint speaks here (OpenAI, vLLM, Ollama, the demo ...)
FIRST_TOKEN: Final = "gen_ai.first_token"  # span event: the turn's first text or tool-call delta arrived

# Attribute names (GenAI semantic conventions; ``raaf.*`` for what they have no name for).
OPERATION: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
AGENT_NAME: Final = "gen_ai.agent.name"
CONVERSATION: Final = "gen_ai.conversation.id"
REQUEST_MODEL: Final = "gen_ai.request.model"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TTFT: Final = "gen_ai.response.time_to_first_token"  # seconds, on the first-token event
RUN_ID: Final = "raaf.run.id"


@contextlib.contextmanager
def agent_run(headers: Mapping[str, str] | None, *, run_id: str, agent: str,
              handover: bool = False, restart: bool = False,
              decision: Mapping[str, str] | None = None) -> Iterator[Span | None]:
    """The run's span (``invoke_agent <agent>``), child of the span that sent the run request; None when off.

    ``restart``: a run continued after its runner died, ``headers`` being its first stored event's context.
    ``decision``: a parked run continued by an approval decision (the context of the runner's ``decide_approval``
    span, linked), ``headers`` again the run's first event's context.
    """
    if not TRACING.on:
        yield None
        return
    attributes: dict[str, AttributeValue] = {OPERATION: "invoke_agent", PROVIDER_NAME: PROVIDER, AGENT_NAME: agent,
                                             RUN_ID: run_id, CONVERSATION: run_id, "raaf.run.handover": handover}
    if decision is not None:
        attributes["raaf.run.decided"] = True
    elif restart:
        attributes["raaf.run.restart"] = True
    links = link_from(decision.get("traceparent")) if decision else None
    with tracer(COMPONENT).start_as_current_span(f"invoke_agent {agent}", context=context_from(headers),
                                                 kind=SpanKind.SERVER, attributes=attributes, links=links) as span:
        yield span


@contextlib.contextmanager
def approval_park(*, run_id: str, calls: list[str], tools: list[str]) -> Iterator[Span | None]:
    """An INTERNAL span ``park_run``, child of the run's span, around making its wait for decisions durable."""
    if not TRACING.on:
        yield None
        return
    attributes: dict[str, AttributeValue] = {RUN_ID: run_id, "raaf.approval.call_ids": calls, TOOL_NAME: tools}
    with tracer(COMPONENT).start_as_current_span("park_run", attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def approval_decision(headers: Mapping[str, str] | None, *, run_id: str, call_id: str,
                      run_trace: Mapping[str, str] | None) -> Iterator[Span | None]:
    """The runner's span (``decide_approval``) for a decision on a parked run's call: a child of the span that
    sent it (the request's headers), with a Link to the run's span (``run_trace``); None when off."""
    if not TRACING.on:
        yield None
        return
    links = link_from(run_trace.get("traceparent")) if run_trace else []
    attributes: dict[str, AttributeValue] = {RUN_ID: run_id, TOOL_CALL_ID: call_id}
    with tracer(COMPONENT).start_as_current_span("decide_approval", context=context_from(headers),
                                                 kind=SpanKind.SERVER, links=links, attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def cancel_request(headers: Mapping[str, str] | None, *, run_id: str,
                   run_trace: Mapping[str, str] | None) -> Iterator[Span | None]:
    """The runner's span (``cancel_run``) for a cancel of one of its runs: a child of the span that asked for it
    (the request's headers), with a Link to the run's span (``run_trace``, the run's own context); None when off."""
    if not TRACING.on:
        yield None
        return
    links = link_from(run_trace.get("traceparent")) if run_trace else []
    with tracer(COMPONENT).start_as_current_span("cancel_run", context=context_from(headers), kind=SpanKind.SERVER,
                                                 links=links, attributes={RUN_ID: run_id}) as span:
        yield span


def record_outcome(span: Span | None, outcome: str, *, code: str | None = None, input_tokens: int = 0,
                   output_tokens: int = 0) -> None:
    """The run's end on its span: outcome, error code, tokens over all turns."""
    if span is None:
        return
    span.set_attribute("raaf.run.outcome", outcome)
    if code is not None:
        span.set_attribute("error.type", code)
        span.set_status(Status(StatusCode.ERROR, code))
    if outcome == "completed":
        span.set_attribute(INPUT_TOKENS, input_tokens)
        span.set_attribute(OUTPUT_TOKENS, output_tokens)


class ModelTurn:
    """One model turn's span: first token as an event, usage and finish reason when it ends."""

    __slots__ = ("_started", "_waiting", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._started = time.monotonic()
        self._waiting = span.is_recording()  # a turn the sampler dropped records nothing

    def first_token(self) -> None:
        if self._waiting:
            self._waiting = False
            self.span.add_event(FIRST_TOKEN, {TTFT: time.monotonic() - self._started})

    def end(self, *, finish_reason: str, input_tokens: int | None, output_tokens: int | None, calls: int) -> None:
        self.span.set_attribute(FINISH_REASONS, [finish_reason])
        self.span.set_attribute("raaf.turn.tool_calls", calls)
        if input_tokens is not None:
            self.span.set_attribute(INPUT_TOKENS, input_tokens)
        if output_tokens is not None:
            self.span.set_attribute(OUTPUT_TOKENS, output_tokens)


@contextlib.contextmanager
def model_turn(*, agent: str, model: str, base_url: str | None, turn: int) -> Iterator[ModelTurn | None]:
    """A CLIENT span ``chat <model>`` around one streamed completion; None when off."""
    if not TRACING.on:
        yield None
        return
    attributes: dict[str, str | int] = {OPERATION: "chat", PROVIDER_NAME: PROVIDER, REQUEST_MODEL: model,
                                        AGENT_NAME: agent, "raaf.turn": turn}
    if base_url:
        parts = urlsplit(base_url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        if parts.port:
            attributes["server.port"] = parts.port
    with tracer(COMPONENT).start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT,
                                                 attributes=attributes) as span:
        yield ModelTurn(span)


@contextlib.contextmanager
def tool_call(*, agent: str, name: str, call_id: str) -> Iterator[Span | None]:
    """An INTERNAL span ``execute_tool <name>``; the caller marks a failed tool with ``tool_failed``."""
    if not TRACING.on:
        yield None
        return
    attributes = {OPERATION: "execute_tool", AGENT_NAME: agent, TOOL_NAME: name, TOOL_CALL_ID: call_id}
    with tracer(COMPONENT).start_as_current_span(f"execute_tool {name}", attributes=attributes) as span:
        yield span


def tool_failed(span: Span | None, outcome: str, message: str) -> None:
    if span is not None:
        span.set_attribute("error.type", outcome)
        span.set_status(Status(StatusCode.ERROR, message[:200]))


@contextlib.contextmanager
def handoff(*, from_agent: str, to_agent: str, tool: str, call_id: str) -> Iterator[Span | None]:
    """A span ``handoff <to_agent>`` around recording the transfer the model asked for; None when off."""
    if not TRACING.on:
        yield None
        return
    attributes = {OPERATION: "execute_tool", AGENT_NAME: from_agent, TOOL_NAME: tool, TOOL_CALL_ID: call_id,
                  "raaf.handoff.from_agent": from_agent, "raaf.handoff.to_agent": to_agent}
    with tracer(COMPONENT).start_as_current_span(f"handoff {to_agent}", attributes=attributes) as span:
        yield span
