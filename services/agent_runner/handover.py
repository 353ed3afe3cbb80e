"""Handing queued runs between agent-runners: a stopping runner offers them, another takes them over.

A run that was accepted and queued but never started has stored exactly its ``run_queued`` event. On stop, the
runner re-sends its request to the other runners with ``handover_from`` / ``resume_after``; the one that takes it
moves the run's owner in the registry (compare-and-set, so two cannot both win) and continues its events from
``resume_after + 1``. Followers see one run: ``run_queued`` from the old instance, ``run_started`` from the new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from proto.errors import Error, ErrorCode
from proto.runs import RunAccepted, RunState, run_reply_decoder, runs_encoder
from proto.subjects import Subjects
from services.agent_runner.engine import RunJob
from services.agent_runner.errors import RunError, handover_refused
from services.agent_runner.metrics import RunnerMetrics
from services.agent_runner.pool import RunPool
from shared.runs.log import RunLog, is_terminal
from shared.runs.registry import RunRegistry
from shared.runs.state import RunStateStore

log = logging.getLogger("raaf.agent-runner.handover")

OFFERS_AT_ONCE: Final = 32
ATTEMPTS: Final = 3  # a busy runner answers overloaded; the queue group may pick another one next time


class Handover:
    def __init__(self, nc: NATS, subjects: Subjects, registry: RunRegistry, runlog: RunLog, pool: RunPool,
                 metrics: RunnerMetrics, *, instance: str, timeout: float) -> None:
        self.nc = nc
        self.subjects = subjects
        self.registry = registry
        self.runlog = runlog
        self.pool = pool
        self.metrics = metrics
        self.instance = instance
        self.timeout = timeout

    async def accept(self, job: RunJob, state: RunState | None, states: RunStateStore,
                     reply: Callable[[msgspec.Struct], Awaitable[None]]) -> bool:
        """Become the owner of a run a draining runner offered (its ``state`` stored anew: its timeout starts
        again here); answer the offer either way."""
        try:
            await self.take_over(job)
        except RunError as exc:
            self.metrics.requests.labels(outcome=exc.code.value).inc()
            await reply(exc.to_wire(ref=job.run_id))
            return False
        if state is not None:
            with contextlib.suppress(Exception):
                await states.put(state)
        await reply(RunAccepted(run_id=job.run_id, instance=self.instance, queued=job.place is not None))
        job.accepted = True
        return True

    async def take_over(self, job: RunJob) -> None:
        """Own a run another runner offered; a ``conflict`` ``RunError`` if it moved on or is not the offerer's."""
        request = job.request
        assert request.handover_from is not None
        last = await self.runlog.last(job.run_id)
        if last is None or last.seq != request.resume_after or is_terminal(last):
            raise handover_refused(job.run_id, "its stored events moved on")
        if not await self.registry.transfer(job.run_id, request.handover_from, self.instance):
            raise handover_refused(job.run_id, f"{request.handover_from} does not own it")
        job.writer.seq = request.resume_after
        log.info("took over run %s from %s", job.run_id, request.handover_from)

    async def hand_over_queued(self, jobs: Iterable[RunJob]) -> None:
        """Offer every accepted run still waiting for a slot to the other runners; keep what none takes."""
        waiting = [job for job in jobs  # a restarted run waits here with a checkpoint an offer cannot carry
                   if job.accepted and job.place is not None and not job.place.done() and job.cancel_reason is None
                   and job.resume is None]
        if not waiting:
            return
        limit = asyncio.Semaphore(OFFERS_AT_ONCE)

        async def offer(job: RunJob) -> None:
            place = job.place
            assert place is not None
            async with limit:
                if not self.pool.detach(place):
                    return  # it got a slot meanwhile: it runs here
                if await self._offer(job):
                    job.handed_over = True
                    place.cancel()  # ends the local wait without an event: the new owner writes them
                    self.metrics.handovers.labels(outcome="handed_over").inc()
                else:
                    self.pool.reattach(place)
                    self.metrics.handovers.labels(outcome="kept").inc()

        await asyncio.gather(*(offer(job) for job in waiting))
        log.info("handed %d of %d queued runs to other runners", sum(j.handed_over for j in waiting), len(waiting))

    async def _offer(self, job: RunJob) -> bool:
        """True once another runner owns the run (our own request subscription is gone: we never get it)."""
        offer = msgspec.structs.replace(job.request, handover_from=self.instance, resume_after=job.writer.seq)
        payload = runs_encoder.encode(offer)
        for _ in range(ATTEMPTS):
            try:
                answer = await self.nc.request(self.subjects.run_requests, payload, timeout=self.timeout,
                                               headers=job.trace_headers)
            except nats.errors.NoRespondersError:
                return False  # no other runner
            except nats.errors.TimeoutError:
                # The answer may be lost after the other runner took the run: the registry tells.
                with contextlib.suppress(Exception):
                    return await self.registry.owner(job.run_id) not in (None, self.instance)
                return False
            try:
                reply = run_reply_decoder.decode(answer.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return False
            match reply:
                case RunAccepted():
                    return True
                case Error(code=ErrorCode.OVERLOADED | ErrorCode.UNAVAILABLE):
                    continue
                case _:
                    return False
        return False
