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
    ChatToolChoice,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    Delta,
    DeltaToolCall,
    ErrorBody,
    ErrorDetail,
    FinishReason,
    FunctionDelta,
    MessageToolCall,
    ModelCard,
    ModelList,
    NamedFunction,
    RequestFunction,
    Usage,
    completion_request_decoder,
    openai_encoder,
)
from proto.runs import (
    ChatMessage,
    ClientTool,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRecord,
    ToolCallStarted,
)
from services.gateway.quota import StreamLease
from services.gateway.runs_http import RunRoutes
from shared import access
from shared.clients.runs import RunClient
from shared.errors import StreamingError
from shared.runs.continuation import Continuation
from shared.tracing import traced_handler

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
    """The conversation as a run: the last user message is the input, everything before it the history; a
    conversation ending with the results of the client's tools continues with them (and no new input)."""
    if not body.messages or body.messages[-1].role not in ("user", "tool"):
        return Error(code=ErrorCode.BAD_REQUEST, message="messages must end with a user or a tool message")
    history: list[ChatMessage] = []
    for message in body.messages:
        if message.role == "tool":
            if not message.tool_call_id:
                return Error(code=ErrorCode.BAD_REQUEST, message="a tool message needs its tool_call_id")
            history.append(ChatMessage(role="tool", content=message.text, tool_call_id=message.tool_call_id))
            continue
        role = _HISTORY_ROLES.get(message.role)
        if role is None:
            return Error(code=ErrorCode.BAD_REQUEST, message=f"{message.role!r} messages are not accepted")
        calls = [ToolCallRecord(call_id=c.id, name=c.function.name, arguments=c.function.arguments)
                 for c in message.tool_calls or []]
        history.append(ChatMessage(role=role, content=message.text, tool_calls=calls))  # type: ignore[arg-type]
    text = history.pop().content if history[-1].role == "user" else ""
    tools = client_tools(body)
    if isinstance(tools, Error):
        return tools
    choice, choice_name = None, None
    match body.tool_choice:
        case None:
            pass
        case "auto" | "none" | "required":
            choice = body.tool_choice
        case ChatToolChoice(type="function", function=NamedFunction(name=name)):
            choice_name = name
        case _:
            return Error(code=ErrorCode.BAD_REQUEST, message="tool_choice must be auto, none, required or "
                         "{type: function, function: {name}}")
    metadata = {"user": body.user} if body.user else {}
    return RunRequest(run_id=uuid.uuid4().hex, agent=body.model, input=text, history=history,
                      metadata=metadata, owner=owner, client_tools=tools, tool_choice=choice,
                      tool_choice_name=choice_name, parallel_tool_calls=body.parallel_tool_calls,
                      max_output_tokens=body.max_completion_tokens or body.max_tokens)


def client_tools(body: CompletionRequest) -> list[ClientTool] | Error:
    tools: list[ClientTool] = []
    for tool in body.tools:
        if tool.type != "function" or tool.function is None:
            return Error(code=ErrorCode.BAD_REQUEST, message=f"tools of type {tool.type!r} are not supported: "
                         "only function tools (run by the client)")
        spec = tool.function
        tools.append(ClientTool(name=spec.name, description=spec.description, parameters=spec.parameters or {},
                                strict=spec.strict))
    return tools


