"""Installs the OpenTelemetry SDK (OTLP/HTTP exporter, batch processor) once per process, when tracing is on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from opentelemetry import trace

from shared.tracing.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("raaf.tracing")


class _Switch:
    """Whether this process records spans: hot paths test ``TRACING.on`` before building any attribute."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


TRACING = _Switch()
_provider: TracerProvider | None = None  # the SDK TracerProvider this process installed


def install_tracing(service: str, instance: str, version: str, settings: TracingSettings) -> bool:
    """Install the SDK provider when ``settings.enabled`` (else leave the API's no-op tracer); True if on.

    The endpoint and service name come from ``settings``; the sampler, exporter headers, timeouts and batch sizes
    from the standard OTEL_* variables, read by the SDK itself. Called once per process (by ``run_service``); a
    second call keeps the first provider.
    """
    global _provider
    if not settings.enabled:
        return False
    if _provider is not None:
        return True
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.name": settings.service_name or f"raaf-{service}", "service.instance.id": instance,
                  "service.version": version, "service.namespace": "raaf"}
    provider = TracerProvider(resource=Resource.create(attributes))  # OTEL_TRACES_SAMPLER: read by the SDK
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
    trace.set_tracer_provider(provider)
    _provider = provider
    TRACING.on = True
    log.info("tracing on", extra={"otlp_endpoint": settings.endpoint, "sampler": settings.sampler})
    return True


def flush_tracing(timeout_ms: int = 5000) -> None:
    """Export every finished span now (on stop; the SDK also flushes at exit)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)
