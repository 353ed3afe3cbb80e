"""Approval spans: the park is a span of the run; a decision, a span from the gateway to the runner continuing it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from raaf.testing import OpenAIMock
from shared.devstack.servers import NatsServer, free_port
from tests.support.approvals import approvals_env
from tests.support.env import service_env
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.processes import ServiceProcess
from tests.support.restart import alive, scripted_model
from tests.support.runs import Runs

SERVER, INTERNAL = 2, 1  # OTLP span kinds


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.01, fallback=scripted_model) as server:
        yield server


@pytest.fixture
async def gateway(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, runs: Runs,
                  receiver: OtlpReceiver, service_process: Callable[..., ServiceProcess]) -> str:
    """An agent-runner and a gateway as processes, exporting their spans to ``receiver``; the gateway's URL."""
    otel = dict(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_TRACES_SAMPLER="always_on",
                OTEL_BSP_SCHEDULE_DELAY="50")
    service_process("services.agent_runner", approvals_env(nats_server.url, mock.url, prefix, tmp_path, "a", **otel))
    port = free_port()
    process = service_process("services.gateway", service_env(
        nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, WEBSOCKET_PORT=str(port), **otel))
    await alive(runs, "a")
    await process.wait_ready(f"http://127.0.0.1:{port}", timeout=90)
    return f"http://127.0.0.1:{port}"


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


async def test_approval_spans_a_park_is_the_runs_child_and_a_decision_reaches_the_runner_that_continues_it(
    gateway: str, receiver: OtlpReceiver
) -> None:
    frames: list[dict[str, object]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{gateway.replace('http', 'ws', 1)}/ws") as ws:
        async def until(kind: str) -> dict[str, object]:
            while True:
                frame: dict[str, object] = json.loads((await ws.receive(timeout=30)).data)
                frames.append(frame)
                assert frame["type"] != "error", frame
                if frame["type"] == kind:
                    return frame

        await ws.send_str(json.dumps({"type": "agent_stream", "id": "s1", "agent": "clerk", "input": "charge:5000"}))
        request = await until("run_approval_requested")
        run_id, call_id = request["run_id"], request["call_id"]
        await ws.send_str(json.dumps({"type": "run_decide", "id": "d1", "run_id": run_id, "call_id": call_id,
                                      "approved": True}))
        await until("run_completed")
    await receiver.wait_for(lambda spans: len(named(spans, "invoke_agent clerk")) == 2
                            and len(named(spans, "decide_approval")) == 2 and len(named(spans, "park_run")) == 1)
    spans = receiver.spans
    [first] = [span for span in named(spans, "invoke_agent clerk") if not span.attributes.get("raaf.run.decided")]
    [after] = [span for span in named(spans, "invoke_agent clerk") if span.attributes.get("raaf.run.decided")]
    [park] = named(spans, "park_run")
    [asked] = [span for span in named(spans, "decide_approval") if span.service == "raaf-gateway"]
    [taken] = [span for span in named(spans, "decide_approval") if span.service == "raaf-agent-runner"]
    assert (park.kind, park.trace_id, park.parent_id) == (INTERNAL, first.trace_id, first.span_id)
    assert park.attributes["raaf.approval.call_ids"] == [call_id] and park.attributes["gen_ai.tool.name"] == [
        "charge"]
    assert (asked.kind, asked.links) == (SERVER, [(first.trace_id, first.span_id)])
    assert (taken.kind, taken.trace_id, taken.parent_id) == (SERVER, asked.trace_id, asked.span_id)  # over NATS
    assert taken.links == [(first.trace_id, first.span_id)] and taken.attributes["raaf.run.id"] == run_id
    # the continued run stays in the run's trace, linked to the decision that continued it
    assert (after.trace_id, after.parent_id, after.links) == (first.trace_id, first.span_id,
                                                              [(taken.trace_id, taken.span_id)])
    assert "raaf.run.restart" not in after.attributes
