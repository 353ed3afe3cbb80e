"""OpenAI-compatible `POST /v1/chat/completions` (streamed or not) and `GET /v1/models`: `model` names an agent."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Final

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from proto.errors import Error, ErrorCode, http_status
from proto.openai_compat import (
    DONE,
    AssistantMessage,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    Delta,
    ErrorBody,
    ErrorDetail,
    ModelCard,
    ModelList,
    Usage,
    completion_request_decoder,
    openai_encoder,
)
from proto.runs import ChatMessage, RunCancelled, RunCompleted, RunFailed, RunRequest, TextDelta
from services.gateway.errors import GatewayError
from services.gateway.runs_http import RunRoutes
from shared.clients.runs import RunClient
from shared.runs.continuation import Continuation

_HISTORY_ROLES: Final = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def openai_error(error: Error) -> web.Response:
    status = http_status(error.code)
    kind = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    body = ErrorBody(error=ErrorDetail(message=error.message, type=kind, code=error.code.value))
    return web.Response(status=status, body=openai_encoder.encode(body), content_type="application/json")


def _error_frame(error: Error) -> bytes:
    detail = ErrorDetail(message=error.message, type="server_error", code=error.code.value)
    return b"data: " + openai_encoder.encode(ErrorBody(error=detail)) + b"\n\n"


def to_run(body: CompletionRequest, *, owner: str | None) -> RunRequest | Error:
    """The conversation as a run: the last user message is the input, everything before it the history."""
    if not body.messages or body.messages[-1].role != "user":
        return Error(code=ErrorCode.BAD_REQUEST, message="messages must end with a user message")
    history: list[ChatMessage] = []
    for message in body.messages[:-1]:
        role = _HISTORY_ROLES.get(message.role)
        if role is None:
            return Error(code=ErrorCode.BAD_REQUEST, message=f"{message.role!r} messages are not accepted: "
                         "the agent runs its own tools")
        history.append(ChatMessage(role=role, content=message.text))  # type: ignore[arg-type]
    metadata = {"user": body.user} if body.user else {}
    return RunRequest(run_id=uuid.uuid4().hex, agent=body.model, input=body.messages[-1].text, history=history,
                      metadata=metadata, owner=owner)


class ChatCompletionRoutes:
    """Lets the official ``openai`` client talk to the platform's agents; tools run server-side, only text streams."""

    def __init__(self, runs: RunRoutes) -> None:
        self.runs = runs

    @property
    def client(self) -> RunClient:
        return self.runs.client

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self.create), web.get("/v1/models", self.models)]

    async def create(self, request: web.Request) -> web.StreamResponse:
        try:
            identity = self.runs.authenticator.require(request)
        except GatewayError as exc:
            return openai_error(Error(code=exc.code, message=exc.message))
        raw = await self.runs.read_body(request)
        if isinstance(raw, Error):
            return openai_error(raw)
        try:
            body = completion_request_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return openai_error(Error(code=ErrorCode.BAD_REQUEST, message=f"malformed request: {exc}"))
        if not identity.may("run", body.model):
            return openai_error(Error(code=ErrorCode.FORBIDDEN, message=f"not allowed to run {body.model!r}"))
        run = to_run(body, owner=identity.subject)
        if isinstance(run, Error):
            return openai_error(run)
        reply = await self.client.start(run)
        if isinstance(reply, Error):
            return openai_error(reply)
        completion_id = f"chatcmpl-{run.run_id}"
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return await self._stream(request, run.run_id, completion_id, body.model, include_usage)
        return await self._complete(run.run_id, completion_id, body.model)

    async def _complete(self, run_id: str, completion_id: str, model: str) -> web.Response:
        async with contextlib.aclosing(self.client.follow(run_id)) as events:
            async for event, _ in events:
                match event:
                    case RunCompleted(output=output, usage=usage):
                        body = Completion(id=completion_id, created=int(time.time()), model=model,
                                          choices=[CompletionChoice(message=AssistantMessage(content=output))],
                                          usage=Usage(prompt_tokens=usage.prompt_tokens,
                                                      completion_tokens=usage.completion_tokens,
                                                      total_tokens=usage.total_tokens))
                        return web.Response(body=openai_encoder.encode(body), content_type="application/json")
                    case RunFailed(code=code, message=message):
                        return openai_error(Error(code=code, message=message, ref=run_id))
                    case RunCancelled(reason=reason):
                        return openai_error(Error(code=ErrorCode.CANCELLED, message=reason, ref=run_id))
        return openai_error(Error(code=ErrorCode.INTERNAL, message="the run ended without a result", ref=run_id))

    async def _stream(self, request: web.Request, run_id: str, completion_id: str, model: str,
                      include_usage: bool) -> web.StreamResponse:
        created = int(time.time())

        def frame(choices: list[ChunkChoice], usage: Usage | UnsetType = UNSET) -> bytes:
            chunk = CompletionChunk(id=completion_id, created=created, model=model, choices=choices, usage=usage)
            return b"data: " + openai_encoder.encode(chunk) + b"\n\n"

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        gauge = self.runs.streams.labels(transport="openai")
        counter = self.runs.delivered.labels(transport="openai")
        gauge.inc()
        finished = False
        text = Continuation()  # a restarted step continues the text; what was sent cannot be taken back

        async def keepalive() -> None:
            await response.write(b": keepalive\n\n")

        try:
            await response.write(frame([ChunkChoice(delta=Delta(role="assistant", content=""))]))
            async with contextlib.aclosing(self.client.follow(run_id, on_idle=keepalive)) as events:
                async for event, _ in events:
                    counter.inc()
                    delivered = text.feed(event)
                    match event:
                        case TextDelta():
                            if delivered is not None:
                                await response.write(frame([ChunkChoice(delta=Delta(content=delivered))]))
                        case RunCompleted(usage=usage):
                            out = frame([ChunkChoice(delta=Delta(), finish_reason="stop")])
                            if include_usage:
                                out += frame([], Usage(prompt_tokens=usage.prompt_tokens,
                                                       completion_tokens=usage.completion_tokens,
                                                       total_tokens=usage.total_tokens))
                            await response.write(out + DONE)
                        case RunFailed(code=code, message=message):
                            await response.write(_error_frame(Error(code=code, message=message, ref=run_id)))
                        case RunCancelled(reason=reason):
                            await response.write(_error_frame(Error(code=ErrorCode.CANCELLED, message=reason,
                                                                    ref=run_id)))
            finished = True
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            gauge.dec()
            if not finished:
                # The client went away: nobody can resume an OpenAI stream, so stop the model too.
                with contextlib.suppress(Exception):
                    await self.client.cancel(run_id, "the chat-completions client disconnected")
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write_eof()
        return response

    async def models(self, request: web.Request) -> web.Response:
        try:
            self.runs.authenticator.require(request)
        except GatewayError as exc:
            return openai_error(Error(code=exc.code, message=exc.message))
        reply = await self.client.agents()
        if isinstance(reply, Error):
            return openai_error(reply)
        cards = ModelList(data=[ModelCard(id=agent.name) for agent in reply.agents])
        return web.Response(body=openai_encoder.encode(cards), content_type="application/json")
