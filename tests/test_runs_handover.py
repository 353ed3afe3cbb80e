"""A stopping agent-runner hands the runs it queued but never started to another runner, losing none."""

from __future__ import annotations

from proto.errors import Error, ErrorCode
from proto.runs import RunAccepted, RunCompleted, RunFailed, RunQueued, RunStarted
from raaf.testing import OpenAIMock, Script
from services.agent_runner import AgentRunnerApp
from tests.support.runs import Runs, StartRunner, types

POOL_OF_ONE = {"ASYNC_POOL_SIZE": "1", "ASYNC_QUEUE_SIZE": "5"}  # one run at a time, the rest queue


def handovers(app: AgentRunnerApp, outcome: str) -> float:
    return app.run_metrics.handovers.labels(outcome=outcome)._value.get()


async def queue_behind_a_slow_run(runs: Runs, mock: OpenAIMock, queued: int) -> tuple[str, list[str]]:
    mock.enqueue(Script(text="slow " * 12, token_delay=0.1))
    first = await runs.start("slow one")
    assert isinstance(first, RunAccepted) and not first.queued
    waiting = []
    for n in range(queued):
        accepted = await runs.start(f"queued {n}")
        assert isinstance(accepted, RunAccepted) and accepted.queued, accepted
        waiting.append(accepted.run_id)
    return first.run_id, waiting


async def test_a_stopping_runner_hands_its_queued_runs_to_another_runner(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    leaving = await start_runner(**POOL_OF_ONE)
    running, waiting = await queue_behind_a_slow_run(runs, mock, queued=3)
    staying = await start_runner(**POOL_OF_ONE)
    await leaving.stop()
    assert handovers(leaving, "handed_over") == 3 and handovers(leaving, "kept") == 0
    for run_id in waiting:
        events = await runs.events(run_id)
        assert types(events)[:2] == ["RunQueued", "RunStarted"] and isinstance(events[-1], RunCompleted), events
        queued, started = events[0], events[1]
        assert isinstance(queued, RunQueued) and queued.instance == leaving.instance
        assert isinstance(started, RunStarted) and started.instance == staying.instance
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert not any(isinstance(e, RunFailed) for e in events)
    finished_where_it_began = await runs.events(running)
    assert isinstance(finished_where_it_began[-1], RunCompleted)


async def test_with_no_other_runner_a_stopping_runner_keeps_its_queued_runs_and_finishes_them(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    alone = await start_runner(**POOL_OF_ONE)
    running, waiting = await queue_behind_a_slow_run(runs, mock, queued=2)
    await alone.stop()
    assert handovers(alone, "kept") == 2 and handovers(alone, "handed_over") == 0
    for run_id in [running, *waiting]:
        events = await runs.events(run_id)
        assert isinstance(events[-1], RunCompleted), events
        assert all(getattr(e, "instance", alone.instance) == alone.instance for e in events)


async def test_handover_is_off_when_disabled_and_queued_runs_stay_with_their_runner(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    leaving = await start_runner(**POOL_OF_ONE, RUN_HANDOVER="false")
    _, waiting = await queue_behind_a_slow_run(runs, mock, queued=1)
    await start_runner(**POOL_OF_ONE)
    await leaving.stop()
    events = await runs.events(waiting[0])
    started = events[1]
    assert isinstance(started, RunStarted) and started.instance == leaving.instance
    assert isinstance(events[-1], RunCompleted)


async def test_a_stale_or_forged_handover_is_refused_with_a_conflict(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    runner = await start_runner(**POOL_OF_ONE)
    done = await runs.run("finished already")
    run_id = done[0].run_id
    for offer in ({"run_id": run_id, "handover_from": "ghost", "resume_after": 1},
                  {"run_id": run_id, "handover_from": runner.instance, "resume_after": len(done)},
                  {"handover_from": "ghost", "resume_after": 1}):
        refused = await runs.start("steal it", **offer)
        assert isinstance(refused, Error) and refused.code == ErrorCode.CONFLICT, refused
    assert types(await runs.events(run_id)) == types(done), "nothing was written to the run"
    assert isinstance((await runs.run("still serving"))[-1], RunCompleted)
