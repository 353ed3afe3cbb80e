"""W3C trace context (traceparent/tracestate) in NATS message headers and stored with jobs."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from shared.tracing.setup import TRACING


def inject(headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """``headers`` plus the current trace context; unchanged (None stays None) while tracing is off."""
    if not TRACING.on or not trace.get_current_span().get_span_context().is_valid:
        return headers
    carrier: dict[str, str] = {} if headers is None else headers
    propagate.inject(carrier)
    return carrier


def trace_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """Only the trace context of a message's headers (to keep with work that outlives the message)."""
    if not TRACING.on or not headers or "traceparent" not in headers:
        return None
    return {key: headers[key] for key in ("traceparent", "tracestate") if key in headers}


def context_from(headers: Mapping[str, str] | None) -> Context | None:
    """The trace context a message carried, or None (tracing off, or no ``traceparent``)."""
    if not TRACING.on or not headers or "traceparent" not in headers:
        return None
    return propagate.extract(headers)


def traceparent() -> str:
    """The current span as one ``traceparent`` value ('' when tracing is off or no span is current)."""
    carrier = inject({})
    return "" if not carrier else carrier.get("traceparent", "")


def link_from(value: str | bytes | None) -> list[Link]:
    """A Link to the span a stored ``traceparent`` names (none when it is empty, unreadable or tracing is off)."""
    if not TRACING.on or not value:
        return []
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    context = trace.get_current_span(propagate.extract({"traceparent": text})).get_span_context()
    return [Link(context)] if context.is_valid else []
