"""MessageQueue: the seed's batch queue as a Redis stream with a consumer group (acked after the callback)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.jobs.errors import JobStoreUnavailableError, job_store_unavailable, queue_full
from shared.jobs.model import check_queue_name, encode_data
from shared.redisconn import RedisClient, connect_redis, register_script
from shared.service import settings as runtime
from shared.service.overrides import configured
from shared.stats.reporter import StatsReporter

log = logging.getLogger("raaf.jobs")
BatchCallback = Callable[[list[Any]], Awaitable[Any]] | Callable[[list[Any]], Any]
_decoder = msgspec.json.Decoder()

# Refuses the whole batch when it would take the stream past its cap, so a push is all or nothing.
_PUSH = r"""
if redis.call('XLEN', KEYS[1]) + #ARGV - 1 > tonumber(ARGV[1]) and tonumber(ARGV[1]) > 0 then return false end
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'm', ARGV[i]) end
return ids
"""
# Acknowledge and delete a batch (KEYS: stream; ARGV: group, ids). Scripts, not MULTI: a cluster client has none.
_ACK = r"""
for i = 2, #ARGV do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return #ARGV - 1
"""
# Move messages to the dead stream (KEYS: stream, dead stream; ARGV: group, then (id, message) pairs).
_BURY = r"""
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[i + 1], 'id', ARGV[i])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return (#ARGV - 1) / 2
"""


class MessageQueue:
    """Messages in a Redis stream, handed to a callback ``batch_size`` at a time.

    A batch is acknowledged (and deleted) only after the callback returns. If it raises, or its process dies, the
    batch stays pending and is delivered again once it has been idle for ``visibility_timeout`` seconds; after
    ``max_deliveries`` deliveries a message goes to the ``<name>:dead`` stream instead. Long callbacks keep their
    batch claimed, so a slow consumer is not mistaken for a dead one.

    Given a NATS connection ``nc``, a started queue (:meth:`start`, or :meth:`process_messages`) answers
    ``raaf.stats()`` as service ``message-queue`` (section ``message_queue``) until :meth:`close`, unless
    ``report_stats=False``; ``stats_prefix`` is the deployment's ``RAAF_PREFIX`` (default: ``prefix``).
    """

    def __init__(self, redis_url: str | None = None, *, name: str = "messages",
                 batch_size: int = 100, prefix: str | None = None, group: str = "processors",
                 consumer: str | None = None, max_length: int = 100_000, max_message_bytes: int = 1024 * 1024,
                 visibility_timeout: float = 30.0, max_deliveries: int = 5, block: float = 1.0,
                 redis_client: RedisClient | None = None, nc: NATS | None = None, report_stats: bool = True,
                 stats_prefix: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        # Left out: from raaf.configure(...) / the environment (background.redis_url, platform.prefix).
        redis_url = configured(runtime.REDIS_URL) if redis_url is None else redis_url
        prefix = configured(runtime.PREFIX) if prefix is None else prefix
        self.name = check_queue_name(name)
        self.batch_size = batch_size
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_length = max_length
        self.max_message_bytes = max_message_bytes
        self.visibility_timeout = visibility_timeout
        self.max_deliveries = max_deliveries
        self.block = block
        self.key = f"{prefix}:mq:{{{name}}}:stream"
        self.dead_key = f"{prefix}:mq:{{{name}}}:dead"
        self._redis = redis_client or connect_redis(redis_url)
        self._owns_redis = redis_client is None
        self._push = register_script(self._redis, _PUSH)
        self._ack_script = register_script(self._redis, _ACK)
        self._bury = register_script(self._redis, _BURY)
        self._group_ready = False
        self._stopping = False
        self._last_reclaim = 0.0
        self.processed = 0
        self.batches = 0  # batches acknowledged after their callback returned
        self.failed_batches = 0
        self._nc = nc
        self.reporter: StatsReporter | None = None
        if nc is not None and report_stats:
            self.reporter = StatsReporter(service="message-queue", instance=self.consumer,
                                          prefix=prefix if stats_prefix is None else stats_prefix,
                                          provider=self.stats_section)

    # ---- producing -----------------------------------------------------------------------------------------------

    async def push(self, message: Any) -> str:
        return (await self.push_many([message]))[0]

    async def push_many(self, messages: Sequence[Any]) -> list[str]:
        """Append messages (JSON); all or none, refused with ``QueueFullError`` past ``max_length``."""
        payloads = [encode_data(m, self.max_message_bytes) for m in messages]
        if not payloads:
            return []
        ids = await self._call(lambda: self._push(keys=[self.key], args=[self.max_length, *payloads]))
        if not ids:
            raise queue_full(self.name, self.max_length, "message queue")
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    # ---- consuming -----------------------------------------------------------------------------------------------

    async def start(self) -> MessageQueue:
        """Start answering ``raaf.stats()`` (when given ``nc``); idempotent, and done by :meth:`process_messages`."""
        if self.reporter is not None and self._nc is not None:
            await self.reporter.start(self._nc)
        return self

    async def process_messages(self, callback: BatchCallback, *, batch_size: int | None = None) -> None:
        """Hand batches to ``callback`` until :meth:`stop`; a failing callback is logged and its batch redelivered."""
        self._stopping = False
        await self.start()
        failures = 0
        while not self._stopping:
            try:
                await self.process_batch(callback, batch_size=batch_size)
                failures = 0
            except JobStoreUnavailableError as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("message queue %s: Redis unavailable (%s)", self.name, exc)
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))

    def stop(self) -> None:
        """Make :meth:`process_messages` return after the batch in hand."""
        self._stopping = True

    async def process_batch(self, callback: BatchCallback, *, batch_size: int | None = None) -> int:
        """Deliver at most one batch (waiting up to ``block`` s for one); returns how many messages it held."""
        count = batch_size or self.batch_size
        await self._ensure_group()
        entries = await self._reclaim(count)
        if not entries:
            try:
                reply = await self._call(lambda: self._redis.xreadgroup(
                    self.group, self.consumer, {self.key: ">"}, count=count, block=max(1, round(self.block * 1000))))
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._group_ready = False  # the stream was deleted (or Redis lost it): recreate next time
                return 0
            entries = reply[0][1] if reply else []
        if not entries:
            return 0
        ids = [entry_id for entry_id, _ in entries]
        messages = [_decoder.decode(fields[b"m"]) for _, fields in entries]
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep_claimed(ids, done))
        try:
            result = callback(messages)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.failed_batches += 1
            log.exception("message queue %s: batch of %d failed; it will be delivered again", self.name, len(ids))
            return len(ids)
        finally:
            done.set()
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._ack(ids)
        self.processed += len(ids)
        self.batches += 1
        return len(ids)

    async def _ack(self, ids: list[bytes]) -> None:
        await self._call(lambda: self._ack_script(keys=[self.key], args=[self.group, *ids]))

    async def _keep_claimed(self, ids: list[bytes], done: asyncio.Event) -> None:
        """Reset the batch's idle time while the callback runs (XCLAIM JUSTID does not count a delivery).

        Ends when cancelled or, should redis-py lose the cancellation (its zero-timeout readiness check on a
        pooled connection can turn a concurrent cancel into a timeout it swallows), at the next turn after ``done``."""
        while not done.is_set():
            await asyncio.sleep(self.visibility_timeout / 3)
            with contextlib.suppress(JobStoreUnavailableError):
                await self._call(lambda: self._redis.xclaim(self.key, self.group, self.consumer, 0,
                                                            list[Any](ids), justid=True))

    async def _reclaim(self, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Take over messages idle past the visibility timeout; bury those delivered too often."""
        if time.monotonic() - self._last_reclaim < self.visibility_timeout / 4:
            return []
        self._last_reclaim = time.monotonic()
        idle_ms = round(self.visibility_timeout * 1000)
        reply = await self._call(lambda: self._redis.xautoclaim(self.key, self.group, self.consumer, idle_ms,
                                                                "0-0", count=count))
        entries: list[tuple[bytes, dict[bytes, bytes]]] = [(i, f) for i, f in reply[1] if f]
        if not entries:
            return []
        pending = await self._call(lambda: self._redis.xpending_range(
            self.key, self.group, min=entries[0][0], max=entries[-1][0], count=len(entries) * 2,
            consumername=self.consumer))
        deliveries = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        keep: list[tuple[bytes, dict[bytes, bytes]]] = []
        bury: list[tuple[bytes, dict[bytes, bytes]]] = []
        for entry in entries:
            (bury if deliveries.get(entry[0], 0) > self.max_deliveries else keep).append(entry)
        if bury:
            args: list[Any] = [self.group]
            for entry_id, fields in bury:
                args += [entry_id, fields[b"m"]]
            await self._call(lambda: self._bury(keys=[self.key, self.dead_key], args=args))
            log.warning("message queue %s: %d messages dead after %d deliveries", self.name, len(bury),
                        self.max_deliveries)
        return keep

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._call(lambda: self._redis.xgroup_create(self.key, self.group, id="0", mkstream=True))
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # ---- looking ---------------------------------------------------------------------------------------------------

    async def dead_messages(self, limit: int = 100) -> list[Any]:
        entries = await self._call(lambda: self._redis.xrange(self.dead_key, count=limit))
        return [_decoder.decode(fields[b"m"]) for _, fields in entries]

    async def stats(self) -> dict[str, Any]:
        await self._ensure_group()

        async def read() -> dict[str, Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.key)
                pipe.xpending(self.key, self.group)
                pipe.xlen(self.dead_key)
                length, pending, dead = await pipe.execute()
            return {"name": self.name, "length": int(length), "pending": int(pending["pending"]),
                    "dead": int(dead), "batch_size": self.batch_size, "processed": self.processed,
                    "failed_batches": self.failed_batches}

        stats: dict[str, Any] = await self._call(read)
        return stats

    async def stats_section(self) -> dict[str, Any]:
        """This queue's ``message_queue`` section of ``raaf.stats()``: messages waiting (read from Redis) and done."""
        length = int(await self._call(lambda: self._redis.xlen(self.key)))
        return {"message_queue": {"queues": 1, "pending": length, "processed": self.processed,
                                  "batches": self.batches, "pending_by_queue": {self.key: length}}}

    async def close(self) -> None:
        self.stop()
        if self.reporter is not None:
            await self.reporter.stop()
        if self._owns_redis:
            await self._redis.aclose()

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if isinstance(exc, ResponseError):
                raise
            self._group_ready = False  # after a Redis restart without persistence the group may be gone
            raise job_store_unavailable(str(exc) or type(exc).__name__) from exc
