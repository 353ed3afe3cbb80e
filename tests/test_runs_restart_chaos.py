"""Chaos: 50 concurrent runs while their runners are killed -9 three times; every run completes or fails typed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from proto.errors import ErrorCode
from proto.runs import RunAccepted, RunCompleted, RunEvent, RunFailed, RunStepRestarted, ToolOutput
from raaf.testing import OpenAIMock
from shared.devstack.servers import NatsServer
from shared.runs.registry import RunRegistry
from tests.support.processes import ServiceProcess
from tests.support.restart import alive, calls, restart_env, scripted_model
from tests.support.runs import Runs

RUNS = 50
KILLS = 3
POOL = {"ASYNC_POOL_SIZE": "60"}

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.25, fallback=scripted_model) as server:
        yield server


class Progress:
    """What the followers have seen so far, for the killer to wait on."""

    def __init__(self) -> None:
        self.tool_outputs = 0
        self.restarts = 0
        self.ended = 0
        self.changed = asyncio.Condition()

    async def saw(self, event: RunEvent) -> None:
        if isinstance(event, ToolOutput | RunStepRestarted | RunCompleted | RunFailed):
            async with self.changed:
                self.tool_outputs += isinstance(event, ToolOutput)
                self.restarts += isinstance(event, RunStepRestarted)
                self.ended += isinstance(event, RunCompleted | RunFailed)
                self.changed.notify_all()

    async def until(self, check: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(check)


async def test_fifty_runs_survive_their_runners_being_killed_three_times(
    runs: Runs, nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path,
    service_process: Callable[..., ServiceProcess]
) -> None:
    processes: dict[str, ServiceProcess] = {}

    def start(name: str) -> None:
        processes[name] = service_process("services.agent_runner",
                                          restart_env(nats_server.url, mock.url, prefix, tmp_path, name, **POOL))

    for name in ("r0", "r1", "r2"):
        start(name)
    await alive(runs, *processes)
    accepted = await asyncio.gather(*(runs.start(f"note:i{n} lookup:k{n}", agent="clerk") for n in range(RUNS)))
    assert all(isinstance(a, RunAccepted) for a in accepted), accepted
    run_ids = [a.run_id for a in accepted if isinstance(a, RunAccepted)]
    progress = Progress()

    async def follow(run_id: str) -> list[RunEvent]:
        seen = []
        async with contextlib.aclosing(runs.client.follow(run_id)) as events:
            async for event, _ in events:
                seen.append(event)
                await progress.saw(event)
        return seen

    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()
    killed: list[str] = []
    async with asyncio.timeout(150):
        followers = [asyncio.create_task(follow(run_id)) for run_id in run_ids]
        await progress.until(lambda: progress.tool_outputs >= RUNS // 5)
        for _ in range(KILLS):
            # The runner holding the most open runs dies; a replacement starts; the next kill waits for the
            # runs to move on (a restart) or every run to have ended, and for the replacement to be up.
            owners = collections.Counter(o for o in (await registry.open()).values() if o not in killed)
            if not owners:
                break
            victim = owners.most_common(1)[0][0]
            processes[victim].kill()
            killed.append(victim)
            replacement = f"r{len(processes)}"
            start(replacement)
            before = progress.restarts
            await progress.until(lambda: progress.restarts > before or progress.ended == RUNS)  # noqa: B023
            await alive(runs, replacement)  # two runners at least, before the next one dies
        results = await asyncio.gather(*followers)

    assert len(killed) == KILLS
    recorded = collections.Counter(calls(tmp_path))
    restarted = 0
    for n, events in enumerate(results):
        final = events[-1]
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), f"run {n}: a gap"
        assert isinstance(final, RunCompleted) or (
            isinstance(final, RunFailed) and final.code == ErrorCode.RESTARTS_EXHAUSTED), (n, final)
        assert recorded[f"note i{n}"] <= 1, f"run {n}: the note was written twice"
        if isinstance(final, RunCompleted):
            assert f"k{n} is 42): w0 w1" in final.output, final.output
            # The note is reported, or (its runner died while it ran) the model was told its outcome is unknown.
            assert f"(noted i{n};" in final.output or "the outcome of note is unknown" in final.output
            assert recorded[f"note i{n}"] == 1 or "the outcome of note is unknown" in final.output
        restarted += any(isinstance(e, RunStepRestarted) for e in events)
    assert restarted >= KILLS, "the kills hit running runs"
