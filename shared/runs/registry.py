"""Who owns which open run, and which runners are alive: two JetStream KV buckets, no clocks compared.

``<PREFIX>_RUNNER_LEASES`` holds one key per agent-runner instance; the bucket's TTL expires it when the runner
stops renewing it (killed, partitioned). ``<PREFIX>_OPEN_RUNS`` maps each accepted, unfinished run to its
runner (or ``PARKED`` while it waits for approval decisions). A run whose owner has no lease is an orphan: any
runner (or a watching gateway) may fail it; a parked run is never one.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Final

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from proto.subjects import Subjects, decode_key, encode_key

log = logging.getLogger("raaf.runregistry")

_MISSING: Final = (KeyNotFoundError, NotFoundError)
# The owner of a parked run (it waits for approval decisions): no runner holds it, so no lease can lapse under it.
# Not an instance id: it is stored as a value, never as a key, and no instance id starts with ``~``.
PARKED: Final = "~parked"


class RunRegistry:
    """Leases of live runners and owners of open runs; ``bind()`` (readers) or ``provision()`` (runners) first."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self.js = js
        self.leases_bucket = subjects.stream_name("runner_leases")
        self.open_bucket = subjects.stream_name("open_runs")
        self._leases: KeyValue | None = None
        self._open: KeyValue | None = None

    async def provision(self, *, lease_ttl: float, open_ttl: float, replicas: int = 1) -> None:
        """Create both buckets if missing (idempotent; an existing bucket keeps its configuration)."""
        self._leases = await self._bucket(self.leases_bucket, lease_ttl, replicas, StorageType.MEMORY)
        self._open = await self._bucket(self.open_bucket, open_ttl, replicas, StorageType.FILE)

    async def bind(self) -> bool:
        """Use existing buckets; False if the runners have not created them yet."""
        try:
            self._leases = await self.js.key_value(self.leases_bucket)
            self._open = await self.js.key_value(self.open_bucket)
        except (BucketNotFoundError, NotFoundError):
            return False
        return True

    async def _bucket(self, name: str, ttl: float, replicas: int, storage: StorageType) -> KeyValue:
        try:
            return await self.js.key_value(name)
        except (BucketNotFoundError, NotFoundError):
            pass
        config = KeyValueConfig(bucket=name, history=1, ttl=ttl, replicas=replicas, storage=storage)
        try:
            return await self.js.create_key_value(config)
        except Exception:
            # Another runner created it first.
            return await self.js.key_value(name)

    @property
    def leases(self) -> KeyValue:
        if self._leases is None:
            raise RuntimeError("RunRegistry is not bound")
        return self._leases

    @property
    def open_runs(self) -> KeyValue:
        if self._open is None:
            raise RuntimeError("RunRegistry is not bound")
        return self._open

    # ---- runners ---------------------------------------------------------------------------------------

    async def renew(self, instance: str, lease: bytes) -> None:
        await self.leases.put(encode_key(instance), lease)

    async def release(self, instance: str) -> None:
        with contextlib.suppress(*_MISSING):
            await self.leases.delete(encode_key(instance))

    async def alive(self, instance: str) -> bool:
        try:
            entry = await self.leases.get(encode_key(instance))
        except _MISSING:
            return False
        return bool(entry.value)

    async def any_alive(self) -> bool:
        """Whether any runner holds a lease now."""
        watcher = await self.leases.watchall(ignore_deletes=True)
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    return False
                if entry is None:
                    return False  # the end of the initial values
                if entry.value:
                    return True
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    # ---- runs ------------------------------------------------------------------------------------------

    async def claim(self, run_id: str, instance: str) -> bool:
        """Open the run for ``instance``; False if it is open already (ids are unique cluster-wide)."""
        try:
            await self.open_runs.create(encode_key(run_id), instance.encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def transfer(self, run_id: str, from_instance: str, to_instance: str) -> bool:
        """Move an open run from one runner to another; False unless ``from_instance`` owns it right now."""
        try:
            entry = await self.open_runs.get(encode_key(run_id))
        except _MISSING:
            return False
        if entry.value != from_instance.encode() or entry.revision is None:
            return False
        try:
            await self.open_runs.update(encode_key(run_id), to_instance.encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            return False  # changed under us: closed, reaped, or handed to someone else
        return True

    async def close(self, run_id: str) -> None:
        with contextlib.suppress(*_MISSING):
            await self.open_runs.delete(encode_key(run_id))

    async def close_owned(self, run_id: str, instance: str) -> bool:
        """Close the run only while ``instance`` owns it (compare-and-set); False if another runner took it
        over meanwhile (this one was cut off and the run continues there) or it is closed already."""
        try:
            entry = await self.open_runs.get(encode_key(run_id))
        except _MISSING:
            return False
        if entry.value != instance.encode() or entry.revision is None:
            return False
        try:
            await self.open_runs.delete(encode_key(run_id), last=entry.revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def owner(self, run_id: str) -> str | None:
        try:
            entry = await self.open_runs.get(encode_key(run_id))
        except _MISSING:
            return None
        return entry.value.decode() if entry.value else None

    async def open(self) -> dict[str, str]:
        """Every open run and its owner, as stored now."""
        watcher = await self.open_runs.watchall(ignore_deletes=True)
        runs: dict[str, str] = {}
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    break
                if entry is None:
                    break  # the end of the initial values
                if entry.value:
                    runs[decode_key(entry.key)] = entry.value.decode()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return runs

    async def orphaned(self, run_id: str) -> bool:
        """True when no live runner owns the run: ask only about a run whose last event is not terminal.

        A runner claims a run before it answers the request, so an accepted, unfinished run without an owner
        lost it (the bucket was purged, or the runner died between claiming and its first event).
        """
        owner = await self.owner(run_id)
        if owner == PARKED:
            return False  # waiting for a decision, held by no runner: nobody can lose it
        return owner is None or not await self.alive(owner)
