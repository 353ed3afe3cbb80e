"""Structured JSON logging: one object per line, with the service and instance on every record."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec
from opentelemetry import trace

from shared.tracing import TRACING

_encoder = msgspec.json.Encoder()
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as JSON; ``extra={...}`` keys become fields."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "service": self.service,
            "instance": self.instance,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if TRACING.on:  # the span the record was logged in: logs and traces join on trace_id
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                entry["trace_id"] = format(context.trace_id, "032x")
                entry["span_id"] = format(context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode(errors="replace") if _encodable(entry) else repr(entry)


def _encodable(entry: dict[str, Any]) -> bool:
    try:
        _encoder.encode(entry)
    except (TypeError, msgspec.EncodeError):
        for key, value in list(entry.items()):
            try:
                _encoder.encode(value)
            except (TypeError, msgspec.EncodeError):
                entry[key] = repr(value)
    return True


def configure_logging(service: str, instance: str, level: str = "info", fmt: str = "json") -> None:
    """Install the formatter on the root logger (stderr), replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service, instance))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # nats-py logs every reconnect attempt at error level; keep those at warning noise.
    logging.getLogger("nats").setLevel(max(logging.WARNING, root.level))
