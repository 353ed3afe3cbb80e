"""``AsyncRunner``: many runs at once from one process, bounded, with task ids, callbacks, retries and sessions."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Final

from nats.aio.client import Client as NATS

from proto.errors import Error, ErrorCode
from proto.runs import TERMINAL_EVENTS, ChatMessage, RunRequest
from raaf.agent import Agent
from raaf.runner import PYTHON_DECIDER, RunsConnection, decide, raise_for_end, run_request
from raaf.session import StreamingSession
from shared.config import configuration
from shared.errors import (
    NotFoundError,
    OperationCancelledError,
    OverloadedError,
    StreamingError,
    TimeoutError,
    error_from_wire,
)
from shared.runs.chunks import RunChunk, RunResult

# Errors after which the run never started, so sending it again cannot repeat anything.
_RETRY_CODES: Final = frozenset({ErrorCode.OVERLOADED, ErrorCode.UNAVAILABLE})

ResultCallback = Callable[[RunResult], Any]
AgentResultCallback = Callable[[Agent | str, RunResult], Any]


class AsyncRunner:
    """The seed's ``AsyncRunner.new(pool_size:, queue_size:, timeout:)``, over the platform's agent-runners
    (arguments left out come from ``raaf.configuration()``: ``async.pool_size``, ``async.queue_size``,
    ``streaming.timeout``).

    At most ``pool_size`` runs are in flight from this object and ``queue_size`` more wait; beyond that
    ``process_async`` raises ``OverloadedError`` at once. ``timeout`` bounds each run (seconds).
    Callbacks (sync or async) get the result of a run that completed; ``wait_for_tasks`` has every outcome.
    """

    def __init__(self, pool_size: int | None = None, queue_size: int | None = None, timeout: float | None = None, *,
                 nats_url: str | None = None, prefix: str | None = None, nc: NATS | None = None) -> None:
        config = configuration()  # unset: config.async.pool_size / queue_size and config.streaming.timeout
        pool_size = int(config.async_.pool_size) if pool_size is None else pool_size
        queue_size = int(config.async_.queue_size) if queue_size is None else queue_size
        timeout = float(config.streaming.timeout) if timeout is None else timeout
        if pool_size < 1 or queue_size < 0 or timeout <= 0:
            raise ValueError("pool_size >= 1, queue_size >= 0 and timeout > 0 are required")
        self.pool_size = pool_size
        self.queue_size = queue_size
        self.timeout = timeout
        self.connection = RunsConnection(nats_url=nats_url, prefix=prefix, nc=nc)
        self._slots = asyncio.Semaphore(pool_size)
        self._ids = itertools.count(1)
        self._tasks: dict[str, asyncio.Task[RunResult]] = {}
        self._pending = 0  # submitted and not finished: running + waiting
        self.completed = 0
        self.failed = 0

    # ---- the seed's API ----------------------------------------------------------------------------------

    def process_async(self, agent: Agent | str, message: str, callback: ResultCallback | None = None) -> str:
        """Start one run in the background; returns its task id (raises ``OverloadedError`` when full)."""
        return self._submit(agent, message, callback, retry_count=None, retry_delay=None)

    def process_concurrent(self, agents: Sequence[Agent | str], message: str,
                           callback: AgentResultCallback | None = None) -> list[str]:
        """The same message to several agents at once; ``callback(agent, result)`` for each that completes."""
        if self._pending + len(agents) > self.pool_size + self.queue_size:
            raise OverloadedError(f"{len(agents)} more runs would exceed pool_size + queue_size")
        ids = []
        for agent in agents:
            bound = None if callback is None else _bind(callback, agent)
            ids.append(self._submit(agent, message, bound, retry_count=None, retry_delay=None))
        return ids

    def process_with_retry(self, agent: Agent | str, message: str, retry_count: int = 3, retry_delay: float = 2.0,
                           callback: ResultCallback | None = None) -> str:
        """A run whose provider errors before the first token are retried ``retry_count`` times (backoff from
        ``retry_delay`` seconds, by the runner), and that is sent again while no runner can take it."""
        return self._submit(agent, message, callback, retry_count=retry_count, retry_delay=retry_delay)

    async def wait_for_tasks(self, task_ids: Sequence[str], timeout: float | None = None
                             ) -> dict[str, RunResult | StreamingError]:
        """Each task's result, or the typed error it ended with (``TimeoutError`` for those still running)."""
        tasks = {task_id: self._tasks[task_id] for task_id in task_ids if task_id in self._tasks}
        if tasks:
            await asyncio.wait(tasks.values(), timeout=timeout)
        results: dict[str, RunResult | StreamingError] = {}
        for task_id in task_ids:
            task = tasks.get(task_id)
            if task is None:
                results[task_id] = NotFoundError(f"no task {task_id}")
            elif not task.done():
                results[task_id] = TimeoutError(f"task {task_id} still running after {timeout}s")
            elif task.cancelled():
                results[task_id] = OperationCancelledError(f"task {task_id} was cancelled")
            else:
                error = task.exception()
                if error is None:
                    results[task_id] = task.result()
                elif isinstance(error, StreamingError):
                    results[task_id] = error
                else:
                    results[task_id] = StreamingError(f"{type(error).__name__}: {error}")
        return results

    def create_streaming_session(self, agent: Agent | str) -> StreamingSession:
        """A conversation with one agent: each message continues the history of the ones before."""
        return StreamingSession(self, agent)

    def stats(self) -> dict[str, Any]:
        running = sum(1 for t in self._tasks.values() if not t.done())
        return {"pool_size": self.pool_size, "queue_size": self.queue_size, "pending": self._pending,
                "running": min(running, self.pool_size), "completed": self.completed, "failed": self.failed}

    async def approve(self, run_id: str, call_id: str, arguments: dict[str, Any] | None = None, *,
                      decided_by: str = PYTHON_DECIDER) -> int:
        """Approve a tool call a run waits on (as ``Runner.approve``)."""
        return await decide(await self.connection.client(), run_id, call_id, True, arguments=arguments,
                            decided_by=decided_by)

    async def reject(self, run_id: str, call_id: str, message: str | None = None, *,
                     decided_by: str = PYTHON_DECIDER) -> int:
        """Reject a tool call a run waits on (as ``Runner.reject``)."""
        return await decide(await self.connection.client(), run_id, call_id, False, message=message,
                            decided_by=decided_by)

    async def close(self) -> None:
        """Cancel what is still running here (the runs themselves are cancelled too) and disconnect."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.connection.close()

    async def __aenter__(self) -> AsyncRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- runs --------------------------------------------------------------------------------------------

    async def stream(self, request: RunRequest, *, send_again: int = 0, delay: float = 0.0
                     ) -> AsyncGenerator[RunChunk, None]:
        """Chunks of one run within a pool slot; used by sessions and tasks alike."""
        async with self._slots:
            client = await self.connection.client()
            for attempt in itertools.count():
                reply = await client.start(request)
                if not isinstance(reply, Error):
                    break
                if reply.code not in _RETRY_CODES or attempt >= send_again:
                    raise error_from_wire(reply)
                await asyncio.sleep(delay * 2**attempt * (0.5 + random.random() / 2))
            ended = False
            try:
                async with asyncio.timeout(self.timeout + 5.0), contextlib.aclosing(  # the runner ends it
                        client.follow(request.run_id)) as events:                   # at ``timeout``
                    async for event, _ in events:
                        ended = isinstance(event, TERMINAL_EVENTS)
                        raise_for_end(event)
                        yield RunChunk.of(event)
            finally:
                if not ended:
                    await asyncio.shield(self._cancel_quietly(request.run_id))

    async def _cancel_quietly(self, run_id: str) -> None:
        try:
            client = await self.connection.client()
            await client.cancel(run_id, "the client stopped waiting for the run")
        except Exception:
            return

    def _submit(self, agent: Agent | str, message: str, callback: ResultCallback | None, *,
                retry_count: int | None, retry_delay: float | None) -> str:
        if self._pending >= self.pool_size + self.queue_size:
            raise OverloadedError(f"{self.pool_size} runs in flight and {self.queue_size} waiting; try later")
        request = run_request(agent, message, timeout=self.timeout, retry_count=retry_count, retry_delay=retry_delay)
        task_id = f"task-{next(self._ids)}"
        self._pending += 1
        send_again = retry_count or 0
        task = asyncio.get_running_loop().create_task(
            self._task(request, callback, send_again, retry_delay or 0.0), name=f"raaf:{task_id}")
        self._tasks[task_id] = task
        return task_id

    async def _task(self, request: RunRequest, callback: ResultCallback | None, send_again: int,
                    delay: float) -> RunResult:
        try:
            async with contextlib.aclosing(self.stream(request, send_again=send_again, delay=delay)) as chunks:
                events = [chunk.event async for chunk in chunks]
            result = RunResult.of(request.input, events)
            self.completed += 1
        except BaseException:
            self.failed += 1
            raise
        finally:
            self._pending -= 1
        if callback is not None:
            outcome = callback(result)
            if inspect.isawaitable(outcome):
                await outcome
        return result

    def history_request(self, agent: Agent | str, message: str, history: Sequence[ChatMessage]) -> RunRequest:
        return run_request(agent, message, history=history, timeout=self.timeout)


def _bind(callback: AgentResultCallback, agent: Agent | str) -> ResultCallback:
    def call(result: RunResult) -> Any:
        return callback(agent, result)
    return call

