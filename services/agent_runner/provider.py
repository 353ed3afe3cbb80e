"""One model turn over the official ``openai`` client: streamed, usage requested, retried before its first token."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import aiohttp
import httpx2
import msgspec
import openai
from openai.types.chat import ChatCompletionMessageParam

from proto.openai_compat import StreamFrame, stream_frame_decoder
from proto.runs import AgentSpec, Usage
from services.agent_runner.errors import provider_failed

# Statuses worth another attempt: rate limits, timeouts, conflicts and server errors.
_RETRY_STATUSES: Final = frozenset({408, 409, 429})
KEYLESS: Final = "not-needed"  # local OpenAI-compatible servers (vLLM, Ollama, the demo) ignore the key


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``count`` more attempts after the first, waiting ``delay * 2**n`` (jittered, capped at ``max_delay``)."""

    count: int
    delay: float
    max_delay: float

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(self.max_delay, self.delay * 2.0**attempt)
        wait = base / 2 + random.random() * base / 2
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_delay)


@dataclass(frozen=True, slots=True)
class TextPiece:
    text: str


@dataclass(frozen=True, slots=True)
class CallStart:
    call_id: str
    name: str


@dataclass(frozen=True, slots=True)
class CallArguments:
    call_id: str
    delta: str


@dataclass(slots=True)
class PendingCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)

    @property
    def arguments_json(self) -> str:
        return "".join(self.arguments)


@dataclass(frozen=True, slots=True)
class TurnEnd:
    text: str
    calls: list[PendingCall]
    finish_reason: str
    usage: Usage | None


Piece = TextPiece | CallStart | CallArguments | TurnEnd


class _Truncated(Exception):
    """The stream ended without a ``finish_reason`` (cut off, or no ``[DONE]``)."""


class _StreamFailed(Exception):
    """The provider sent an error object in the stream, or something unreadable."""


class _ConnectionLost(Exception):
    """The HTTP stream broke off (reset, protocol error) while it was being read."""


class _TurnState:
    """Folds chunks into text and tool calls; handles servers that reuse index 0 for every call."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[PendingCall] = []
        self.by_index: dict[int, PendingCall] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def feed(self, frame: StreamFrame) -> list[TextPiece | CallStart | CallArguments]:
        if frame.error is not None:
            raise _StreamFailed(frame.error.message or "an error occurred during streaming")
        pieces: list[TextPiece | CallStart | CallArguments] = []
        if frame.usage is not None:
            self.usage = Usage(prompt_tokens=frame.usage.prompt_tokens,
                               completion_tokens=frame.usage.completion_tokens,
                               total_tokens=frame.usage.total_tokens)
        for choice in frame.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                self.text.append(delta.content)
                pieces.append(TextPiece(delta.content))
            for part in delta.tool_calls or ():
                function = part.function
                current = self.by_index.get(part.index)
                if current is None or (part.id and part.id != current.id):
                    current = PendingCall(id=part.id or f"call_{len(self.calls) + 1}",
                                          name=(function.name if function and function.name else ""))
                    self.calls.append(current)
                    self.by_index[part.index] = current
                    pieces.append(CallStart(current.id, current.name))
                elif function is not None and function.name and not current.name:
                    current.name = function.name
                if function is not None and function.arguments:
                    current.arguments.append(function.arguments)
                    pieces.append(CallArguments(current.id, function.arguments))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return pieces

    def end(self) -> TurnEnd:
        assert self.finish_reason is not None
        return TurnEnd(text="".join(self.text), calls=self.calls, finish_reason=self.finish_reason,
                       usage=self.usage)


async def sse_data(body: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The payloads of an SSE body's ``data:`` lines, in order (comments and other fields skipped)."""
    buffer = b""
    async for block in body:
        buffer += block
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if buffer.startswith(b"data:"):
        yield buffer[5:].strip()


def _retryable(exc: Exception) -> tuple[bool, float | None, int | None]:
    """(retry?, the server's retry-after in seconds, HTTP status)."""
    if isinstance(exc, _Truncated | _StreamFailed | _ConnectionLost | openai.APIConnectionError):
        return True, None, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after: float | None = None
        header = exc.response.headers.get("retry-after")
        if header:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        return status in _RETRY_STATUSES or status >= 500, retry_after, status
    return isinstance(exc, openai.APIError), None, None  # an error event in the stream


def _describe(exc: Exception) -> str:
    if isinstance(exc, _Truncated):
        return "the model's stream ended before it finished"
    if isinstance(exc, _StreamFailed):
        return f"the model endpoint failed: {exc}"
    if isinstance(exc, _ConnectionLost):
        return f"the model's stream broke off: {exc}"
    if isinstance(exc, openai.APIStatusError):
        return f"the model endpoint answered {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APIConnectionError):
        return f"the model endpoint is unreachable: {exc.message}"
    return f"the model endpoint failed: {exc}"


