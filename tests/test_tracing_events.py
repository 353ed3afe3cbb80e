"""EventEmitter spans: each emit a PRODUCER span carried in the message headers, each delivery its CONSUMER child."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from shared.devstack.servers import NatsServer
from tests.support.env import unique_prefix
from tests.support.otlp import OtlpReceiver, ReceivedSpan

PRODUCER, CONSUMER = 4, 5  # OTLP span kinds


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


async def test_an_emits_listeners_run_in_consumer_spans_that_are_the_emits_children(
    nats_server: NatsServer, receiver: OtlpReceiver
) -> None:
    env = {**os.environ, "NATS_URL": nats_server.url, "RAAF_PREFIX": unique_prefix("tev"),
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on",
           "OTEL_BSP_SCHEDULE_DELAY": "50", "EVENTS_REPORT_STATS": "false"}
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.support.traced_events", env=env,
                                                 stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(child.communicate(), 90)
    assert child.returncode == 0
    seen: dict[str, list[dict[str, str]]] = json.loads(out.decode().strip().splitlines()[-1])
    await receiver.wait_for(lambda spans: len(named(spans, "event deliver")) == 4)
    spans = receiver.spans
    [checkout] = named(spans, "checkout")
    publishes = {span.attributes["messaging.destination.name"]: span for span in named(spans, "event publish")}
    placed, shipped = publishes["order.placed"], publishes["order.shipped"]
    assert (placed.kind, shipped.kind) == (PRODUCER, PRODUCER)
    assert (placed.trace_id, placed.parent_id) == (checkout.trace_id, checkout.span_id)
    assert shipped.parent_id == "" and shipped.trace_id != checkout.trace_id  # no span current: a new trace
    for publish in (placed, shipped):
        delivers = [span for span in named(spans, "event deliver") if span.parent_id == publish.span_id]
        assert len(delivers) == 2  # the direct route and nats-py's subscription callback
        assert {(span.kind, span.trace_id, span.attributes["messaging.destination.name"]) for span in delivers} == {
            (CONSUMER, publish.trace_id, publish.attributes["messaging.destination.name"])}
        # each handler ran inside its delivery's span
        handled = {(item["trace_id"], item["span_id"]) for path in seen.values() for item in path}
        assert {(span.trace_id, span.span_id) for span in delivers} <= handled
