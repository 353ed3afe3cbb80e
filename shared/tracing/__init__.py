"""OpenTelemetry tracing: set up from the OTEL_* variables, off and free when no OTLP endpoint is set."""

from shared.tracing.propagation import context_from, inject, link_from, trace_headers, traceparent
from shared.tracing.settings import TracingSettings
from shared.tracing.setup import TRACING, flush_tracing, install_tracing
from shared.tracing.spans import linked_root, server_span, traced, traced_handler, tracer

__all__ = [
    "TRACING",
    "TracingSettings",
    "context_from",
    "flush_tracing",
    "inject",
    "install_tracing",
    "link_from",
    "linked_root",
    "server_span",
    "trace_headers",
    "traced",
    "traced_handler",
    "traceparent",
    "tracer",
]
