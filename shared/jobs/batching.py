"""Natural batching: concurrent callers' items go to Redis together in one call, each caller gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """While one call is in flight, new items wait and leave together in the next one.

    A lone item goes at once (no timer, so no added latency); under load batches grow by themselves up to
    ``max_batch``. ``flush`` maps a batch to one result per item; if it raises, every caller in it gets the error.
    """

    def __init__(self, flush: Callable[[Sequence[In]], Awaitable[Sequence[Out]]], *, max_batch: int = 500,
                 max_in_flight: int = 1) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._kick()
        return await future

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self._in_flight > 0

    async def drain(self) -> None:
        """Wait until every submitted item has been flushed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _kick(self) -> None:
        while self._pending and self._in_flight < self.max_in_flight:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._in_flight += 1
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._kick()
