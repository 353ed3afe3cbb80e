"""StoreBase: one job queue's Redis keys and the guarded, optionally replicated script calls under ``JobStore``."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proto.jobs import Priority
from shared.jobs.errors import JobStoreUnavailableError, job_not_replicated, job_store_unavailable
from shared.jobs.model import JobLimits, check_queue_name
from shared.redisconn import RedisClient, eval_after_wake, eval_and_wait, register_script


def as_str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StoreBase:
    """One named queue in Redis: its keys, and the one way every store operation calls Redis."""

    def __init__(self, client: RedisClient, *, queue: str = "jobs", prefix: str = "raaf",
                 limits: JobLimits | None = None, on_unavailable: Callable[[], object] | None = None) -> None:
        self.redis = client
        self.on_unavailable = on_unavailable  # called on every failed Redis call (a service counts them)
        self.queue = check_queue_name(queue)
        self.limits = limits or JobLimits()
        # One hash tag for the whole queue, so every script's keys live in one cluster slot.
        self.base = f"{prefix}:jobs:{{{queue}}}:"
        self._register_scripts()

    def _register_scripts(self) -> None:
        """Register the scripts a subclass runs (each override calls ``super()`` first)."""

    def _register(self, text: str) -> AsyncScript:
        return register_script(self.redis, text)

    # ---- keys ------------------------------------------------------------------------------------------------

    def job_key(self, job_id: str) -> str:
        return f"{self.base}job:{job_id}"

    def queue_key(self, job_type: str, priority: Priority) -> str:
        return f"{self.base}q:{job_type}:{priority.value}"

    def wake_key(self, job_type: str) -> str:
        return f"{self.base}wake:{job_type}"

    def worker_wake_key(self, worker: str) -> str:
        return f"{self.base}wake-worker:{worker}"

    @property
    def ttl_seconds(self) -> int:
        return max(0, round(self.limits.result_ttl))

    async def _guard(self, call: Callable[[], Any]) -> Any:
        """Await a Redis call; connection trouble becomes :class:`JobStoreUnavailableError`."""
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if self.on_unavailable is not None:
                self.on_unavailable()
            raise job_store_unavailable(str(exc) or type(exc).__name__) from exc

    async def _run(self, script: AsyncScript, args: Sequence[Any], keys: Sequence[str] = ()) -> Any:
        # A script that names no key still names the queue's tag, so a cluster client sends it to the right node.
        return await self._guard(lambda: script(keys=list(keys) or [self.base], args=[self.base, *args]))

    async def _run_replicated(self, script: AsyncScript, args: Sequence[Any], keys: Sequence[str] = (),
                              undo: Callable[[Any], Awaitable[object]] | None = None,
                              wake: tuple[Sequence[str], float] | None = None) -> Any:
        """``_run``, then, with ``wait_replicas`` set, WAIT on the same connection until that many replicas have
        the write; fewer within ``wait_timeout`` calls ``undo(reply)`` and raises :class:`JobNotReplicatedError`.
        ``wake=(lists, seconds)``: the script runs once a token arrives on one of the lists, or after that long."""
        wanted = self.limits.wait_replicas
        if wanted <= 0 and wake is None:
            return await self._run(script, args, keys)
        names = list(keys) or [self.base]
        timeout_ms = max(1, round(self.limits.wait_timeout * 1000))
        if wake is not None:
            wake_keys, seconds = wake
            reply, confirmed = await self._guard(lambda: eval_after_wake(
                self.redis, script, names, [self.base, *args], wake_keys=wake_keys, timeout=seconds,
                replicas=wanted, timeout_ms=timeout_ms))
        else:
            reply, confirmed = await self._guard(
                lambda: eval_and_wait(self.redis, script, names, [self.base, *args], wanted, timeout_ms))
        if wanted > 0 and confirmed < wanted:
            if self.on_unavailable is not None:
                self.on_unavailable()
            if undo is not None:
                with contextlib.suppress(JobStoreUnavailableError):
                    await undo(reply)
            raise job_not_replicated(wanted, confirmed, self.limits.wait_timeout)
        return reply
