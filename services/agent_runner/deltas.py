"""A turn's text deltas stored from a task of their own; those that arrive meanwhile go out as one event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proto.runs import TextDelta
from services.agent_runner.errors import stream_processor_failed
from services.agent_runner.writer import RunWriter
from shared.runs.stream_processor import StreamProcessor


class DeltaCoalescer:
    """Stores text deltas in order without holding up the model stream's reader.

    While one ``run_text_delta`` is being stored (and for ``window`` seconds after the first delta of a batch,
    if set), the deltas that arrive are joined into the next event, up to ``max_chars`` characters (a single
    longer delta goes alone, as it would without coalescing). An idle run therefore stores each delta at once;
    a loaded one stores fewer, larger events. Seq order and gap-freedom are the writer's, unchanged.
    """

    def __init__(self, writer: RunWriter, agent: str, *, window: float, max_chars: int,
                 on_stored: Callable[[], None]) -> None:
        self.writer = writer
        self.agent = agent
        self.window = window
        self.max_chars = max_chars
        self.on_stored = on_stored
        self._buffer: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, text: str) -> None:
        """Queue ``text`` for storing; raises the failure of an earlier store, if one failed."""
        task = self._task
        if task is not None and task.done():
            self._task = None
            task.result()
        self._buffer.append(text)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._store_all())

    async def flush(self) -> None:
        """Return once every queued delta is stored (raising a store's failure): before any other event."""
        task, self._task = self._task, None
        if task is not None:
            await task

    async def aclose(self) -> None:
        """Stop (the run is being cancelled or has failed): cancel a store in flight, drop what is queued.
        A cancelled store is the writer's pending event, stored again before the next (terminal) one."""
        self._buffer.clear()
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
            await asyncio.wait([task])  # not ``await task``: its CancelledError must not look like ours
        if not task.cancelled():
            task.exception()  # retrieved: the run's own failure is what gets reported

    async def _store_all(self) -> None:
        if self.window > 0:
            await asyncio.sleep(self.window)
        while self._buffer:
            await self.writer.emit(TextDelta, agent=self.agent, delta=self._take())
            self.on_stored()

    def _take(self) -> str:
        """The queued deltas that fit in one event, joined (at least the first, whatever its size)."""
        buffer = self._buffer
        size = len(buffer[0])
        count = 1
        while count < len(buffer) and size + len(buffer[count]) <= self.max_chars:
            size += len(buffer[count])
            count += 1
        if count == len(buffer):
            self._buffer = []
        else:
            self._buffer = buffer[count:]
        return buffer[0] if count == 1 else "".join(buffer[:count])


async def processed(processor: StreamProcessor | None, writer: RunWriter, agent: str, text: str, shown: list[str]
                    ) -> list[str]:
    """A model text delta as the deltas to store: itself, or what the stream processor makes of it (``shown``
    collects the turn's text as stored)."""
    if processor is None:
        shown.append(text)
        return [text]
    chunk = {"type": "run_text_delta", "seq": writer.seq + 1, "run_id": writer.run_id, "agent": agent,
             "content": text, "tool_calls": None}
    try:
        out = await processor.apply(chunk, writer.run_id)
    except Exception as exc:
        raise stream_processor_failed(type(processor).__qualname__, exc) from exc
    deltas = [p["content"] for p in out if isinstance(p.get("content"), str) and p["content"]]
    shown.extend(deltas)
    return deltas
