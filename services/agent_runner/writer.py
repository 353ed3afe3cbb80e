"""A run's event writer: numbers events 1, 2, 3 ... and stores each before the next is sent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors

from proto.runs import RunEvent, runs_encoder
from services.agent_runner.errors import duplicate_run, run_superseded
from shared.errors import ErrorKind, InternalError
from shared.runs.log import RunLog

E = TypeVar("E", bound=RunEvent)

# JetStream briefly unreachable (reconnecting, leader election): retrying the same msg id is safe.
_TRANSIENT: Final = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
                     nats.errors.ConnectionReconnectingError, nats.errors.OutboundBufferLimitError)


class RunWriter:
    """Writes one run's events. Awaiting each store acknowledgement keeps the store in ``seq`` order, which is
    what lets readers fill any gap from the store; a ``seq`` another writer took raises ``RunSuperseded``."""

    def __init__(self, log: RunLog, run_id: str) -> None:
        self.log = log
        self.run_id = run_id
        self.seq = 0
        self._pending: tuple[int, bytes] | None = None
        # Set while the run's first event is being stored by someone else: later events wait for it, and
        # give up (``RunSuperseded``) if the run could not be claimed.
        self.gate: asyncio.Future[bool] | None = None
        # The run's trace context (``traceparent``/``tracestate``), stored with every event; None while off.
        self.trace: dict[str, str] | None = None

    async def emit(self, kind: type[E], *, patience: float | None = None, first: bool = False, **fields: Any) -> E:
        """Store the next event; retry a transient failure until ``patience`` seconds (None: until cancelled).

        ``first``: the run's first event, stored only if the run id is unused (a ``conflict`` ``RunError`` otherwise).
        """
        if self.gate is not None and not first and not await asyncio.shield(self.gate):
            raise run_superseded(self.run_id, self.seq + 1)
        if self._pending is not None:
            # The previous store was interrupted (cancelled): it may or may not be stored, so store it again
            # (a no-op if it is) before anything follows it.
            await self._store(*self._pending, patience, self._pending[0] == 1)
            self.seq, self._pending = self._pending[0], None
        seq = self.seq + 1
        event = kind(run_id=self.run_id, seq=seq, at=time.time(), **fields)
        self._pending = (seq, runs_encoder.encode(event))
        await self._store(*self._pending, patience, first)
        self.seq, self._pending = seq, None
        return event

    async def _store(self, seq: int, payload: bytes, patience: float | None, first: bool = False) -> None:
        delay = 0.05
        give_up = None if patience is None else time.monotonic() + patience
        while True:
            try:
                fresh = await self.log.publish(self.run_id, seq, payload, first=first, trace=self.trace)
                break
            except InternalError as exc:
                if exc.kind != ErrorKind.RUN_ID_TAKEN:
                    raise
                if await self._stored_is(payload):  # our own earlier attempt, stored before its ack was lost
                    return
                raise duplicate_run(self.run_id) from None
            except _TRANSIENT:
                if give_up is not None and time.monotonic() + delay > give_up:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        if not fresh and not await self._stored_is(payload):
            # A duplicate we did not write ourselves (a retry of ours would match): a reaper ended the run.
            raise run_superseded(self.run_id, seq)

    async def _stored_is(self, payload: bytes) -> bool:
        with contextlib.suppress(Exception):
            return await self.log.last_payload(self.run_id) == payload
        return False