class ChatCompletionRoutes:
    """Lets the official ``openai`` client talk to the platform's agents: the agent's tools run server-side, the
    client's own ``tools`` come back to it as ``tool_calls``."""

    def __init__(self, runs: RunRoutes) -> None:
        self.runs = runs

    @property
    def client(self) -> RunClient:
        return self.runs.client

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", traced_handler("raaf.gateway", "/v1/chat/completions", self.create)),
                web.get("/v1/models", self.models)]

    async def create(self, request: web.Request) -> web.StreamResponse:
        try:
            identity = self.runs.authenticator.require(request)
        except StreamingError as exc:
            return openai_error(Error(code=exc.code, message=exc.message))
        raw = await self.runs.read_body(request)
        if isinstance(raw, Error):
            return openai_error(raw)
        try:
            body = completion_request_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return openai_error(Error(code=ErrorCode.BAD_REQUEST, message=f"malformed request: {exc}"))
        try:
            await self.runs.access.check_start(identity, body.model)
        except StreamingError as exc:
            return openai_error(exc.to_wire())
        run = to_run(body, owner=identity.subject)
        if isinstance(run, Error):
            return openai_error(run)
        try:
            max_turns, timeout = access.run_limits(identity, run.max_turns, run.timeout)
        except StreamingError as exc:
            return openai_error(exc.to_wire())
        run = msgspec.structs.replace(run, max_turns=max_turns, timeout=timeout)
        lease = self.runs.lease(request, identity) if body.stream else None
        if isinstance(lease, Error):
            return openai_error(lease)
        with lease or contextlib.nullcontext():
            reply = await self.client.start(run)
            if isinstance(reply, Error):
                return openai_error(reply)
            completion_id = f"chatcmpl-{run.run_id}"
            if lease is not None:
                include_usage = body.stream_options is not None and body.stream_options.include_usage
                return await self._stream(request, run.run_id, completion_id, body.model, include_usage,
                                          {tool.name for tool in run.client_tools}, lease)
        return await self._complete(run.run_id, completion_id, body.model)

    async def _complete(self, run_id: str, completion_id: str, model: str) -> web.Response:
        async with contextlib.aclosing(self.client.follow(run_id)) as events:
            async for event, _ in events:
                match event:
                    case RunCompleted(output=output, usage=usage, client_calls=calls, truncated=truncated):
                        message = AssistantMessage(content=output) if not calls else AssistantMessage(
                            content=output or None, tool_calls=[MessageToolCall(id=c.call_id, function=RequestFunction(
                                name=c.name, arguments=c.arguments)) for c in calls])
                        choice = CompletionChoice(message=message, finish_reason="tool_calls" if calls else
                                                  "length" if truncated else "stop")
                        body = Completion(id=completion_id, created=int(time.time()), model=model, choices=[choice],
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
                      include_usage: bool, client_tools: set[str], lease: StreamLease) -> web.StreamResponse:
        """The run as chunks; at the token's expiry an error chunk ends it and the run is cancelled (no one can
        resume a Chat Completions stream)."""
        created = int(time.time())
        calls: dict[str, int] = {}  # the client tools' calls of the current turn: call id -> index

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
            async with lease.until_expiry(), contextlib.aclosing(
                    self.client.follow(run_id, on_idle=keepalive)) as events:
                async for event, _ in events:
                    counter.inc()
                    delivered = text.feed(event)
                    match event:
                        case TextDelta():
                            calls.clear()
                            if delivered is not None:
                                await response.write(frame([ChunkChoice(delta=Delta(content=delivered))]))
                        case ToolCallStarted(call_id=call_id, name=name) if name in client_tools:
                            calls[call_id] = len(calls)
                            piece = DeltaToolCall(index=calls[call_id], id=call_id, type="function",
                                                  function=FunctionDelta(name=name))
                            await response.write(frame([ChunkChoice(delta=Delta(tool_calls=[piece]))]))
                        case ToolCallDelta(call_id=call_id, delta=delta) if call_id in calls:
                            piece = DeltaToolCall(index=calls[call_id], function=FunctionDelta(arguments=delta))
                            await response.write(frame([ChunkChoice(delta=Delta(tool_calls=[piece]))]))
                        case RunCompleted(usage=usage, client_calls=ended_with, truncated=truncated):
                            finish: FinishReason = "tool_calls" if ended_with else "length" if truncated else "stop"
                            out = frame([ChunkChoice(delta=Delta(), finish_reason=finish)])
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
        except TimeoutError:
            if not lease.expired:
                raise
            with contextlib.suppress(ConnectionResetError, ConnectionError):
                await response.write(_error_frame(msgspec.structs.replace(lease.error(), ref=run_id)))
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
        except StreamingError as exc:
            return openai_error(Error(code=exc.code, message=exc.message))
        reply = await self.client.agents()
        if isinstance(reply, Error):
            return openai_error(reply)
        cards = ModelList(data=[ModelCard(id=agent.name) for agent in reply.agents])
        return web.Response(body=openai_encoder.encode(cards), content_type="application/json")
