"""Start, follow, cancel and list runs over NATS: what the gateway and the Python API share."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final

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
    RunRequest,
    RunStepRestarted,
    agent_list_decoder,
    cancel_reply_decoder,
    run_reply_decoder,
    runs_encoder,
)
from proto.subjects import Subjects
from shared.runs.log import RunLog
from shared.runs.registry import RunRegistry
from shared.runs.state import RunStateStore
from shared.tracing import inject

log = logging.getLogger("raaf.runclient")

ORPHAN_MESSAGE: Final = "the agent-runner running this run stopped before it finished"


class RunClient:
    """Requests go to the runners' queue group; events are read from the run log (live, then the store).

    A follower that sees a run go quiet checks that a live runner still owns it and otherwise ends it with
    ``run_failed`` / ``unavailable``: a killed runner never leaves a client waiting forever.
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

    async def agents(self) -> AgentList | Error:
        try:
            reply = await self.nc.request(self.subjects.run_agents, runs_encoder.encode(AgentsQuery()),
                                          timeout=self.request_timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return Error(code=ErrorCode.UNAVAILABLE, message="no agent-runner is running")
        return agent_list_decoder.decode(reply.data)

    def follow(self, run_id: str, after_seq: int = 0, *, on_idle: Callable[[], Awaitable[None]] | None = None
               ) -> AsyncGenerator[tuple[RunEvent, bytes], None]:
        """Every event after ``after_seq`` exactly once, in order, ending with the terminal event.

        ``on_idle`` runs whenever the run has been quiet for ``idle_check`` seconds (keepalives).
        """
        async def quiet(run: str) -> None:
            if on_idle is not None:
                await on_idle()
            await self.fail_if_orphaned(run)

        return self.log.follow(run_id, after_seq, idle=self.idle_check, on_idle=quiet)

    async def exists(self, run_id: str) -> bool:
        return await self.log.last_payload(run_id) is not None

    async def fail_if_orphaned(self, run_id: str) -> None:
        if not self._bound:
            if not await self.registry.bind():
                return
            await self.states.bind()  # before ``_bound``: concurrent checks must not see the state unbound
            self._bound = True
        try:
            if await self.registry.orphaned(run_id) and not await self._restartable(run_id):
                code, message = await self._why_orphaned(run_id)
                if await self.log.fail(run_id, code, message) is not None:
                    log.warning("failed orphaned run %s", run_id)
                await self.registry.close(run_id)
                with contextlib.suppress(RuntimeError):
                    await self.states.delete(run_id)
        except (nats.errors.Error, TimeoutError) as exc:
            log.debug("orphan check of %s failed: %s", run_id, exc)

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

    async def _restartable(self, run_id: str) -> bool:
        """Whether a live runner will continue the orphaned run (its sweep does): it has a state, restarts,
        time left; otherwise the follower ends it, as when the last runner died."""
        try:
            state = await self.states.get(run_id)
        except RuntimeError:  # no state bucket: no runner stores run state
            return False
        if state is None or state.max_restarts == 0:
            return False
        if time.time() > state.accepted_at + state.timeout + 2 * self.idle_check:
            return False  # past its deadline and still orphaned: no runner could take it in time
        if await self.registry.any_alive():
            self._no_runner_since = None
            return True
        now = time.monotonic()
        if self._no_runner_since is None:
            self._no_runner_since = now
        return now - self._no_runner_since < self.orphan_grace
