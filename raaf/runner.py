"""``Runner``: run an agent on the platform's agent-runners over NATS, streamed (``stream=True``) or not."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Sequence
from typing import Any, Literal, overload

import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS

from proto.approvals import DecideApproval
from proto.errors import Error, ErrorCode
from proto.runs import CancelAccepted, ChatMessage, RunCancelled, RunCompleted, RunEvent, RunFailed, RunRequest
from proto.subjects import Subjects
from raaf.agent import Agent
from shared.clients.runs import RunClient
from shared.config import configuration
from shared.errors import BadRequestError, ConnectionError, error_for, error_from_wire
from shared.runs.chunks import ChunkStream, RunChunk, RunResult
from shared.runs.stream_processor import ProcessedChunk, StreamProcessor
from shared.service.settings import NATS_URL, PREFIX


class RunsConnection:
    """A lazily opened NATS connection and the run client on it (or a connection the caller owns)."""

    def __init__(self, *, nats_url: str | None = None, prefix: str | None = None, nc: NATS | None = None,
                 request_timeout: float = 5.0, idle_check: float = 2.0) -> None:
        platform = configuration().platform  # defaults < NATS_URL / RAAF_PREFIX < raaf.configure(platform=...)
        self.nats_url = nats_url or str(platform.nats_url) or NATS_URL.default
        self.subjects = Subjects(prefix or str(platform.prefix) or PREFIX.default)
        self.request_timeout = request_timeout
        self.idle_check = idle_check
        self._nc = nc
        self._owned = nc is None
        self._client: RunClient | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> RunClient:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                if self._nc is None:
                    self._nc = await connect(self.nats_url)
                self._client = RunClient(self._nc, self._nc.jetstream(), self.subjects,
                                         request_timeout=self.request_timeout, idle_check=self.idle_check)
        return self._client

    async def close(self) -> None:
        if self._owned and self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc, self._client = (None, None) if self._owned else (self._nc, None)


async def connect(url: str) -> NATS:
    """Connect once (``ConnectionError`` at once if NATS is not there), then reconnect forever if it goes away."""
    async def quiet(exc: Exception) -> None:
        return None

    try:
        nc = await nats.connect(servers=[u.strip() for u in url.split(",")], connect_timeout=2,
                                max_reconnect_attempts=1, reconnect_time_wait=0.1, error_cb=quiet)
    except (OSError, builtins.TimeoutError, nats.errors.Error) as exc:
        raise ConnectionError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from exc
    # nats-py reads these on every reconnect: the first connection failed fast, later ones keep trying.
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = 1.0
    return nc


def run_request(agent: Agent | str, input: str, *, history: Sequence[ChatMessage] = (), run_id: str | None = None,
                timeout: float | None = None, retry_count: int | None = None, retry_delay: float | None = None,
                max_turns: int | None = None, metadata: dict[str, str] | None = None) -> RunRequest:
    name, agents = (agent, []) if isinstance(agent, str) else (agent.name, agent.specs())
    return RunRequest(run_id=run_id or uuid.uuid4().hex, agent=name, input=input, history=list(history),
                      agents=agents, timeout=timeout, retry_count=retry_count, retry_delay=retry_delay,
                      max_turns=max_turns, metadata=metadata or {})


def raise_for_end(event: RunEvent) -> None:
    """Raise the typed error a failed or cancelled run ended with."""
    match event:
        case RunFailed(code=code, message=message, run_id=run_id):
            raise error_for(code, message, ref=run_id)
        case RunCancelled(reason=reason, run_id=run_id):
            raise error_for(ErrorCode.CANCELLED, reason, ref=run_id)


PYTHON_DECIDER = "python"  # ``decided_by`` of a decision taken through this API, unless the caller names one


async def decide(client: RunClient, run_id: str, call_id: str, approved: bool, *, message: str | None = None,
                 arguments: dict[str, Any] | None = None, decided_by: str = PYTHON_DECIDER) -> int:
    """Send a decision on a parked run's tool call straight to the runners (a trusted NATS client: no access
    check); the seq of ``run_approval_decided``, or the typed error."""
    reply = await client.decide(DecideApproval(
        run_id=run_id, call_id=call_id, approved=approved, decided_by=decided_by, message=message,
        arguments=None if arguments is None else msgspec.json.encode(arguments).decode()))
    if isinstance(reply, Error):
        raise error_from_wire(reply)
    return reply.seq


class Runner:
    """The seed's ``Runner.new(agent:)``: ``await runner.run(text)`` or ``async for chunk in runner.run(text,
    stream=True)``. Runs execute on the agent-runners; this process only sends the request and reads events.

    Leaving a streamed run early (``break``) cancels it, which closes the model's stream upstream.
    """

    def __init__(self, agent: Agent | str = "assistant", *, nats_url: str | None = None, prefix: str | None = None,
                 nc: NATS | None = None, timeout: float | None = None, retry_count: int | None = None,
                 retry_delay: float | None = None, max_turns: int | None = None, request_timeout: float = 5.0
                 ) -> None:
        self.agent = agent
        self.timeout = timeout
        self.retry_count = retry_count
        self.retry_delay = retry_delay
        self.max_turns = max_turns
        self.connection = RunsConnection(nats_url=nats_url, prefix=prefix, nc=nc, request_timeout=request_timeout)

    async def __aenter__(self) -> Runner:
        await self.connection.client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.connection.close()

    @overload
    def run(self, input: str, *, stream: Literal[True], history: Sequence[ChatMessage] = ...,
            run_id: str | None = ..., metadata: dict[str, str] | None = ..., processor: None = ...
            ) -> AsyncGenerator[RunChunk, None]: ...

    @overload
    def run(self, input: str, *, stream: Literal[True], history: Sequence[ChatMessage] = ...,
            run_id: str | None = ..., metadata: dict[str, str] | None = ..., processor: StreamProcessor
            ) -> AsyncIterator[ProcessedChunk]: ...

    @overload
    def run(self, input: str, *, stream: Literal[False] = ..., history: Sequence[ChatMessage] = ...,
            run_id: str | None = ..., metadata: dict[str, str] | None = ..., processor: None = ...
            ) -> Coroutine[Any, Any, RunResult]: ...

    def run(self, input: str, *, stream: bool = False, history: Sequence[ChatMessage] = (),
            run_id: str | None = None, metadata: dict[str, str] | None = None,
            processor: StreamProcessor | None = None
            ) -> AsyncGenerator[RunChunk, None] | AsyncIterator[ProcessedChunk] | Coroutine[Any, Any, RunResult]:
        """``stream=True``: the run's chunks as they come; with a ``processor`` (a ``StreamProcessor``) the
        processed chunks (dicts) instead. Otherwise a coroutine for the finished ``RunResult``."""
        request = self._request(input, history=history, run_id=run_id, metadata=metadata)
        if processor is not None:
            if not stream:
                raise BadRequestError("a stream processor needs stream=True")
            return processor.process(self._stream(request), request.run_id)
        return self._stream(request) if stream else self._complete(request)

    async def start(self, input: str, *, history: Sequence[ChatMessage] = (), run_id: str | None = None,
                    metadata: dict[str, str] | None = None) -> str:
        """Start a run and return its id without waiting (read it with ``events``)."""
        return await self._start(self._request(input, history=history, run_id=run_id, metadata=metadata))

    async def events(self, run_id: str, after_seq: int = 0) -> AsyncIterator[RunEvent]:
        """A run's events after ``after_seq``, ending with its terminal event (resume with the last seq seen)."""
        client = await self.connection.client()
        async with contextlib.aclosing(client.follow(run_id, after_seq)) as events:
            async for event, _ in events:
                yield event

    async def cancel(self, run_id: str, reason: str = "cancelled by client") -> bool:
        """Ask the run's runner to cancel it; False if no runner has it (it ended already, or is unknown)."""
        client = await self.connection.client()
        reply = await client.cancel(run_id, reason)
        return isinstance(reply, CancelAccepted)

    def _request(self, input: str, *, history: Sequence[ChatMessage], run_id: str | None,
                 metadata: dict[str, str] | None) -> RunRequest:
        return run_request(self.agent, input, history=history, run_id=run_id, timeout=self.timeout,
                           retry_count=self.retry_count, retry_delay=self.retry_delay, max_turns=self.max_turns,
                           metadata=metadata)

    async def _start(self, request: RunRequest) -> str:
        client = await self.connection.client()
        reply = await client.start(request)
        if isinstance(reply, Error):
            raise error_from_wire(reply)
        return request.run_id

    async def _stream(self, request: RunRequest) -> AsyncGenerator[RunChunk, None]:
        run_id = await self._start(request)
        client = await self.connection.client()
        ended = False
        chunks = ChunkStream()
        try:
            async with contextlib.aclosing(client.follow(run_id)) as events:
                async for event, _ in events:
                    if isinstance(event, RunFailed | RunCancelled):
                        ended = True
                        raise_for_end(event)
                    ended = isinstance(event, RunCompleted)
                    chunk = chunks.chunk(event)
                    if chunk is not None:
                        yield chunk
        finally:
            if not ended:
                with contextlib.suppress(Exception):
                    await client.cancel(run_id, "the client stopped reading the run")

    async def approve(self, run_id: str, call_id: str, arguments: dict[str, Any] | None = None, *,
                      decided_by: str = PYTHON_DECIDER) -> int:
        """Approve a tool call a run waits on (``chunk.approval``), with edited ``arguments`` if given; the
        seq of the logged decision. Typed errors: ``ConflictError`` (decided already), ``NotFoundError``."""
        return await decide(await self.connection.client(), run_id, call_id, True, arguments=arguments,
                            decided_by=decided_by)

    async def reject(self, run_id: str, call_id: str, message: str | None = None, *,
                     decided_by: str = PYTHON_DECIDER) -> int:
        """Reject a tool call a run waits on; the model reads ``message`` as the tool's output."""
        return await decide(await self.connection.client(), run_id, call_id, False, message=message,
                            decided_by=decided_by)

    async def _complete(self, request: RunRequest) -> RunResult:
        async with contextlib.aclosing(self._stream(request)) as chunks:
            events = [chunk.event async for chunk in chunks]
        return RunResult.of(request.input, events)
