"""Event spans: a PRODUCER span per emit, its context in the message headers, and a CONSUMER span per delivery."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.trace import Span

from proto.events import Event
from shared.tracing.messaging import consumer, producer

COMPONENT = "raaf.events"
PUBLISH = "event publish"
DELIVER = "event deliver"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


@contextlib.contextmanager
def emitting(event: Event, headers: dict[str, str] | None) -> Iterator[dict[str, str] | None]:
    """A PRODUCER span around one emit (a child of the current span, else a trace the sampler decides on);
    yields ``headers`` plus the span's trace context. Only called while tracing is on."""
    with producer(COMPONENT, PUBLISH, event.event) as carried:
        trace.get_current_span().set_attribute("messaging.message.id", event.id)
        if not carried:
            yield headers
        elif headers is None:
            yield carried
        else:
            yield {**headers, **carried}


@contextlib.contextmanager
def delivering(event: Event, traceparent: str, tracestate: str | None) -> Iterator[Span | None]:
    """A CONSUMER span, the emit's child, around calling one event's listeners."""
    with consumer(COMPONENT, DELIVER, event.event, traceparent, tracestate) as span:
        if span is not None:
            span.set_attribute("messaging.message.id", event.id)
        yield span
