"""``StreamingSession``: a conversation with one agent whose messages stream, each continuing the last."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Protocol

from proto.runs import ChatMessage, RunCompleted, RunRequest
from raaf.agent import Agent
from raaf.runner import RunsConnection
from shared.errors import ProtocolError
from shared.runs.chunks import RunChunk, RunResult

ChunkCallback = Callable[[RunChunk], Any]


class SessionRunner(Protocol):
    """What a session needs of its runner (``AsyncRunner`` is one): the connection, requests, streams."""

    connection: RunsConnection

    def history_request(self, agent: Agent | str, message: str, history: Sequence[ChatMessage]) -> RunRequest: ...

    def stream(self, request: RunRequest, *, send_again: int = 0, delay: float = 0.0
               ) -> AsyncGenerator[RunChunk, None]: ...


class StreamingSession:
    """The seed's ``async_runner.create_streaming_session(agent)``: ``start()``, then ``send_message(text,
    callback)`` per turn of the conversation; the history of earlier turns goes with each new message."""

    def __init__(self, runner: SessionRunner, agent: Agent | str) -> None:
        self.runner = runner
        self.agent = agent
        self.history: list[ChatMessage] = []
        self.active = False

    async def start(self) -> StreamingSession:
        await self.runner.connection.client()
        self.active = True
        return self

    async def stop(self) -> None:
        self.active = False

    async def send_message(self, text: str, callback: ChunkCallback | None = None) -> RunResult:
        """Stream the agent's answer to ``text`` (each chunk to ``callback``) and return the finished run."""
        events = []
        async with contextlib.aclosing(self.stream(text)) as chunks:
            async for chunk in chunks:
                events.append(chunk.event)
                if callback is not None:
                    outcome = callback(chunk)
                    if inspect.isawaitable(outcome):
                        await outcome
        return RunResult.of(text, events)

    async def stream(self, text: str) -> AsyncGenerator[RunChunk, None]:
        """The chunks of the answer to ``text``; the exchange joins the history once the run completes."""
        if not self.active:
            raise ProtocolError("start() the session before sending messages")
        request = self.runner.history_request(self.agent, text, self.history)
        async with contextlib.aclosing(self.runner.stream(request)) as chunks:
            async for chunk in chunks:
                if isinstance(chunk.event, RunCompleted):
                    self.history += [ChatMessage(role="user", content=text),
                                     ChatMessage(role="assistant", content=chunk.event.output)]
                yield chunk
