"""A tool call that needs a person's approval parks its run durably; a decision continues it on any runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

import raaf
from proto.approvals import DecisionAccepted
from proto.errors import Error, ErrorCode
from proto.runs import (
    ApprovalDecided,
    ApprovalRequested,
    CancelAccepted,
    RunAccepted,
    RunCancelled,
    RunCompleted,
    RunEvent,
    RunFailed,
    ToolOutput,
)
from raaf.testing import OpenAIMock
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.runs.registry import RunRegistry
from shared.service.app import App
from tests.support.approvals import (
    APPROVAL_WAIT,
    approvals_env,
    decide,
    parked_state,
    until_parked,
    until_requested,
)
from tests.support.env import service_env
from tests.support.processes import ServiceProcess
from tests.support.restart import alive, calls, dumps, scripted_model
from tests.support.runs import Runs
from tests.support.waiting import eventually

RunnerProcess = Callable[..., ServiceProcess]


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.01, fallback=scripted_model) as server:
        yield server


@pytest.fixture
def runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
           service_process: RunnerProcess) -> Callable[..., ServiceProcess]:
    """Start an agent-runner process named ``instance`` (extra keywords: its environment)."""
    def start(instance: str, **extra: str) -> ServiceProcess:
        return service_process("services.agent_runner",
                               approvals_env(nats_server.url, mock.url, prefix, tmp_path, instance, **extra))
    return start


def gap_free(events: list[RunEvent]) -> bool:
    return [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_run_waiting_for_approval_survives_its_runner_killed_and_completes_on_another_once_approved(
    runs: Runs, runner: RunnerProcess, tmp_path: Path
) -> None:
    first = runner("a")
    await alive(runs, "a")
    accepted = await runs.start("note:x charge:5000", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    follower = asyncio.create_task(runs.events(accepted.run_id, timeout=APPROVAL_WAIT + 60))
    seen, request = await until_requested(runs, accepted.run_id)
    assert (request.name, request.agent, request.approvers) == ("charge", "clerk", ["auditor"])
    assert request.arguments == '{"amount":5000,"seconds":0}' and request.deadline is not None
    await until_parked(runs, accepted.run_id)
    assert await parked_state(runs, accepted.run_id) == [request.call_id]
    assert calls(tmp_path) == ["note x"], "the charge waits; the note before it ran"

    first.kill()  # kill -9: the parked run is no runner's, so nothing is lost
    await asyncio.sleep(APPROVAL_WAIT)  # no runner at all, longer than any lease or orphan grace
    assert not follower.done(), "a follower keeps waiting for a parked run"
    assert await parked_state(runs, accepted.run_id) == [request.call_id]

    runner("b")
    await alive(runs, "b")
    reply = await decide(runs, accepted.run_id, request.call_id, approved=True, by="auditor")
    assert isinstance(reply, DecisionAccepted) and reply.instance == "b", reply
    events = await follower
    final = events[-1]
    assert isinstance(final, RunCompleted), dumps(events)
    assert gap_free(events) and events[:len(seen)] == seen
    (decided,) = [e for e in events if isinstance(e, ApprovalDecided)]
    assert (decided.decided_by, decided.approved, decided.instance, decided.seq) == ("auditor", True, "b", reply.seq)
    assert decided.seq == request.seq + 1, "the decision is the next event after the request"
    outputs = [e.output for e in events if isinstance(e, ToolOutput)]
    assert outputs == ["noted x", "charged 5000"]
    assert final.output.startswith("Done (noted x; charged 5000)") and final.turns == 3
    assert calls(tmp_path) == ["note x", "charge 5000"], "each tool ran once"
    assert await parked_state(runs, accepted.run_id) is None


async def test_a_rejection_message_reaches_the_model_as_the_tool_output_and_it_answers(
    runs: Runs, runner: RunnerProcess, tmp_path: Path
) -> None:
    runner("a")
    await alive(runs, "a")
    accepted = await runs.start("charge:9000", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    _, request = await until_requested(runs, accepted.run_id)
    reply = await decide(runs, accepted.run_id, request.call_id, approved=False, by="auditor",
                         message="Too much; ask the customer for a smaller amount.")
    assert isinstance(reply, DecisionAccepted), reply
    events = await runs.events(accepted.run_id)
    assert isinstance(events[-1], RunCompleted), dumps(events)
    (output,) = [e for e in events if isinstance(e, ToolOutput)]
    assert (output.output, output.is_error) == ("Too much; ask the customer for a smaller amount.", True)
    assert events[-1].output.startswith("Done (Too much; ask the customer for a smaller amount.)")
    assert calls(tmp_path) == [], "a rejected call never runs"
    again = await decide(runs, accepted.run_id, request.call_id, approved=True)
    assert isinstance(again, Error) and again.code in (ErrorCode.CONFLICT, ErrorCode.NOT_FOUND), again


async def test_an_approval_with_edited_arguments_runs_the_tool_with_them(
    runs: Runs, runner: RunnerProcess, tmp_path: Path
) -> None:
    runner("a")
    await alive(runs, "a")
    accepted = await runs.start("charge:5000", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    _, request = await until_requested(runs, accepted.run_id)
    reply = await decide(runs, accepted.run_id, request.call_id, approved=True, arguments='{"amount": 1200}')
    assert isinstance(reply, DecisionAccepted), reply
    events = await runs.events(accepted.run_id)
    assert isinstance(events[-1], RunCompleted), dumps(events)
    (decided,) = [e for e in events if isinstance(e, ApprovalDecided)]
    assert decided.arguments == '{"amount": 1200}'
    assert [e.output for e in events if isinstance(e, ToolOutput)] == ["charged 1200"]
    assert calls(tmp_path) == ["charge 1200"]


async def test_a_second_decision_on_the_same_call_is_a_conflict_and_changes_nothing(
    runs: Runs, runner: RunnerProcess, tmp_path: Path
) -> None:
    runner("a")
    await alive(runs, "a")
    accepted = await runs.start("charge:5000", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    _, request = await until_requested(runs, accepted.run_id)
    first, second = await asyncio.gather(
        decide(runs, accepted.run_id, request.call_id, approved=True, by="one"),
        decide(runs, accepted.run_id, request.call_id, approved=False, by="two"))
    replies = [r for r in (first, second) if isinstance(r, DecisionAccepted)]
    errors = [r for r in (first, second) if isinstance(r, Error)]
    assert len(replies) == 1 and len(errors) == 1 and errors[0].code == ErrorCode.CONFLICT, (first, second)
    events = await runs.events(accepted.run_id)
    assert isinstance(events[-1], RunCompleted) and gap_free(events), dumps(events)
    assert len([e for e in events if isinstance(e, ApprovalDecided)]) == 1
    assert len([e for e in events if isinstance(e, ApprovalRequested)]) == 1


async def test_the_python_runner_streams_the_approval_request_and_approves_it_from_the_loop(
    runs: Runs, runner: RunnerProcess, nats_server: NatsServer, prefix: str, tmp_path: Path
) -> None:
    runner("a")
    await alive(runs, "a")
    seen: list[str] = []
    async with raaf.Runner("clerk", nats_url=nats_server.url, prefix=prefix) as python:
        async for chunk in python.run("charge:3000", stream=True):
            seen.append(chunk.type)
            if chunk.approval is not None:
                assert (chunk.approval.name, chunk.approval.call_id) == ("charge", "call_1_charge")
                seq = await python.approve(chunk.run_id, chunk.approval.call_id, {"amount": 3001}, decided_by="ops")
                assert seq == chunk.seq + 1
            if chunk.content:
                answer = chunk.content
        with pytest.raises(raaf.ConflictError):
            await python.reject(chunk.run_id, "call_1_charge", "too late")
    assert "run_approval_requested" in seen and "run_approval_decided" in seen and seen[-1] == "run_completed"
    assert answer and calls(tmp_path) == ["charge 3001"]


async def test_the_async_runner_rejects_and_an_unknown_call_is_not_found(
    runs: Runs, runner: RunnerProcess, nats_server: NatsServer, prefix: str, tmp_path: Path
) -> None:
    runner("a")
    await alive(runs, "a")
    accepted = await runs.start("charge:4000", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    _, request = await until_requested(runs, accepted.run_id)
    async with raaf.AsyncRunner(nats_url=nats_server.url, prefix=prefix) as pool:
        with pytest.raises(raaf.NotFoundError):
            await pool.approve(accepted.run_id, "call_9_nothing")
        assert await pool.reject(accepted.run_id, request.call_id, "No.") == request.seq + 1
    events = await runs.events(accepted.run_id)
    assert isinstance(events[-1], RunCompleted) and events[-1].output.startswith("Done (No.)"), dumps(events)
    assert calls(tmp_path) == []


async def test_a_deadline_applies_its_rules_outcome_through_the_schedulers_delayed_job(
    runs: Runs, runner: RunnerProcess, nats_server: NatsServer, redis_server: ValkeyServer, prefix: str,
    tmp_path: Path, start_app: Callable[[App], Awaitable[App]]
) -> None:
    await start_app(SchedulerApp(SchedulerSettings.from_env(
        service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05"))))
    runner("a")
    await alive(runs, "a")
    rejected, failed = (await runs.start("note:urgent-memo", agent="clerk"),
                        await runs.start("note:fatal-memo", agent="clerk"))
    assert isinstance(rejected, RunAccepted) and isinstance(failed, RunAccepted)
    _, request = await until_requested(runs, rejected.run_id)
    assert request.deadline is not None and request.outcome == "reject"
    ends = await asyncio.gather(runs.events(rejected.run_id, timeout=30), runs.events(failed.run_id, timeout=30))
    for events in ends:
        (decided,) = [e for e in events if isinstance(e, ApprovalDecided)]
        assert (decided.decided_by, decided.approved) == ("deadline", False), dumps(events)
        assert gap_free(events)
    first, second = ends
    assert next(e for e in first if isinstance(e, ApprovalDecided)).at >= request.deadline, "not before it"
    assert isinstance(first[-1], RunCompleted), dumps(first)
    (output,) = [e for e in first if isinstance(e, ToolOutput)]
    assert output.is_error and "No decision was made on this tool call in time" in output.output
    assert isinstance(second[-1], RunFailed) and second[-1].code == ErrorCode.TIMEOUT, dumps(second)
    assert calls(tmp_path) == [], "neither note was written"


async def test_cancelling_a_parked_run_ends_it_with_one_run_cancelled_written_by_one_of_the_runners(
    runs: Runs, runner: RunnerProcess, tmp_path: Path
) -> None:
    runner("a")
    runner("b")
    await alive(runs, "a")
    await alive(runs, "b")
    accepted = await runs.start("charge:7000", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    follower = asyncio.create_task(runs.events(accepted.run_id, timeout=30))
    seen, request = await until_requested(runs, accepted.run_id)
    await until_parked(runs, accepted.run_id)
    reply = await runs.client.cancel(accepted.run_id, "the customer hung up")
    assert isinstance(reply, CancelAccepted), reply
    events = await follower
    final = events[-1]
    assert isinstance(final, RunCancelled) and final.reason == "the customer hung up", dumps(events)
    assert gap_free(events) and events[:len(seen)] == seen and final.seq == request.seq + 1
    assert len([e for e in events if isinstance(e, RunCancelled)]) == 1
    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()

    async def closed() -> bool:  # the runner closes the run just after writing its end
        return await parked_state(runs, accepted.run_id) is None and await registry.owner(accepted.run_id) is None

    await eventually(closed, 10, interval=0.05, what="the park and the owner cleared")
    late = await decide(runs, accepted.run_id, request.call_id, approved=True)
    assert isinstance(late, Error) and late.code == ErrorCode.NOT_FOUND, late
    again = await runs.client.cancel(accepted.run_id)
    assert isinstance(again, Error) and again.code == ErrorCode.NOT_FOUND, again
    assert calls(tmp_path) == [], "the cancelled call never ran"
