"""A run whose agent-runner is killed -9 continues on another runner from its last completed step."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from proto.errors import ErrorCode
from proto.runs import (
    RunAccepted,
    RunCompleted,
    RunEvent,
    RunFailed,
    RunnerLease,
    RunStarted,
    RunStepRestarted,
    TextDelta,
    ToolCallFinished,
    ToolOutput,
)
from proto.subjects import encode_key
from raaf.testing import OpenAIMock
from shared.devstack.servers import NatsServer
from shared.runs.chunks import ChunkStream
from shared.runs.continuation import transcript
from shared.runs.registry import RunRegistry
from tests.support.processes import ServiceProcess
from tests.support.restart import (
    alive,
    calls,
    dumps,
    last_turn_text,
    other,
    restart_env,
    scripted_model,
    two_runners,
    until_called,
)
from tests.support.runs import Runs

RunnerProcess = Callable[..., ServiceProcess]


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.05, fallback=scripted_model) as server:
        yield server


@pytest.fixture
def runner(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
           service_process: RunnerProcess) -> Callable[..., ServiceProcess]:
    """Start an agent-runner process named ``instance`` (extra keywords: its environment)."""
    def start(instance: str, **extra: str) -> ServiceProcess:
        return service_process("services.agent_runner",
                               restart_env(nats_server.url, mock.url, prefix, tmp_path, instance, **extra))
    return start


async def follow_and_kill(runs: Runs, run_id: str, kill: Callable[[list[RunEvent]], bool],
                          timeout: float = 40) -> list[RunEvent]:
    """Follow the run to its end; ``kill(seen)`` is asked after each event (it kills and says so once)."""
    seen: list[RunEvent] = []
    async with asyncio.timeout(timeout), contextlib.aclosing(runs.client.follow(run_id)) as events:
        async for event, _ in events:
            seen.append(event)
            kill(seen)
    return seen


def deltas_after_outputs(seen: list[RunEvent], outputs: int) -> int:
    """How many text deltas followed the ``outputs``-th tool output."""
    done = [i for i, e in enumerate(seen) if isinstance(e, ToolOutput)]
    if len(done) < outputs:
        return 0
    return sum(isinstance(e, TextDelta) for e in seen[done[outputs - 1] + 1:])


def restarts(events: list[RunEvent]) -> list[RunStepRestarted]:
    return [e for e in events if isinstance(e, RunStepRestarted)]


async def test_a_run_killed_mid_answer_completes_on_another_runner_as_if_it_had_never_been_interrupted(
    runs: Runs, runner: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner)
    baseline = await runs.run("note:a lookup:b", agent="clerk")
    assert isinstance(baseline[-1], RunCompleted) and baseline[-1].turns == 3, dumps(baseline)
    (tmp_path / "calls.log").unlink()

    accepted = await runs.start("note:a lookup:b", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    victim = runners[accepted.instance]
    killed: list[int] = []

    def kill(seen: list[RunEvent]) -> bool:
        if not killed and deltas_after_outputs(seen, 2) == 5:  # turn 3, five words into its answer
            victim.kill()
            killed.append(seen[-1].seq)
        return bool(killed)

    seen = await follow_and_kill(runs, accepted.run_id, kill)
    final = seen[-1]
    assert isinstance(final, RunCompleted), dumps(seen)
    assert final.output == baseline[-1].output and final.turns == 3
    assert calls(tmp_path) == ["note a", "lookup b"], "each tool ran exactly once"
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    (restart,) = restarts(seen)
    assert (restart.step, restart.turn, restart.restart) == ("model_turn", 3, 1)
    assert (restart.previous, restart.instance) == (accepted.instance, other(accepted.instance))
    assert restart.seq > killed[0]
    assert isinstance(seen[restart.after_seq - 1], ToolOutput), "the last completed step: the second tool's output"
    assert final.usage.total_tokens >= baseline[-1].usage.total_tokens, "the earlier turns' tokens still count"

    # A client that read up to the kill and resumes from there, and one that replays it all, see one answer.
    resumed = seen[:killed[0]] + await runs.events(accepted.run_id, after_seq=killed[0])
    assert resumed == seen
    assert last_turn_text(transcript(resumed)) == final.output
    assert types_of(transcript(resumed)) == types_of(baseline)
    chunks = ChunkStream()
    answer = [c.content for e in seen if (c := chunks.chunk(e)) is not None and c.content]
    assert "".join(answer).endswith(final.output), "the Python Runner's chunks say each word once"
    assert "".join(answer).count("w0 ") == 1


def types_of(events: list[RunEvent]) -> list[str]:
    return [type(e).__name__ for e in events if not isinstance(e, RunStarted | RunStepRestarted)]


async def test_a_runner_killed_in_a_tool_call_that_is_not_idempotent_leaves_the_model_an_outcome_unknown_error(
    runs: Runs, runner: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner)
    accepted = await runs.start("slowcharge:5", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    victim = runners[accepted.instance]
    await until_called(tmp_path, "charge 5")
    victim.kill()
    events = await runs.events(accepted.run_id, timeout=40)
    assert isinstance(events[-1], RunCompleted), dumps(events)
    (restart,) = restarts(events)
    assert (restart.step, restart.turn) == ("tool_calls", 1)
    (output,) = [e for e in events if isinstance(e, ToolOutput)]
    assert output.is_error and "outcome of charge is unknown" in output.output
    assert "outcome of charge is unknown" in events[-1].output, "the model saw the error and answered"
    assert calls(tmp_path) == ["charge 5"], "never charged twice"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(isinstance(e, ToolCallFinished) for e in events) == 1


async def test_a_runner_killed_in_an_idempotent_tool_call_has_the_call_run_again_on_the_next_runner(
    runs: Runs, runner: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner)
    accepted = await runs.start("slowlookup:k", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    victim = runners[accepted.instance]
    await until_called(tmp_path, "lookup k")
    victim.kill()
    events = await runs.events(accepted.run_id, timeout=40)
    assert isinstance(events[-1], RunCompleted), dumps(events)
    (output,) = [e for e in events if isinstance(e, ToolOutput)]
    assert (output.output, output.is_error) == ("k is 42", False)
    assert calls(tmp_path) == ["lookup k", "lookup k"]


async def test_a_run_whose_runners_keep_dying_fails_typed_after_run_max_restarts_and_never_hangs(
    runs: Runs, runner: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    runners = await two_runners(runs, runner, RUN_MAX_RESTARTS="1")
    accepted = await runs.start("note:a", agent="clerk")
    assert isinstance(accepted, RunAccepted)
    first, second = runners[accepted.instance], runners[other(accepted.instance)]
    kills: list[str] = []

    def kill(seen: list[RunEvent]) -> bool:
        if not kills and deltas_after_outputs(seen, 1) == 3:
            first.kill()
            kills.append("first")
        elif kills == ["first"] and restarts(seen) and isinstance(seen[-1], TextDelta):
            second.kill()  # the run's one restart is used up
            kills.append("second")
        return bool(kills)

    seen = await follow_and_kill(runs, accepted.run_id, kill)
    assert kills == ["first", "second"]
    final = seen[-1]
    assert isinstance(final, RunFailed) and final.code == ErrorCode.RESTARTS_EXHAUSTED, dumps(seen)
    assert len(restarts(seen)) == 1 and [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert calls(tmp_path) == ["note a"]


async def lease_listing(runs: Runs, instance: str, run_id: str, timeout: float = 20) -> RunnerLease:
    """Wait for a renewal of ``instance``'s lease that lists ``run_id`` (the first lease is written before the
    runner takes work, so a lease naming a run is a renewal)."""
    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()
    watcher = await registry.leases.watch(encode_key(instance))
    try:
        async with asyncio.timeout(timeout):
            async for entry in watcher:  # type: ignore[attr-defined]
                if entry is not None and entry.value:
                    lease = msgspec.json.decode(entry.value, type=RunnerLease)
                    if run_id in lease.runs:
                        return lease
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    raise AssertionError(f"the lease watcher of {instance} ended")


async def test_runners_whose_instance_ids_have_dots_renew_their_leases_and_take_over_each_others_runs(
    runs: Runs, runner: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    names = ("runner.pod-1.example", "runner.pod-2.example")
    runners = {name: runner(name) for name in names}
    await alive(runs, *names)
    accepted = await runs.start("slowlookup:k", agent="clerk")
    assert isinstance(accepted, RunAccepted) and accepted.instance in names
    lease = await lease_listing(runs, accepted.instance, accepted.run_id)
    assert lease.instance == accepted.instance
    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()
    assert (await registry.open())[accepted.run_id] == accepted.instance

    await until_called(tmp_path, "lookup k")
    runners[accepted.instance].kill()
    events = await runs.events(accepted.run_id, timeout=40)
    assert isinstance(events[-1], RunCompleted), dumps(events)
    (restart,) = restarts(events)
    successor = next(name for name in names if name != accepted.instance)
    assert (restart.previous, restart.instance) == (accepted.instance, successor)
    assert calls(tmp_path) == ["lookup k", "lookup k"]
    assert await registry.owner(accepted.run_id) in (None, successor), "the successor took the open run over"
