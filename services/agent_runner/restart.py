"""Continuing runs whose agent-runner died: claim the orphan, restore its last completed step, go on from there.

The run log is the checkpoint: every step boundary is an event the runner stores anyway, so the state after the
last completed step is a fold of the stored events (``shared.runs.checkpoint``), and nothing extra is written
per token or per step. What the events do not hold (the request, the run's clock and limits, token usage) is in
``<PREFIX>_RUN_STATE``. Ownership moves with the open-runs compare-and-set, so exactly one runner continues a
run; it writes ``run_step_restarted`` with the next seq, which also fences off a runner that was only cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from proto.errors import ErrorCode
from proto.runs import AgentSpec, RunFailed, RunRequest, RunState, RunStepRestarted, Usage
from services.agent_runner.agents import AgentCatalog
from services.agent_runner.engine import TERMINAL_PATIENCE, RunJob
from services.agent_runner.errors import is_superseded, restarts_exhausted, run_timed_out
from services.agent_runner.metrics import RunnerMetrics
from services.agent_runner.pool import RunPool
from services.agent_runner.provider import RetryPolicy
from services.agent_runner.writer import RunWriter
from shared.errors import ConflictError, StreamingError
from shared.runs.checkpoint import restore
from shared.runs.log import RunLog, is_terminal
from shared.runs.registry import PARKED, RunRegistry
from shared.runs.state import RunStateStore

log = logging.getLogger("raaf.agent-runner.restart")


def usage_saver(states: RunStateStore, state: RunState) -> Callable[[int, Usage], Awaitable[None]]:
    """The ``on_turn`` hook of a job: store the tokens used so far, so a restart keeps counting them."""
    async def save(turn: int, usage: Usage) -> None:
        try:
            await states.put(msgspec.structs.replace(state, usage=usage, usage_turns=turn))
        except Exception as exc:  # a restart would undercount this turn's tokens, nothing worse
            log.warning("cannot store the usage of run %s: %s", state.request.run_id, exc)
    return save


def run_state(job: RunJob, states: RunStateStore, max_restarts: int) -> RunState | None:
    """What another runner needs to continue ``job`` if this one dies (None: restarts are off); from now on the
    job stores its token usage there after each model turn."""
    if max_restarts == 0:
        return None
    request = msgspec.structs.replace(job.request, handover_from=None, resume_after=0)
    state = RunState(request=request, accepted_at=time.time() - (time.monotonic() - job.accepted_at),
                     timeout=job.timeout, max_turns=job.max_turns, max_restarts=max_restarts)
    job.on_turn = usage_saver(states, state)
    return state


class Restarter:
    """Takes over orphaned runs for this runner (called by its sweep)."""

    def __init__(self, *, registry: RunRegistry, runlog: RunLog, states: RunStateStore, catalog: AgentCatalog,
                 pool: RunPool, metrics: RunnerMetrics, instance: str,
                 policy: Callable[[RunRequest], RetryPolicy]) -> None:
        self.registry = registry
        self.runlog = runlog
        self.states = states
        self.catalog = catalog
        self.pool = pool
        self.metrics = metrics
        self.instance = instance
        self.policy = policy

    async def take(self, run_id: str, owner: str) -> RunJob | bool:
        """Continue ``owner``'s orphaned run here: the job to execute; True if the run was dealt with otherwise
        (another runner took it, it ended, it failed typed, or no slot is free: the next sweep tries again);
        False if it cannot be restored (the caller fails it as an orphan)."""
        state = await self.states.get(run_id)
        if state is None or state.max_restarts == 0:
            return False
        try:
            agents = self.catalog.resolve(state.request)
            place = self.pool.admit()
        except StreamingError as exc:
            log.warning("not continuing run %s of %s here: %s", run_id, owner, exc.message)
            return exc.code == ErrorCode.OVERLOADED  # overloaded: a later sweep (here or elsewhere) takes it
        try:
            job = await self._take(run_id, owner, state, agents, place)
        except BaseException:
            self._give_back(place)
            raise
        if not isinstance(job, RunJob):
            self._give_back(place)
        return job

    async def _take(self, run_id: str, owner: str, state: RunState, agents: Mapping[str, AgentSpec],
                    place: asyncio.Future[None] | None) -> RunJob | bool:
        if not await self.registry.transfer(run_id, owner, self.instance):
            log.info("run %s of %s was taken by another runner", run_id, owner)
            return True  # another runner was quicker, or the run closed
        events = [event async for event, _ in self.runlog.stored(run_id)]
        if not events or is_terminal(events[-1]):
            log.warning("run %s of %s has %s", run_id, owner, "ended" if events else "no stored events")
            await self.close(run_id)
            return True
        try:
            point = restore(state.request, agents, events)
        except KeyError:
            return False
        writer = RunWriter(self.runlog, run_id)
        writer.seq = point.last_seq
        writer.trace = await self.runlog.first_trace(run_id)  # the run goes on in its trace
        elapsed = time.time() - state.accepted_at
        try:
            if point.restarts >= state.max_restarts:
                error = restarts_exhausted(point.restarts)
                await writer.emit(RunFailed, code=error.code, message=error.message, patience=TERMINAL_PATIENCE)
                self.metrics.restarts.labels(outcome="exhausted").inc()
                await self.close(run_id)
                return True
            if elapsed >= state.timeout:
                error = run_timed_out(state.timeout)
                await writer.emit(RunFailed, code=error.code, message=error.message, patience=TERMINAL_PATIENCE)
                self.metrics.restarts.labels(outcome="timed_out").inc()
                await self.close(run_id)
                return True
            await writer.emit(RunStepRestarted, turn=point.turn, step=point.step, after_seq=point.after_seq,
                              restart=point.restarts + 1, instance=self.instance, previous=owner,
                              reason=f"the agent-runner running this run ({owner}) stopped (its lease expired)")
        except ConflictError as exc:
            if not is_superseded(exc):
                raise
            log.warning("run %s moved on while it was being restarted", run_id)
            return True
        self.metrics.restarts.labels(outcome="restarted").inc()
        log.warning("continuing run %s of %s from %s of turn %d", run_id, owner, point.step, point.turn,
                    extra={"restart": point.restarts + 1})
        return RunJob(request=state.request, agents=agents, writer=writer, timeout=state.timeout,
                      max_turns=state.max_turns, policy=self.policy(state.request),
                      accepted_at=time.monotonic() - elapsed, place=place, holds_slot=place is None,
                      accepted=True, resume=point, usage=state.usage, on_turn=usage_saver(self.states, state))

    def _give_back(self, place: asyncio.Future[None] | None) -> None:
        if place is None:
            self.pool.release()
        else:
            self.pool.withdraw(place)

    async def sweep(self, jobs: Mapping[str, RunJob], start: Callable[[RunJob], None]) -> int:
        """Continue every open run whose runner holds no lease (it was killed) here (``start``), or fail it if
        it cannot be restored; return how many were failed. A parked run waits for a decision: it is no
        runner's, so no runner's death can lose it."""
        alive: dict[str, bool] = {self.instance: True}
        failed = 0
        for run_id, owner in (await self.registry.open()).items():
            if owner == PARKED or (owner == self.instance and run_id in jobs):
                continue
            if owner not in alive:
                alive[owner] = await self.registry.alive(owner)
            if alive[owner] and owner != self.instance:
                continue
            log.info("run %s of %s is orphaned", run_id, owner)
            taken = await self.take(run_id, owner)
            if isinstance(taken, RunJob):
                start(taken)
                continue
            if taken:
                continue
            message = f"the agent-runner running this run ({owner}) stopped before it finished"
            if await self.runlog.fail(run_id, ErrorCode.UNAVAILABLE, message) is not None:
                failed += 1
                self.metrics.reaped.inc()
                log.warning("failed orphaned run %s", run_id, extra={"owner": owner})
            await self.forget(run_id)
        return failed

    async def forget(self, run_id: str) -> None:
        """An orphan was failed: forget its owner and its state, whoever owned it."""
        with contextlib.suppress(Exception):
            await self.registry.close(run_id)
        with contextlib.suppress(Exception):
            await self.states.delete(run_id)

    async def close(self, run_id: str) -> None:
        """This runner's run is over (or cannot go on): forget its owner and its state, unless another runner
        took it over meanwhile (this one was cut off, its lease lapsed, and the run goes on there)."""
        try:
            if not await self.registry.close_owned(run_id, self.instance):
                return
        except Exception as exc:
            log.warning("cannot close run %s: %s", run_id, exc)
            return
        with contextlib.suppress(Exception):
            await self.states.delete(run_id)
