"""Tracing is set by the OTEL_* variables, off without an endpoint, and puts trace and span ids on log lines."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.errors import SettingsError
from shared.service.logs import JsonFormatter
from shared.service.settings import Env, RuntimeSettings
from shared.tracing import TRACING, inject, install_tracing, traceparent


def runtime(**environ: str) -> RuntimeSettings:
    return RuntimeSettings.from_env(Env(environ), default_http_port=0)


def test_tracing_is_off_without_an_endpoint_and_installs_no_sdk_provider() -> None:
    settings = runtime(OTEL_SERVICE_NAME="x", OTEL_TRACES_SAMPLER="always_on").tracing
    assert not settings.enabled
    assert install_tracing("gateway", "i1", "0", settings) is False
    assert not TRACING.on
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert inject() is None and inject({"Nats-Msg-Id": "r:1"}) == {"Nats-Msg-Id": "r:1"} and traceparent() == ""


def test_the_traces_endpoint_wins_over_the_general_one_and_the_sdk_can_be_disabled() -> None:
    settings = runtime(OTEL_EXPORTER_OTLP_ENDPOINT="http://a:4318",
                       OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://b:4318/v1/traces").tracing
    assert settings.endpoint == "http://b:4318/v1/traces" and settings.enabled
    assert runtime(OTEL_EXPORTER_OTLP_ENDPOINT="http://a:4318/").tracing.endpoint == "http://a:4318/v1/traces"
    assert not runtime(OTEL_EXPORTER_OTLP_ENDPOINT="http://a:4318", OTEL_SDK_DISABLED="true").tracing.enabled


@pytest.mark.parametrize(("name", "value"), [("OTEL_TRACES_SAMPLER", "sometimes"),
                                             ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
                                             ("OTEL_SDK_DISABLED", "maybe")])
def test_a_bad_otel_variable_stops_the_service_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        runtime(**{name: value})
    assert raised.value.variable == name


def format_in_span(formatter: JsonFormatter, tracer: trace.Tracer | None) -> dict[str, object]:
    record = logging.LogRecord("raaf.test", logging.INFO, __file__, 1, "hello", None, None)
    if tracer is None:
        return dict(json.loads(formatter.format(record)))
    with tracer.start_as_current_span("work") as span:
        entry = dict(json.loads(formatter.format(record)))
        context = span.get_span_context()
        assert (entry["trace_id"], entry["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
        return entry


def test_log_lines_carry_the_current_trace_and_span_ids_while_tracing_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    formatter = JsonFormatter("gateway", "i1")
    monkeypatch.setattr(TRACING, "on", True)
    entry = format_in_span(formatter, TracerProvider().get_tracer("test"))  # a provider of its own, not global
    assert entry["msg"] == "hello"
    outside = format_in_span(formatter, None)
    assert "trace_id" not in outside and "span_id" not in outside


def test_log_lines_have_no_trace_fields_while_tracing_is_off() -> None:
    formatter = JsonFormatter("gateway", "i1")
    with TracerProvider().get_tracer("test").start_as_current_span("work"):
        record = logging.LogRecord("raaf.test", logging.INFO, __file__, 1, "hello", None, None)
        assert "trace_id" not in json.loads(formatter.format(record))

