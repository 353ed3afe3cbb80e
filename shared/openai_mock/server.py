"""OpenAIMock: a real HTTP server speaking OpenAI's chat-completions wire format, scripted per request."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Self

import msgspec
from aiohttp import web

from shared.openai_mock.render import completion_for, response_id, token_count, token_frames, usage_for
from shared.openai_mock.script import Match, Rule, Script, default_script
from shared.openai_mock.wire import (
    DONE_FRAME,
    ChatRequest,
    ChunkFrames,
    Model,
    ModelList,
    any_decoder,
    error_body,
    json_encoder,
)

DEFAULT_MODELS: Final = ("gpt-4o-mini", "gpt-4o", "raaf-mock")
_SSE_HEADERS: Final = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_rule_decoder: Final = msgspec.json.Decoder(Rule)
_script_decoder: Final = msgspec.json.Decoder(Script)


class MockStats(msgspec.Struct, kw_only=True):
    """What the mock has served since it was created."""

    requests: int = 0  # chat-completion requests received (including rejected ones)
    streams_started: int = 0
    streams_completed: int = 0  # ended with [DONE]
    client_disconnects: int = 0  # the client went away before its response was complete
    failures_injected: int = 0  # scripted HTTP errors, mid-stream errors and cuts


def _json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json_encoder.encode(value), content_type="application/json")


def _error_response(status: int, message: str | None = None, retry_after: float = 1.0) -> web.Response:
    response = _json_response(error_body(status, message), status)
    if status == 429:
        response.headers["retry-after"] = f"{retry_after:g}"
    return response


class OpenAIMock:
    """An OpenAI-compatible chat-completions server whose answers are scripted (queue, then rules, then echo).

    `fallback` answers what no queued script or rule does: the echo by default, `demo_script` for the demo model.

    Pass `mock.url` as `base_url` to `openai.AsyncOpenAI`. Only one event loop may use an instance.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_delay: float = 0.0,
        models: Sequence[str] = DEFAULT_MODELS,
        record_requests: bool = True,
        fallback: Callable[[ChatRequest], Script] = default_script,
    ) -> None:
        self._host = host
        self._port = port
        self._token_delay = token_delay
        self._models = tuple(models)
        self._record_requests = record_requests
        self._fallback = fallback
        self._rules: list[Rule] = []
        self._queue: collections.deque[Script] = collections.deque()
        self._requests: list[Any] = []
        self._stats = MockStats()
        # Replaced after each disconnect so waiters wake and re-check the count.
        self._disconnected = asyncio.Event()
        self._response_ids = itertools.count(1)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._stopping = False

    # --- lifecycle ---

    @property
    def url(self) -> str:
        """Base URL ending in /v1."""
        if self._runner is None:
            raise RuntimeError("OpenAIMock is not running; call start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}/v1"

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        """Listen; a restart after stop() reuses the port that was bound first."""
        if self._runner is not None:
            raise RuntimeError("OpenAIMock is already running")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/_mock/rules", self._post_rule)
        app.router.add_delete("/_mock/rules", self._delete_rules)
        app.router.add_post("/_mock/queue", self._post_queue)
        app.router.add_delete("/_mock/queue", self._delete_queue)
        app.router.add_get("/_mock/requests", self._get_requests)
        app.router.add_delete("/_mock/requests", self._delete_requests)
        app.router.add_get("/_mock/stats", self._get_stats)
        # handler_cancellation: a client that goes away cancels its handler at once, even between tokens.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port, backlog=4096).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._stopping = False
        self._runner = runner

    async def stop(self) -> None:
        """Cancel in-flight responses (clients see the connection drop) and close the server; idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        responses = list(self._in_flight)
        for task in responses:
            task.cancel()
        await asyncio.gather(*responses, return_exceptions=True)
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- scripting ---

    def add_rule(self, script: Script, *, match: Match | None = None, once: bool = False) -> Rule:
        """Answer matching requests with `script`; rules are tried in the order added, first match wins."""
        rule = Rule(script=script, match=match or Match(), once=once)
        self._rules.append(rule)
        return rule

    def enqueue(self, script: Script) -> None:
        """Answer the next request with `script`; queued scripts go before any rule, in order."""
        self._queue.append(script)

    def clear_rules(self) -> None:
        self._rules.clear()

    def clear_queue(self) -> None:
        self._queue.clear()

    def choose_script(self, request: ChatRequest) -> Script:
        if self._queue:
            return self._queue.popleft()
        for position, rule in enumerate(self._rules):
            if rule.match.matches(request):
                if rule.once:
                    del self._rules[position]
                return rule.script
        return self._fallback(request)

    # --- observation ---

    @property
    def requests(self) -> list[Any]:
        """The chat-completion request bodies received, in order (decoded JSON)."""
        return list(self._requests)

    def clear_requests(self) -> None:
        self._requests.clear()

    @property
    def stats(self) -> MockStats:
        """A snapshot of the counters."""
        return msgspec.structs.replace(self._stats)

    # A timeout parameter (ASYNC109) because tests read better with it than wrapped in asyncio.timeout().
    async def wait_for_disconnect(self, timeout: float | None = 5.0, *, count: int = 1) -> None:
        """Return once `count` clients in all have gone away mid-response; TimeoutError otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while self._stats.client_disconnects < count:
                    await self._disconnected.wait()
        except TimeoutError:
            seen = self._stats.client_disconnects
            raise TimeoutError(f"{seen} of {count} early client disconnects within {timeout}s") from None

    def _record_disconnect(self) -> None:
        self._stats.client_disconnects += 1
        self._disconnected.set()
        self._disconnected = asyncio.Event()

    # --- OpenAI endpoints ---

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        self._stats.requests += 1
        try:
            body = any_decoder.decode(await request.read())
            chat = msgspec.convert(body, ChatRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error_response(400, f"Invalid request body: {exc}")
        if self._record_requests:
            self._requests.append(body)
        script = self.choose_script(chat)
        if script.http_status is not None:
            self._stats.failures_injected += 1
            return _error_response(script.http_status, script.error_message, script.retry_after)
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            if chat.stream:
                return await self._stream(request, chat, script)
            return await self._complete(request, chat, script)
        except asyncio.CancelledError:
            if not self._stopping:
                self._record_disconnect()
            raise
        finally:
            self._in_flight.discard(task)

    async def _stream(self, request: web.Request, chat: ChatRequest, script: Script) -> web.StreamResponse:
        sequence = next(self._response_ids)
        frames = ChunkFrames(
            response_id=response_id(sequence),
            created=int(time.time()),
            model=chat.model,
            include_usage=chat.include_usage,
        )
        delay = self._token_delay if script.token_delay is None else script.token_delay
        stop_at = script.failure_after_tokens
        sent = 0
        response = web.StreamResponse(headers=_SSE_HEADERS)
        try:
            await response.prepare(request)
            self._stats.streams_started += 1
            await response.write(frames.role())
            loop = asyncio.get_running_loop()
            # Deadlines rather than fixed sleeps, so the token rate does not drift with write time.
            next_token_at = loop.time()
            for frame in token_frames(script, frames, sequence):
                if sent == stop_at:
                    break
                if delay:
                    next_token_at += delay
                    await asyncio.sleep(next_token_at - loop.time())
                await response.write(frame)
                sent += 1
            if stop_at is not None:
                self._stats.failures_injected += 1
                if script.error_after_tokens is not None:
                    await response.write(frames.error(error_body(500, script.error_message)))
                elif script.cut_mode == "drop" and request.transport is not None:
                    request.transport.close()
                response.force_close()
                return response
            await response.write(frames.finish(script.resolved_finish_reason))
            if chat.include_usage:
                await response.write(frames.usage(usage_for(script, chat, sent)))
            await response.write(DONE_FRAME)
        except ConnectionResetError:
            # The client went away between two writes (before its disconnect cancelled this handler).
            self._record_disconnect()
            return response
        self._stats.streams_completed += 1
        return response

    async def _complete(self, request: web.Request, chat: ChatRequest, script: Script) -> web.Response:
        sequence = next(self._response_ids)
        delay = self._token_delay if script.token_delay is None else script.token_delay
        tokens = token_count(script)
        if script.failure_after_tokens is not None:
            tokens = min(tokens, script.failure_after_tokens)
        if delay and tokens:
            await asyncio.sleep(delay * tokens)  # the time the model would take to generate them
        if script.error_after_tokens is not None:
            self._stats.failures_injected += 1
            return _error_response(500, script.error_message)
        if script.cut_after_tokens is not None:
            self._stats.failures_injected += 1
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        return _json_response(completion_for(script, chat, sequence, tokens))

    async def _list_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        models = [
            Model(id=name, object="model", created=created, owned_by="raaf-mock") for name in self._models
        ]
        return _json_response(ModelList(object="list", data=models))

    # --- control endpoints (for a mock in another process) ---

    async def _post_rule(self, request: web.Request) -> web.Response:
        try:
            rule = _rule_decoder.decode(await request.read())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error_response(400, f"Invalid rule: {exc}")
        self._rules.append(rule)
        return _json_response({"rules": len(self._rules)}, 201)

    async def _delete_rules(self, request: web.Request) -> web.Response:
        self.clear_rules()
        return _json_response({"rules": 0})

    async def _post_queue(self, request: web.Request) -> web.Response:
        try:
            script = _script_decoder.decode(await request.read())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error_response(400, f"Invalid script: {exc}")
        self.enqueue(script)
        return _json_response({"queued": len(self._queue)}, 201)

    async def _delete_queue(self, request: web.Request) -> web.Response:
        self.clear_queue()
        return _json_response({"queued": 0})

    async def _get_requests(self, request: web.Request) -> web.Response:
        return _json_response(self._requests)

    async def _delete_requests(self, request: web.Request) -> web.Response:
        self.clear_requests()
        return _json_response({"requests": 0})

    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json_response(self._stats)