async def stream_turn(client: openai.AsyncOpenAI, *, model: str, messages: Sequence[ChatCompletionMessageParam],
                      tools: Sequence[dict[str, Any]], agent: AgentSpec, policy: RetryPolicy,
                      on_retry: Callable[[], None] | None = None, options: Mapping[str, Any] | None = None,
                      raw_post: bool = True
                      ) -> AsyncGenerator[Piece, None]:
    """Stream one completion as pieces ending with ``TurnEnd``; closing the generator closes the HTTP stream.

    Failures before the first text or tool-call delta are retried per ``policy``; later ones raise
    ``provider_failed(after_first_token=True)`` since what the client saw cannot be taken back.
    """
    # Messages and tools are plain JSON already: sent as the body's own fields (``extra_body``) they skip the
    # SDK's per-request parameter transform, ~1 ms of CPU per turn (a second at a burst of 1,000 runs).
    body: dict[str, Any] = {"messages": list(messages)}
    if tools:
        body["tools"] = list(tools)
    if options:
        body.update(options)  # tool_choice, parallel_tool_calls
    extra: dict[str, Any] = {}
    if agent.temperature is not None:
        extra["temperature"] = agent.temperature
    if agent.max_tokens is not None:
        extra["max_tokens"] = agent.max_tokens
    attempt = 0
    while True:
        started = False
        try:
            # The official client makes the request (auth, errors by status); the chunks are read with msgspec:
            # the SDK's per-chunk models cost ~0.2 ms each, the largest share of a runner's CPU at scale.
            async with _open_stream(client, model, body, extra, raw_post=raw_post) as response:
                state = _TurnState()
                try:
                    async for data in sse_data(response.aiter_bytes()):
                        if data == b"[DONE]":
                            break
                        try:
                            frame = stream_frame_decoder.decode(data)
                        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                            raise _StreamFailed(f"unreadable chunk ({exc})") from None
                        for piece in state.feed(frame):
                            started = True
                            yield piece
                except (httpx2.HTTPError, aiohttp.ClientError, OSError) as exc:
                    raise _ConnectionLost(str(exc) or type(exc).__name__) from exc
                if state.finish_reason is None:
                    raise _Truncated()
            yield state.end()
            return
        except (openai.APIError, _Truncated, _StreamFailed, _ConnectionLost) as exc:
            retry, retry_after, status = _retryable(exc)
            if started:
                raise provider_failed(f"{_describe(exc)} (after the first token)", status=status,
                                     attempts=attempt + 1, after_first_token=True) from exc
            if not retry or attempt >= policy.count:
                raise provider_failed(f"{_describe(exc)} (after {attempt + 1} attempt(s))", status=status,
                                     attempts=attempt + 1) from exc
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(policy.backoff(attempt, retry_after))
            attempt += 1


@contextlib.asynccontextmanager
async def _open_stream(client: openai.AsyncOpenAI, model: str, body: dict[str, Any], extra: dict[str, Any], *,
                       raw_post: bool) -> AsyncIterator[httpx2.Response]:
    """The completion's HTTP response, streaming and unread; closed on exit.

    ``raw_post`` (RUN_PROVIDER_RAW_POST): ``client.post`` with the whole body as JSON and ``httpx.Response`` as
    the result type, the SDK's documented way to call an endpoint as-is: auth, base URL, status errors as
    ``openai.APIStatusError`` all stay, but the parameter transform and response wrapper of
    ``chat.completions.create`` (a third of a run start's CPU in a profile of 1,000 starts) are skipped.
    """
    if raw_post:
        payload = {"model": model, **body, **extra, "stream": True, "stream_options": {"include_usage": True}}
        response = await client.post("/chat/completions", body=payload, cast_to=httpx2.Response, stream=True,
                                     stream_cls=openai.AsyncStream[Any])
        raw = cast(httpx2.Response, response)
        try:
            yield raw
        finally:
            await raw.aclose()
        return
    async with client.chat.completions.with_streaming_response.create(
            model=model, messages=[], stream=True, stream_options={"include_usage": True}, extra_body=body,
            **extra) as wrapped:
        yield wrapped.http_response


class ProviderPool:
    """One ``AsyncOpenAI`` client per endpoint and key, sharing connection limits; closed on stop."""

    def __init__(self, *, api_key: str | None, base_url: str | None, demo_url: str | None,
                 max_connections: int, timeout: float, raw_post: bool = True) -> None:
        self.raw_post = raw_post
        self.api_key = api_key
        self.base_url = base_url
        self.demo_url = demo_url
        self.max_connections = max_connections
        self.timeout = timeout
        self._clients: dict[tuple[str | None, str], openai.AsyncOpenAI] = {}

    def endpoint(self, agent: AgentSpec) -> tuple[str | None, str]:
        """(base URL or None for OpenAI's, API key) for ``agent``."""
        if agent.api_key_env is not None:
            key = os.environ.get(agent.api_key_env)
            if not key:
                raise provider_failed(f"agent {agent.name!r}: environment variable {agent.api_key_env} is not set")
        else:
            key = self.api_key or KEYLESS
        base_url = agent.base_url or self.base_url or self.demo_url
        return base_url, key

    def client(self, agent: AgentSpec) -> openai.AsyncOpenAI:
        endpoint = self.endpoint(agent)
        client = self._clients.get(endpoint)
        if client is None:
            limits = httpx2.Limits(max_connections=self.max_connections,
                                   max_keepalive_connections=self.max_connections)
            # The aiohttp transport: httpx's own pool costs O(connections) per request, which dominates at
            # hundreds of concurrent streams (bench/bench_runs.py).
            # No read timeout: aiohttp re-arms it on every chunk received (the runner's largest per-token cost
            # in a profile at 1,000 streams), and each run's own deadline (at most ``timeout``) bounds a
            # stalled stream anyway.
            http = openai.DefaultAioHttpClient(limits=limits, timeout=httpx2.Timeout(self.timeout, connect=5.0,
                                                                                     read=None))
            # Retries are ours (before the first token only), so the client must not retry on its own.
            client = openai.AsyncOpenAI(base_url=endpoint[0], api_key=endpoint[1], max_retries=0,
                                        http_client=http)
            self._clients[endpoint] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
