"""Spans for messages over NATS (channels): the publisher's PRODUCER span, the receiver's CONSUMER span as its child."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind

from shared.tracing.propagation import inject
from shared.tracing.setup import TRACING
from shared.tracing.spans import tracer


@contextlib.contextmanager
def producer(component: str, name: str, destination: str) -> Iterator[dict[str, str] | None]:
    """A PRODUCER span around one publish (the sampler decides whether it records); yields the headers that carry
    it to the receivers. Callers test ``TRACING.on`` first: while off they publish without any of this."""
    attributes = {"messaging.system": "nats", "messaging.operation.type": "publish",
                  "messaging.destination.name": destination}
    with tracer(component).start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
        yield inject()


@contextlib.contextmanager
def consumer(component: str, name: str, destination: str, traceparent: str | None,
             tracestate: str | None = None) -> Iterator[Span | None]:
    """A CONSUMER span, child of the publisher's span, around handling one received message; none (None) when
    the message carried no trace context or tracing is off, so untraced messages cost nothing more."""
    if not TRACING.on or not traceparent:
        yield None
        return
    carrier = {"traceparent": traceparent} if tracestate is None else {"traceparent": traceparent,
                                                                       "tracestate": tracestate}
    attributes = {"messaging.system": "nats", "messaging.operation.type": "process",
                  "messaging.destination.name": destination}
    with tracer(component).start_as_current_span(name, context=propagate.extract(carrier), kind=SpanKind.CONSUMER,
                                                 attributes=attributes) as span:
        yield span
