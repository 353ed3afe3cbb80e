"""Start, follow, cancel and list runs over NATS: what the gateway and the Python API share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from proto.approvals import DecideApproval, DecisionAccepted, approvals_encoder, decision_reply_decoder
from proto.errors import Error, ErrorCode
from proto.runs import (
    AgentList,
    AgentsQuery,
    ApprovalDecided,
    ApprovalRequested,
    CancelAccepted,
    CancelRun,
    RunAccepted,
    RunEvent,
    RunFailed,
    RunRequest,
    RunStepRestarted,
    agent_list_decoder,
    cancel_reply_decoder,
    run_reply_decoder,
    runs_encoder,
)
from proto.subjects import Subjects
from shared.runs.log import RunLog, Unknown, is_terminal
from shared.runs.registry import RunRegistry
from shared.runs.state import RunStateStore
from shared.tracing import inject

log = logging.getLogger("raaf.runclient")

ORPHAN_MESSAGE: Final = "the agent-runner running this run stopped before it finished"
E = TypeVar("E")


class _Orphaned(Exception):
    """Ends a follow from inside its idle check: no runner is left to finish the run."""

    def __init__(self, event: RunFailed) -> None:
        super().__init__(event.message)
        self.event = event


class RunClient:
    """Requests go to the runners' queue group; events are read from the run log (live, then the store).

    A follower that sees a run go quiet checks that a live runner still owns it; if none does (and none will
    restart it), the follow ends with a ``run_failed`` / ``unavailable`` of its own: a killed runner never leaves
    a client waiting forever. That event is not stored: only an agent-runner writes the run log (with NATS
    permissions on, nobody else may), so the next runner to start ends or restarts the run there.
    """

    def __init__(self, nc: NATS, js: JetStreamContext, subjects: Subjects, *, request_timeout: float = 5.0,
                 idle_check: float = 2.0, orphan_grace: float = 6.0) -> None:
        self.nc = nc
        self.subjects = subjects
        self.log = RunLog(nc, js, subjects)
        self.registry = RunRegistry(js, subjects)
        self.states = RunStateStore(js, subjects)
        self.request_timeout = request_timeout
        self.idle_check = idle_check
        # How long no runner may hold a lease before a follower ends a run a runner could restart: leases lapse
        # together when every runner is starved for a moment, and the runners then continue the runs.
        self.orphan_grace = orphan_grace
        self._no_runner_since: float | None = None
        self._bound = False

    async def start(self, request: RunRequest) -> RunAccepted | Error:
        """Ask a runner to take the run: its acceptance, or the typed error it (or NATS) answered."""
        payload = runs_encoder.encode(request)
        try:
            reply = await self.nc.request(self.subjects.run_requests, payload, timeout=self.request_timeout,
                                          headers=inject())
        except nats.errors.NoRespondersError:
            return Error(code=ErrorCode.UNAVAILABLE, message="no agent-runner is running", ref=request.run_id)
        except nats.errors.TimeoutError:
            return Error(code=ErrorCode.UNAVAILABLE, message="no agent-runner answered in time", ref=request.run_id)
        except nats.errors.MaxPayloadError:
            return Error(code=ErrorCode.TOO_LARGE, message=f"run request of {len(payload)} bytes is over the "
                         f"NATS message limit of {self.nc.max_payload}", ref=request.run_id)
        try:
            return run_reply_decoder.decode(reply.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Error(code=ErrorCode.INTERNAL, message="unreadable reply from the agent-runner", ref=request.run_id)

    async def cancel(self, run_id: str, reason: str = "cancelled by client") -> CancelAccepted | Error:
        """Ask the run's runner to cancel it; ``not_found`` if no runner owns it (finished or unknown)."""
        payload = runs_encoder.encode(CancelRun(run_id=run_id, reason=reason))
        try:
            reply = await self.nc.request(self.subjects.run_cancel(run_id), payload, timeout=self.request_timeout,
                                          headers=inject())
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return Error(code=ErrorCode.NOT_FOUND, message=f"no runner is running {run_id} (it ended, or is unknown)",
                         ref=run_id)
        try:
            return cancel_reply_decoder.decode(reply.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Error(code=ErrorCode.INTERNAL, message="unreadable reply from the agent-runner", ref=run_id)

    async def decide(self, decision: DecideApproval) -> DecisionAccepted | Error:
        """Send a decision on a parked run's tool call to the runners (any one takes it); access is the
        caller's business (``shared.access.check_decide``)."""
        try:
            reply = await self.nc.request(self.subjects.run_decide, approvals_encoder.encode(decision),
                                          timeout=self.request_timeout + 5.0,  # a runner may wait for the park
                                          headers=inject())
        except nats.errors.NoRespondersError:
            return Error(code=ErrorCode.UNAVAILABLE, message="no agent-runner is running", ref=decision.run_id)
        except nats.errors.TimeoutError:
            return Error(code=ErrorCode.UNAVAILABLE, message="no agent-runner answered in time", ref=decision.run_id)
        try:
            return decision_reply_decoder.decode(reply.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Error(code=ErrorCode.INTERNAL, message="unreadable reply from the agent-runner",
                         ref=decision.run_id)

    async def approval_request(self, run_id: str, call_id: str) -> tuple[ApprovalRequested | None, bool]:
        """The run's ``run_approval_requested`` for ``call_id`` (None: there is none) and whether it was
        decided already, from the stored events."""
        found: ApprovalRequested | None = None
        decided = False
        async with contextlib.aclosing(self.log.stored(run_id)) as events:
            async for event, _ in events:
                if isinstance(event, ApprovalRequested) and event.call_id == call_id:
                    found = event
                elif isinstance(event, ApprovalDecided) and event.call_id == call_id:
                    decided = True
        return found, decided

    async def waiting_calls(self, run_id: str, patience: float = 2.0) -> list[str] | None:
        """The call ids a parked run waits on, once its park is recorded (its ``run_approval_requested`` events
        come first, the park right after); None if it is not parked within ``patience`` seconds."""
        give_up = time.monotonic() + patience
        while True:
            try:
                try:
                    state = await self.states.get(run_id)
                except RuntimeError:  # not bound yet (no runner had created the bucket)
                    state = await self.states.get(run_id) if await self.states.bind() else None
                if state is not None and state.parked is not None:
                    return list(state.parked.pending)
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("no park state of %s: %s", run_id, exc)
            if time.monotonic() > give_up:
                return None
            await asyncio.sleep(0.05)

    async def turn_waits(self, run_id: str, request: ApprovalRequested, waiting: list[ApprovalRequested]
                         ) -> list[ApprovalRequested] | None:
        """For a follower rendering the run: collect ``request`` into ``waiting`` unless it was decided already;
        once every call the parked run waits on is collected, those requests (the follower stops there);
        None while it reads on."""
        if (await self.approval_request(run_id, request.call_id))[1]:
            return None
        waiting.append(request)
        pending = await self.waiting_calls(run_id)
        if pending is None:  # not parked in time: what it asked so far
            return list(waiting)
        if {w.call_id for w in waiting} >= set(pending):
            return [w for w in waiting if w.call_id in pending]
        return None

    async def agents(self) -> AgentList | Error:
        try:
            reply = await self.nc.request(self.subjects.run_agents, runs_encoder.encode(AgentsQuery()),
                                          timeout=self.request_timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return Error(code=ErrorCode.UNAVAILABLE, message="no agent-runner is running")
        return agent_list_decoder.decode(reply.data)

    def follow(self, run_id: str, after_seq: int = 0, *, on_idle: Callable[[], Awaitable[None]] | None = None
               ) -> AsyncGenerator[tuple[RunEvent, bytes], None]:
        """Every event after ``after_seq`` exactly once, in order, ending with the terminal event (the stored one,
        or this follower's ``run_failed`` for a run no runner is left to finish; events of a type this version
        does not know left out).

        ``on_idle`` runs whenever the run has been quiet for ``idle_check`` seconds (keepalives).
        """
        return self._ending_orphans(self.log.follow(run_id, after_seq, idle=self.idle_check,
                                                    on_idle=self._quiet(on_idle)))

    def follow_as_stored(self, run_id: str, after_seq: int = 0, *,
                         on_idle: Callable[[], Awaitable[None]] | None = None
                         ) -> AsyncGenerator[tuple[RunEvent | Unknown, bytes], None]:
        """``follow``, events of a type this version does not know included (``Unknown``, with their stored
        bytes), for forwarders that pass events on unchanged: their clients get every seq."""
        return self._ending_orphans(self.log.follow_as_stored(run_id, after_seq, idle=self.idle_check,
                                                              on_idle=self._quiet(on_idle)))

    def _quiet(self, on_idle: Callable[[], Awaitable[None]] | None) -> Callable[[str], Awaitable[None]]:
        """What a follower does when the run has been quiet: the caller's ``on_idle``, then the orphan check."""
        async def quiet(run: str) -> None:
            if on_idle is not None:
                await on_idle()
            ended = await self.orphan_end(run)
            if ended is not None:
                raise _Orphaned(ended)

        return quiet

    @staticmethod
    async def _ending_orphans(events: AsyncGenerator[tuple[E, bytes], None]
                              ) -> AsyncGenerator[tuple[E | RunFailed, bytes], None]:
        try:
            async with contextlib.aclosing(events):
                async for item in events:
                    yield item
        except _Orphaned as orphaned:
            end = orphaned.event
            log.warning("run %s has no agent-runner left to finish it: its follower ends it (%s)", end.run_id,
                        end.code.value)
            yield end, runs_encoder.encode(end)

    async def exists(self, run_id: str) -> bool:
        return await self.log.last_payload(run_id) is not None

    async def orphan_end(self, run_id: str) -> RunFailed | None:
        """The ``run_failed`` a follower ends an orphaned run's stream with (the run's next seq), or None while
        a live runner owns the run or will restart it."""
        if not self._bound:
            if not await self.registry.bind():
                return None
            await self.states.bind()  # before ``_bound``: concurrent checks must not see the state unbound
            self._bound = True
        try:
            if not await self.registry.orphaned(run_id):
                return None
            if await self.registry.any_alive():
                self._no_runner_since = None
                return None  # a live runner's sweep continues the run or fails it, in the log
            if await self._waits_for_a_runner(run_id):
                return None
            code, message = await self._why_orphaned(run_id)
            last = await self.log.last(run_id)
        except (nats.errors.Error, TimeoutError) as exc:
            log.debug("orphan check of %s failed: %s", run_id, exc)
            return None
        if last is not None and is_terminal(last):
            return None  # it just ended: the follow reads the end from the store
        return RunFailed(run_id=run_id, seq=last.seq + 1 if last else 1, at=time.time(), code=code, message=message)

    async def _why_orphaned(self, run_id: str) -> tuple[ErrorCode, str]:
        """``unavailable``, or ``restarts_exhausted`` for a run that already used up its restarts."""
        with contextlib.suppress(RuntimeError):
            state = await self.states.get(run_id)
            if state is not None and state.max_restarts > 0:
                restarts = 0
                async with contextlib.aclosing(self.log.stored(run_id)) as events:
                    async for event, _ in events:
                        restarts += isinstance(event, RunStepRestarted)
                if restarts >= state.max_restarts:
                    return (ErrorCode.RESTARTS_EXHAUSTED,
                            f"{ORPHAN_MESSAGE}, after {restarts} restart(s) (RUN_MAX_RESTARTS)")
        return ErrorCode.UNAVAILABLE, ORPHAN_MESSAGE

    async def _waits_for_a_runner(self, run_id: str) -> bool:
        """With no runner alive: whether to leave the run to one that may start within
        ``GATEWAY_RUN_ORPHAN_GRACE`` (a run it could restart, with time left), rather than end the stream now."""
        try:
            state = await self.states.get(run_id)
        except RuntimeError:  # no state bucket: no runner stores run state
            return False
        if state is None or state.max_restarts == 0:
            return False
        if time.time() > state.accepted_at + state.timeout + 2 * self.idle_check:
            return False  # past its deadline: no runner could take it in time
        now = time.monotonic()
        if self._no_runner_since is None:
            self._no_runner_since = now
        return now - self._no_runner_since < self.orphan_grace
