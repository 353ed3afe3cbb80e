"""Start, follow, cancel and list runs over NATS: what the gateway and the Python API share."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from proto.errors import Error, ErrorCode
from proto.runs import (
    AgentList,
    AgentsQuery,
    CancelAccepted,
    CancelRun,
    RunAccepted,
    RunEvent,
    RunRequest,
    agent_list_decoder,
    cancel_reply_decoder,
    run_reply_decoder,
    runs_encoder,
)
from proto.subjects import Subjects
from shared.runs.log import RunLog
from shared.runs.registry import RunRegistry
from shared.tracing import inject

log = logging.getLogger("raaf.runclient")

ORPHAN_MESSAGE: Final = "the agent-runner running this run stopped before it finished"


class RunClient:
    """Requests go to the runners' queue group; events are read from the run log (live, then the store).

    A follower that sees a run go quiet checks that a live runner still owns it and otherwise ends it with
    ``run_failed`` / ``unavailable``: a killed runner never leaves a client waiting forever.
    """

    def __init__(self, nc: NATS, js: JetStreamContext, subjects: Subjects, *, request_timeout: float = 5.0,
                 idle_check: float = 2.0) -> None:
        self.nc = nc
        self.subjects = subjects
        self.log = RunLog(nc, js, subjects)
        self.registry = RunRegistry(js, subjects)
        self.request_timeout = request_timeout
        self.idle_check = idle_check
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
            reply = await self.nc.request(self.subjects.run_cancel(run_id), payload, timeout=self.request_timeout)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return Error(code=ErrorCode.NOT_FOUND, message=f"no runner is running {run_id} (it ended, or is unknown)",
                         ref=run_id)
        try:
            return cancel_reply_decoder.decode(reply.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Error(code=ErrorCode.INTERNAL, message="unreadable reply from the agent-runner", ref=run_id)

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
            self._bound = await self.registry.bind()
            if not self._bound:
                return
        try:
            if await self.registry.orphaned(run_id):
                if await self.log.fail(run_id, ErrorCode.UNAVAILABLE, ORPHAN_MESSAGE) is not None:
                    log.warning("failed orphaned run %s", run_id)
                await self.registry.close(run_id)
        except (nats.errors.Error, TimeoutError) as exc:
            log.debug("orphan check of %s failed: %s", run_id, exc)
