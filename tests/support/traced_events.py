"""A process with tracing on: one emitter emits (inside a span and outside any), two others listen; prints JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from opentelemetry import trace

from proto.events import Event
from raaf.events import EventEmitter
from shared.events.settings import EventSettings
from shared.tracing import TracingSettings, flush_tracing, install_tracing, tracer


async def main() -> None:
    endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    assert install_tracing("events-test", "events-test-1", "0", TracingSettings(endpoint=endpoint))
    settings = EventSettings.from_env(os.environ)
    seen: dict[str, list[dict[str, str]]] = {"direct": [], "nats-py": []}
    arrived = asyncio.Event()

    def handler(path: str) -> object:
        async def handle(event: Event) -> None:
            context = trace.get_current_span().get_span_context()
            seen[path].append({"event": event.event, "trace_id": f"{context.trace_id:032x}",
                               "span_id": f"{context.span_id:016x}"})
            if all(len(events) == 2 for events in seen.values()):
                arrived.set()
        return handle

    async with EventEmitter(settings=settings) as direct, \
            EventEmitter(settings=settings, direct_delivery=False) as plain, \
            EventEmitter(settings=settings) as sender:
        await direct.on("order.*", handler("direct"))  # type: ignore[arg-type]
        await plain.on("order.**", handler("nats-py"))  # type: ignore[arg-type]
        with tracer("tests").start_as_current_span("checkout"):
            await sender.emit("order.placed", {"n": 1})  # confirmed (history on)
        await sender.emit("order.shipped", {"n": 2}, confirm=False)  # no span current: a trace of its own
        await asyncio.wait_for(arrived.wait(), 20)
    flush_tracing()
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
