"""Restarts and traces: a continued run stays in its trace (a child of its first run span), a failed orphan too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from proto.errors import ErrorCode
from proto.runs import RunCompleted, RunFailed, RunStepRestarted
from raaf.testing import OpenAIMock
from shared.devstack.servers import NatsServer
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.processes import ServiceProcess
from tests.support.restart import dumps, kill_mid_answer, restart_env, scripted_model, two_runners
from tests.support.runs import Runs

SERVER = 2  # OTLP span kind


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.05, fallback=scripted_model) as server:
        yield server


@pytest.fixture
def runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, receiver: OtlpReceiver,
           service_process: Callable[..., ServiceProcess]) -> Callable[..., ServiceProcess]:
    """An agent-runner process named ``instance``, exporting every span to ``receiver``."""
    def start(instance: str, **extra: str) -> ServiceProcess:
        return service_process("services.agent_runner", restart_env(
            nats_server.url, mock.url, prefix, tmp_path, instance, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_SAMPLER="always_on", OTEL_BSP_SCHEDULE_DELAY="50", **extra))
    return start


async def stored_headers(runs: Runs, run_id: str, seq: int) -> dict[str, str]:
    """The headers of the run's stored event ``seq``."""
    msg = await runs.nc.jetstream().get_msg(runs.client.subjects.stream_name("runs"), seq=1,
                                            subject=runs.client.subjects.run_events(run_id), next=True)
    while msg.seq is not None and msg.data and seq > 1:
        seq -= 1
        msg = await runs.nc.jetstream().get_msg(runs.client.subjects.stream_name("runs"), seq=msg.seq + 1,
                                                subject=runs.client.subjects.run_events(run_id), next=True)
    return dict(msg.headers or {})


async def test_restart_trace_a_run_killed_mid_answer_continues_as_a_child_of_its_first_run_span(
    runs: Runs, runner: Callable[..., ServiceProcess], receiver: OtlpReceiver
) -> None:
    runners = await two_runners(runs, runner)
    killer = asyncio.create_task(kill_mid_answer(runs, runners))
    accepted = await runs.start("note:a", agent="clerk")
    run_id = await asyncio.wait_for(killer, 40)
    assert run_id == getattr(accepted, "run_id", None)
    events = await runs.events(run_id, timeout=40)
    assert isinstance(events[-1], RunCompleted) and any(isinstance(e, RunStepRestarted) for e in events), (
        dumps(events))
    _, trace_id, first_span, _ = (await stored_headers(runs, run_id, 1))["traceparent"].split("-")

    def restarted(spans: list[ReceivedSpan]) -> bool:
        return any(span.attributes.get("raaf.run.restart") for span in spans)

    await receiver.wait_for(restarted, timeout=30)
    runs_spans = [s for s in receiver.spans if s.name == "invoke_agent clerk"]
    [again] = [s for s in runs_spans if s.attributes.get("raaf.run.restart")]
    assert (again.kind, again.trace_id, again.parent_id) == (SERVER, trace_id, first_span)
    assert again.attributes["raaf.run.id"] == run_id
    # the killed runner's finished turns were exported under the first run span: all one trace
    turns = [s for s in receiver.spans if s.name.startswith("chat ")]
    assert {s.trace_id for s in turns} == {trace_id}
    assert {s.parent_id for s in turns} <= {first_span, again.span_id} and again.span_id in {
        s.parent_id for s in turns}


async def test_restart_trace_a_run_failed_as_an_orphan_carries_the_runs_trace_context_on_its_run_failed(
    runs: Runs, runner: Callable[..., ServiceProcess]
) -> None:
    runners = await two_runners(runs, runner, RUN_MAX_RESTARTS="0")  # an orphan is failed, not continued
    killer = asyncio.create_task(kill_mid_answer(runs, runners))
    await runs.start("note:a", agent="clerk")
    run_id = await asyncio.wait_for(killer, 40)
    events = await runs.events(run_id, timeout=40)
    final = events[-1]
    assert isinstance(final, RunFailed) and final.code == ErrorCode.UNAVAILABLE, dumps(events)
    first, failed = await stored_headers(runs, run_id, 1), await stored_headers(runs, run_id, final.seq)
    assert failed["traceparent"] == first["traceparent"]  # by a follower or a sweep: in the run's trace
