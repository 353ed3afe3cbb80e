"""Parked runs: letting a run that waits for approval go, and continuing it where a decision arrives.

A run parks by storing its ``run_approval_requested`` events, recording the park in ``<PREFIX>_RUN_STATE`` and
moving its owner in ``<PREFIX>_OPEN_RUNS`` to ``PARKED`` (no runner's lease covers it). A decision
(``<prefix>.runs.decide``, queue group ``agent-runner``) is taken by any runner: it moves the owner from ``PARKED``
to itself (compare-and-set: one decision at a time), logs ``run_approval_decided`` with the next seq, and, once
every pending call is decided, continues the run from its checkpoint like a restart does. A cancel of a parked
run (``<prefix>.runs.cancel.<id>``, to every runner) is claimed the same way and ends it with ``run_cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from proto.approvals import (
    APPROVAL_DEADLINE_JOB,
    DEADLINE_DECIDER,
    ApprovalDeadline,
    DecideApproval,
    DecisionAccepted,
    approvals_encoder,
    decide_approval_decoder,
)
from proto.errors import Error, ErrorCode
from proto.runs import AgentSpec, ApprovalDecided, RunCancelled, RunFailed, RunPark, RunRequest, RunState, is_run_id
from services.agent_runner.agents import AgentCatalog
from services.agent_runner.approval_gate import RunParked
from services.agent_runner.engine import TERMINAL_PATIENCE, RunJob
from services.agent_runner.errors import (
    BadRunRequest,
    RunError,
    already_decided,
    no_such_approval,
    not_waiting,
    run_not_open,
)
from services.agent_runner.pool import RunPool
from services.agent_runner.provider import RetryPolicy
from services.agent_runner.restart import Restarter, usage_saver
from services.agent_runner.writer import RunWriter
from shared.clients.jobs import JobsClient
from shared.runs.checkpoint import restore
from shared.runs.log import RunLog, is_terminal
from shared.runs.registry import PARKED, RunRegistry
from shared.runs.state import RunStateStore
from shared.tracing import TRACING, genai, inject

log = logging.getLogger("raaf.agent-runner.decisions")
PARK_WAIT = 2.0  # a decision racing the park (its request is stored, the park not yet recorded) waits this long


class Decisions:
    """This runner's side of approvals: ``park`` (a job's ``on_park``) and the decision requests."""

    def __init__(self, *, nc: NATS, registry: RunRegistry, runlog: RunLog, states: RunStateStore,
                 catalog: AgentCatalog, pool: RunPool, restarter: Restarter, instance: str, max_restarts: int,
                 policy: Callable[[RunRequest], RetryPolicy], start: Callable[[RunJob], None],
                 jobs: JobsClient | None) -> None:
        self.nc = nc
        self.registry = registry
        self.runlog = runlog
        self.states = states
        self.catalog = catalog
        self.pool = pool
        self.restarter = restarter
        self.instance = instance
        self.max_restarts = max_restarts
        self.policy = policy
        self.start = start  # register and execute a continued run
        self.jobs = jobs
        self.decided = 0

    # ---- parking ---------------------------------------------------------------------------------------------

    async def park(self, job: RunJob, parked: RunParked) -> None:
        """Make the wait durable and let the run go: its state records the park, no runner owns it."""
        with genai.approval_park(run_id=job.run_id, calls=[r.call_id for r in parked.pending],
                                 tools=[r.name for r in parked.pending]):
            await self._park(job, parked)

    async def _park(self, job: RunJob, parked: RunParked) -> None:
        run_id = job.run_id
        state = await self.states.get(run_id)
        if state is None:  # restarts are off: the run had no state until now
            state = RunState(request=msgspec.structs.replace(job.request, handover_from=None, resume_after=0),
                             accepted_at=time.time() - (time.monotonic() - job.accepted_at), timeout=job.timeout,
                             max_turns=job.max_turns, max_restarts=self.max_restarts)
        park = RunPark(since=time.time(), pending=[r.call_id for r in parked.pending])
        await self.states.put(msgspec.structs.replace(state, usage=parked.usage, usage_turns=parked.turns,
                                                      parked=park))
        if not await self.registry.transfer(run_id, self.instance, PARKED):
            raise RuntimeError("the run changed owner while it parked")
        for request in parked.pending:
            if request.deadline is not None:
                await self._schedule(run_id, request.call_id, request.deadline, request.outcome)
        log.info("run %s waits for %d approval(s)", run_id, len(parked.pending))

    async def _schedule(self, run_id: str, call_id: str, deadline: float, outcome: str) -> None:
        """The delayed job that applies ``outcome`` if nobody decided by ``deadline`` (the scheduler's)."""
        if self.jobs is None:
            return
        data = ApprovalDeadline(run_id=run_id, call_id=call_id, outcome="fail" if outcome == "fail" else "reject")
        try:
            await self.jobs.enqueue_job(APPROVAL_DEADLINE_JOB, msgspec.to_builtins(data), run_at=deadline,
                                        job_id=f"approval:{run_id}:{call_id}", retry_count=5)
        except Exception as exc:
            log.warning("no deadline for approval %s of run %s: %s", call_id, run_id, exc)

    # ---- decisions -------------------------------------------------------------------------------------------

    async def on_decide(self, msg: Msg) -> None:
        try:
            request = decide_approval_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._reply(msg, Error(code=ErrorCode.BAD_REQUEST, message=f"malformed decision: {exc}"))
            return
        try:
            if TRACING.on:
                run_trace = await self.runlog.first_trace(request.run_id) if is_run_id(request.run_id) else None
                with genai.approval_decision(msg.headers, run_id=request.run_id, call_id=request.call_id,
                                             run_trace=run_trace) as span:
                    accepted = await self.decide(request)
                    if span is not None:
                        span.set_attribute("raaf.approval.approved", request.approved)
            else:
                accepted = await self.decide(request)
        except RunError as exc:
            await self._reply(msg, exc.to_wire(ref=request.run_id))
            return
        except Exception as exc:
            log.exception("decision on run %s failed", request.run_id)
            await self._reply(msg, Error(code=ErrorCode.INTERNAL, message=f"the decision failed: {exc}",
                                         ref=request.run_id))
            return
        await self._reply(msg, accepted)

    async def _parked_state(self, request: DecideApproval) -> RunState:
        """The state of the parked run the decision is for, once its park is recorded; typed errors otherwise."""
        run_id = request.run_id
        if not is_run_id(run_id):
            raise BadRunRequest("run_id must be 1-64 letters, digits, '_' or '-'", ref=run_id)
        give_up = time.monotonic() + PARK_WAIT
        while True:
            owner = await self.registry.owner(run_id)
            state = await self.states.get(run_id)
            if owner is None or state is None:
                if await self._decided_already(run_id, request.call_id):
                    raise already_decided(run_id, request.call_id)
                raise run_not_open(run_id)
            if owner == PARKED and state.parked is not None:
                return state
            if time.monotonic() > give_up:
                if await self._decided_already(run_id, request.call_id):
                    raise already_decided(run_id, request.call_id)
                raise not_waiting(run_id)
            await asyncio.sleep(0.05)

    async def decide(self, request: DecideApproval) -> DecisionAccepted:
        run_id, call_id = request.run_id, request.call_id
        state = await self._parked_state(request)
        assert state.parked is not None
        if call_id not in state.parked.pending:
            if await self._decided_already(run_id, call_id):
                raise already_decided(run_id, call_id)
            raise no_such_approval(run_id, call_id)
        agents = self.catalog.resolve(state.request)
        place = self.pool.admit()  # overloaded: answered at once, nothing changed
        if not await self.registry.transfer(run_id, PARKED, self.instance):
            self._give_back(place)
            raise not_waiting(run_id)
        continued = False
        try:
            accepted, continued = await self._apply(request, state, agents, place)
            return accepted
        except BaseException:
            await self._unpark(run_id)
            raise
        finally:
            if not continued:
                self._give_back(place)

    async def _apply(self, request: DecideApproval, state: RunState, agents: Mapping[str, AgentSpec],
                     place: asyncio.Future[None] | None) -> tuple[DecisionAccepted, bool]:
        """With the run held: log the decision, then park it again, end it, or continue it (True)."""
        run_id, call_id = request.run_id, request.call_id
        assert state.parked is not None
        events = [event async for event, _ in self.runlog.stored(run_id)]
        point = restore(state.request, agents, events)
        if not events or is_terminal(events[-1]) or call_id not in point.requested or call_id in point.decisions:
            raise already_decided(run_id, call_id)
        asked = point.requested[call_id]
        writer = RunWriter(self.runlog, run_id)
        writer.seq = point.last_seq
        writer.trace = await self.runlog.first_trace(run_id)  # the decision, and the run after it, in its trace
        decision = await writer.emit(ApprovalDecided, call_id=call_id, name=asked.name, approved=request.approved,
                                     decided_by=request.decided_by, message=request.message,
                                     arguments=request.arguments if request.approved else None,
                                     instance=self.instance)
        self.decided += 1
        log.info("run %s: call %s %s by %s", run_id, call_id, "approved" if request.approved else "rejected",
                 request.decided_by)
        accepted = DecisionAccepted(run_id=run_id, call_id=call_id, seq=decision.seq, instance=self.instance)
        if request.decided_by == DEADLINE_DECIDER and request.outcome == "fail":
            await writer.emit(RunFailed, code=ErrorCode.TIMEOUT, patience=TERMINAL_PATIENCE,
                              message=f"no decision on {asked.name} ({call_id}) by its deadline")
            await self.restarter.close(run_id)
            return accepted, False
        remaining = [c for c in state.parked.pending if c != call_id]
        if remaining:  # other calls of the turn still wait
            await self.states.put(msgspec.structs.replace(
                state, parked=msgspec.structs.replace(state.parked, pending=remaining)))
            await self._unpark(run_id)
            return accepted, False
        now = time.time()
        resumed = msgspec.structs.replace(state, parked=None,
                                          accepted_at=state.accepted_at + (now - state.parked.since))
        await self.states.put(resumed)  # the timeout did not count while the run was parked
        point.decisions[call_id] = decision
        point.last_seq = point.after_seq = decision.seq
        job = RunJob(request=state.request, agents=agents, writer=writer, timeout=state.timeout,
                     max_turns=state.max_turns, policy=self.policy(state.request),
                     accepted_at=time.monotonic() - (now - resumed.accepted_at), place=place,
                     holds_slot=place is None, accepted=True, resume=point, usage=state.usage, decided=True,
                     on_turn=usage_saver(self.states, resumed), trace_headers=inject())
        self.start(job)
        return accepted, True

    # ---- cancels ---------------------------------------------------------------------------------------------

    async def cancel_parked(self, run_id: str, reason: str) -> bool:
        """End a parked run on a cancel: claim it like a decision (compare-and-set, so one runner of all that
        hear the cancel does it), log ``run_cancelled`` with the next seq and close it. False: it is not parked
        (another runner holds it, it ended, or another runner claimed it first) and the caller stays silent; an
        error once claimed gives the run back to ``~parked`` and is raised."""
        try:
            if not is_run_id(run_id) or await self.registry.owner(run_id) != PARKED:
                return False
            if not await self.registry.transfer(run_id, PARKED, self.instance):
                return False
        except Exception as exc:  # not claimed: another runner may take it; this one stays silent
            log.warning("cannot claim parked run %s to cancel it: %s", run_id, exc)
            return False
        try:
            last = None
            async for event, _ in self.runlog.stored(run_id):
                last = event
            if last is not None and not is_terminal(last):
                writer = RunWriter(self.runlog, run_id)
                writer.seq = last.seq
                await writer.emit(RunCancelled, reason=reason, patience=TERMINAL_PATIENCE)
        except BaseException:
            await self._unpark(run_id)
            raise
        await self.restarter.close(run_id)  # its deadline jobs find it closed and do nothing
        log.info("parked run %s cancelled: %s", run_id, reason)
        return True

    async def _unpark(self, run_id: str) -> None:
        """Let the run go again (it still waits, or the decision could not be applied)."""
        with contextlib.suppress(Exception):
            await self.registry.transfer(run_id, self.instance, PARKED)

    async def _decided_already(self, run_id: str, call_id: str) -> bool:
        with contextlib.suppress(Exception):
            async for event, _ in self.runlog.stored(run_id):
                if isinstance(event, ApprovalDecided) and event.call_id == call_id:
                    return True
        return False

    def _give_back(self, place: asyncio.Future[None] | None) -> None:
        if place is None:
            self.pool.release()
        else:
            self.pool.withdraw(place)

    async def _reply(self, msg: Msg, message: msgspec.Struct) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, approvals_encoder.encode(message))
