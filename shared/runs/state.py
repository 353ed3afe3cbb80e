"""Durable run state: the KV bucket ``<PREFIX>_RUN_STATE`` holds what a run's events do not (its request, clock,
limits and token usage), so another runner can continue a run whose runner died."""

from __future__ import annotations

import contextlib
import logging
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from proto.runs import RunState, run_state_decoder, runs_encoder
from proto.subjects import Subjects

log = logging.getLogger("raaf.runstate")

_MISSING: Final = (KeyNotFoundError, NotFoundError)


class RunStateStore:
    """One key per open run; written by its owner at acceptance and after each model turn, deleted at its end."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self.js = js
        self.bucket = subjects.stream_name("run_state")
        self._kv: KeyValue | None = None

    async def provision(self, *, ttl: float, replicas: int = 1) -> None:
        """Create the bucket if missing (idempotent; an existing bucket keeps its configuration)."""
        with contextlib.suppress(BucketNotFoundError, NotFoundError):
            self._kv = await self.js.key_value(self.bucket)
            return
        config = KeyValueConfig(bucket=self.bucket, history=1, ttl=ttl, replicas=replicas, storage=StorageType.FILE)
        try:
            self._kv = await self.js.create_key_value(config)
        except Exception:
            self._kv = await self.js.key_value(self.bucket)  # another runner created it first

    async def bind(self) -> bool:
        """Use the existing bucket; False if no runner created it yet."""
        try:
            self._kv = await self.js.key_value(self.bucket)
        except (BucketNotFoundError, NotFoundError):
            return False
        return True

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("RunStateStore is not bound")
        return self._kv

    async def create(self, state: RunState) -> bool:
        """Store a new run's state; False if the run id has one already (it is another run's)."""
        try:
            await self.kv.create(state.request.run_id, runs_encoder.encode(state))
        except KeyWrongLastSequenceError:
            return False
        return True

    async def put(self, state: RunState) -> None:
        await self.kv.put(state.request.run_id, runs_encoder.encode(state))

    async def get(self, run_id: str) -> RunState | None:
        """The run's state; None if it has none (finished, expired, or stored by a runner before this feature)."""
        try:
            entry = await self.kv.get(run_id)
        except _MISSING:
            return None
        if not entry.value:
            return None
        try:
            return run_state_decoder.decode(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("unreadable state of run %s: %s", run_id, exc)
            return None

    async def delete(self, run_id: str) -> None:
        with contextlib.suppress(*_MISSING):
            await self.kv.delete(run_id)
