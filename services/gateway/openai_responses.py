"""OpenAI-compatible Responses API (`/v1/responses`): create, stream, resume, retrieve, cancel, delete; a response
is a run (``resp_<run id>``) and every answer is a rendering of its stored events. A run waiting for approval
shows ``mcp_approval_request`` items; ``mcp_approval_response`` input items (with ``previous_response_id``) decide
and the same response goes on."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Final

import msgspec
from aiohttp import web

from proto.errors import Error, ErrorCode
from proto.openai_responses import (
    RESPONSE_ID_PREFIX,
    DeletedResponse,
    ErrorEvent,
    InputItem,
    NamedToolChoice,
    ResponsesRequest,
    responses_encoder,
    responses_request_decoder,
)
from proto.runs import (
    ApprovalRequested,
    ChatMessage,
    ClientTool,
    RunEvent,
    RunRequest,
    ToolCallRecord,
    is_run_id,
)
from services.gateway.approvals import ApprovalRoutes
from services.gateway.openai_routes import openai_error
from services.gateway.quota import StreamLease
from services.gateway.responses_render import BACKGROUND_KEY, PREVIOUS_KEY, ResponseRenderer, call_of, render_all
from services.gateway.resume_trace import resume_span
from services.gateway.runs_http import SSE_HEADERS, RunRoutes
from shared.clients.runs import RunClient
from shared.errors import StreamingError
from shared.identity import Identity
from shared.runs.conversation import conversation
from shared.runs.log import is_terminal

_ROLES: Final = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_TEXT_PARTS: Final = frozenset({"input_text", "output_text", "text", "refusal"})
TRANSPORT: Final = "responses"
# How long cancel and delete wait for a running run's terminal event.
END_PATIENCE: Final = 10.0


def bad(message: str) -> Error:
    return Error(code=ErrorCode.BAD_REQUEST, message=message)


def run_of(response_id: str) -> str | None:
    """The run id behind ``resp_<run id>``, or None if it is not one of ours."""
    run_id = response_id.removeprefix(RESPONSE_ID_PREFIX)
    return run_id if response_id.startswith(RESPONSE_ID_PREFIX) and is_run_id(run_id) else None


def history_of(items: list[InputItem]) -> list[ChatMessage] | Error:
    """Input items as conversation messages: function calls join the assistant message before them."""
    history: list[ChatMessage] = []
    for item in items:
        kind = item.type or "message"
        parts = item.content if isinstance(item.content, list) else []
        unread = sorted({part.type for part in parts} - _TEXT_PARTS)
        if unread:
            return bad(f"content parts of type {', '.join(unread)} are not supported (text only)")
        if kind == "message":
            role = _ROLES.get(item.role or "")
            if role is None:
                return bad(f"input message role {item.role!r} is not one of {', '.join(_ROLES)}")
            history.append(ChatMessage(role=role, content=item.text))  # type: ignore[arg-type]
        elif kind == "function_call":
            if not item.call_id or not item.name:
                return bad("a function_call input item needs call_id and name")
            call = ToolCallRecord(call_id=item.call_id, name=item.name, arguments=item.arguments or "{}")
            if history and history[-1].role == "assistant":
                history[-1] = msgspec.structs.replace(history[-1], tool_calls=[*history[-1].tool_calls, call])
            else:
                history.append(ChatMessage(role="assistant", content="", tool_calls=[call]))
        elif kind == "function_call_output":
            if not item.call_id:
                return bad("a function_call_output input item needs call_id")
            history.append(ChatMessage(role="tool", content=item.text, tool_call_id=item.call_id))
        elif kind != "reasoning":  # reasoning items carry nothing this platform's agents read
            return bad(f"input items of type {kind!r} are not supported (message, function_call, "
                       "function_call_output)")
    return history


def to_run(body: ResponsesRequest, earlier: list[ChatMessage], *, owner: str | None) -> RunRequest | Error:
    """The request as a run: the last user message is the input, or the client's tool results end the history."""
    items = [InputItem(role="user", content=body.input)] if isinstance(body.input, str) else body.input
    history = history_of(items)
    if isinstance(history, Error):
        return history
    history = earlier + history
    if not history or history[-1].role not in ("user", "tool"):
        return bad("input must end with a user message or a function_call_output")
    text = history.pop().content if history[-1].role == "user" else ""
    tools: list[ClientTool] = []
    for tool in body.tools:
        if tool.type == "mcp" and tool.server_label:
            continue  # the client answers that label's mcp_approval_requests (the Agents SDK's HostedMCPTool)
        if tool.type != "function" or not tool.name:
            return bad(f"tools of type {tool.type!r} are not supported: only function tools (run by the client) "
                       "and mcp tools naming a server_label (the client answering its approval requests)")
        tools.append(ClientTool(name=tool.name, description=tool.description, parameters=tool.parameters or {},
                                strict=tool.strict))
    choice, choice_name = None, None
    match body.tool_choice:
        case None:
            pass
        case "auto" | "none" | "required":
            choice = body.tool_choice
        case NamedToolChoice(type="function", name=str(name)):
            choice_name = name
        case _:
            return bad("tool_choice must be auto, none, required or {type: function, name}")
    if body.max_output_tokens is not None and body.max_output_tokens < 1:
        return bad("max_output_tokens must be >= 1")
    metadata = {k: v for k, v in (body.metadata or {}).items() if not k.startswith("raaf.responses.")}
    if body.user:
        metadata["user"] = body.user
    if body.background:
        metadata[BACKGROUND_KEY] = "1"
    if body.previous_response_id:
        metadata[PREVIOUS_KEY] = body.previous_response_id
    return RunRequest(run_id=uuid.uuid4().hex, agent=body.model, input=text, history=history, metadata=metadata,
                      owner=owner, client_tools=tools, tool_choice=choice, tool_choice_name=choice_name,
                      parallel_tool_calls=body.parallel_tool_calls, instructions=body.instructions,
                      max_output_tokens=body.max_output_tokens)


def json_of(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=responses_encoder.encode(value), content_type="application/json")


class ResponsesRoutes:
    """Lets the ``openai`` client's ``responses`` API and the Agents SDK's default model talk to the agents."""

    def __init__(self, runs: RunRoutes) -> None:
        self.runs = runs
        self.approvals = ApprovalRoutes(runs)
        for metric in (runs.streams, runs.delivered):
            metric.labels(transport=TRANSPORT)

    @property
    def client(self) -> RunClient:
        return self.runs.client

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/responses", self.create), web.get("/v1/responses/{response_id}", self.retrieve),
                web.post("/v1/responses/{response_id}/cancel", self.cancel),
                web.delete("/v1/responses/{response_id}", self.delete)]

    # ---- access: the same checks as /v1/runs (RunRoutes.authenticator, RunAccess) -------------------------

    def _identity(self, request: web.Request) -> Identity | web.Response:
        try:
            return self.runs.authenticator.require(request)
        except StreamingError as exc:
            return openai_error(Error(code=exc.code, message=exc.message))

    async def _readable(self, request: web.Request, response_id: str) -> str | web.Response:
        """The run id behind ``response_id`` if the caller may read that run, else the error response."""
        found = await self._reader(request, response_id)
        return found if isinstance(found, web.Response) else found[1]

    async def _reader(self, request: web.Request, response_id: str) -> tuple[Identity, str] | web.Response:
        """:meth:`_readable`, with the caller."""
        identity = self._identity(request)
        if isinstance(identity, web.Response):
            return identity
        run_id = run_of(response_id)
        if run_id is None:
            return openai_error(Error(code=ErrorCode.NOT_FOUND, message=f"no response {response_id!r}"))
        denied = await self.runs.access.check_read(identity, run_id)
        if denied is not None:
            return openai_error(msgspec.structs.replace(denied, message=denied.message.replace(
                f"run {run_id}", f"response {response_id}")))
        return identity, run_id

    async def _stored(self, run_id: str) -> list[RunEvent]:
        async with contextlib.aclosing(self.client.log.stored(run_id)) as stored:
            return [event async for event, _ in stored]

    # ---- routes ---------------------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        admitted = await self.runs.admit_start(request, responses_request_decoder, "request", lambda b: b.model)
        if isinstance(admitted, Error):
            return openai_error(admitted)
        identity, body = admitted
        if isinstance(body.input, list) and any(item.type == "mcp_approval_response" for item in body.input):
            return await self.answer(request, identity, body)
        earlier: list[ChatMessage] = []
        if body.previous_response_id:
            previous = await self._readable(request, body.previous_response_id)
            if isinstance(previous, web.Response):
                return previous
            before = await self._stored(previous)
            if not before or not is_terminal(before[-1]):
                return openai_error(bad(f"previous response {body.previous_response_id} has not finished"))
            earlier = conversation(before)
        run = to_run(body, earlier, owner=identity.subject)
        if isinstance(run, Error):
            return openai_error(run)
        lease = self.runs.lease(request, identity) if body.stream else None
        if isinstance(lease, Error):
            return openai_error(lease)
        with lease or contextlib.nullcontext():
            reply = await self.client.start(run)
            if isinstance(reply, Error):
                return openai_error(reply)
            if lease is not None:
                return await self.stream(request, run.run_id, -1, lease, cancel_on_disconnect=not body.background)
        if body.background:
            return json_of(render_all(run.run_id, await self._stored(run.run_id)).snapshot())
        renderer = await self._until_paused(run.run_id)
        if renderer.error is not None and renderer.status == "failed":
            return openai_error(Error(code=ErrorCode(renderer.error.code), message=renderer.error.message,
                                      ref=renderer.id))
        return json_of(renderer.snapshot())

    async def answer(self, request: web.Request, identity: Identity, body: ResponsesRequest) -> web.StreamResponse:
        """``mcp_approval_response`` items deciding the calls ``previous_response_id`` waits on (as the caller,
        ``shared.access.check_decide``); the answer is that same response going on from the decisions."""
        assert isinstance(body.input, list)
        if any(item.type != "mcp_approval_response" for item in body.input):
            return openai_error(bad("a request that answers approvals holds only mcp_approval_response items "
                                    "and previous_response_id (the Agents SDK: Runner.run(..., "
                                    "auto_previous_response_id=True))"))
        if not body.previous_response_id:
            return openai_error(bad("mcp_approval_response items need previous_response_id: the response that "
                                    "asked (the Agents SDK: auto_previous_response_id=True)"))
        run_id = await self._readable(request, body.previous_response_id)
        if isinstance(run_id, web.Response):
            return run_id
        lease = self.runs.lease(request, identity) if body.stream else None
        if isinstance(lease, Error):
            return openai_error(lease)
        with lease or contextlib.nullcontext():
            after = 0
            for item in body.input:
                call_id = call_of(item.approval_request_id or "")
                if call_id is None or item.approve is None:
                    return openai_error(bad("an mcp_approval_response needs approve and the approval_request_id "
                                            "of an mcp_approval_request"))
                requested, decided = await self.client.approval_request(run_id, call_id)
                if requested is None:
                    return openai_error(Error(code=ErrorCode.NOT_FOUND, message=f"response "
                                              f"{body.previous_response_id} asked no approval of {call_id}"))
                after = max(after, requested.seq)
                if decided:
                    continue  # answered twice, or decided elsewhere: the response shows the decision
                reply = await self.approvals.decide(identity, run_id, call_id, approved=item.approve,
                                                    message=None if item.approve else item.reason)
                if isinstance(reply, Error) and reply.code != ErrorCode.CONFLICT:
                    return openai_error(reply)
            if lease is not None:
                return await self.stream(request, run_id, -1, lease, cancel_on_disconnect=not body.background,
                                         from_seq=after)
        if body.background:
            return json_of(render_all(run_id, await self._stored(run_id)).snapshot())
        return json_of((await self._until_paused(run_id, from_seq=after)).snapshot())

    async def _until_paused(self, run_id: str, from_seq: int = 0) -> ResponseRenderer:
        """The run rendered until it ends or waits for decisions (every call of its turn asked); with
        ``from_seq`` (a decision's continuation) its ``output`` holds the items after that event only."""
        renderer = ResponseRenderer(run_id)
        waiting: list[ApprovalRequested] = []
        async with contextlib.aclosing(self.client.follow(run_id)) as events:
            async for event, _ in events:
                renderer.feed(event)
                if event.seq <= from_seq:
                    renderer.shown_from = len(renderer.output)
                if isinstance(event, ApprovalRequested) and await self.client.turn_waits(
                        run_id, event, waiting) is not None:
                    break
        return renderer

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        found = await self._reader(request, request.match_info["response_id"])
        if isinstance(found, web.Response):
            return found
        identity, run_id = found
        if request.query.get("stream") == "true":
            raw = request.query.get("starting_after", "-1")
            try:
                after = int(raw)
            except ValueError:
                return openai_error(bad(f"starting_after must be a sequence number, not {raw!r}"))
            lease = self.runs.lease(request, identity)
            if isinstance(lease, Error):
                return openai_error(lease)
            with lease:
                async with resume_span(self.client.log, run_id, after, "responses"):
                    return await self.stream(request, run_id, after, lease, cancel_on_disconnect=False)
        return json_of(render_all(run_id, await self._stored(run_id)).snapshot())

    async def cancel(self, request: web.Request) -> web.Response:
        run_id = await self._readable(request, request.match_info["response_id"])
        if isinstance(run_id, web.Response):
            return run_id
        return json_of((await self._ended(run_id, "cancelled by the client (POST /v1/responses/{id}/cancel)"))
                       .snapshot())

    async def delete(self, request: web.Request) -> web.Response:
        response_id = request.match_info["response_id"]
        run_id = await self._readable(request, response_id)
        if isinstance(run_id, web.Response):
            return run_id
        await self._ended(run_id, "the response was deleted")
        await self.client.log.purge(run_id)
        return json_of(DeletedResponse(id=response_id))

    async def _ended(self, run_id: str, reason: str) -> ResponseRenderer:
        """Cancel the run unless it ended, and wait (a while) for its terminal event; the rendering after it."""
        events = await self._stored(run_id)
        if events and not is_terminal(events[-1]):
            await self.client.cancel(run_id, reason)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(END_PATIENCE), contextlib.aclosing(
                        self.client.follow(run_id, events[-1].seq)) as rest:
                    async for event, _ in rest:
                        events.append(event)
        return render_all(run_id, events)

    async def stream(self, request: web.Request, run_id: str, after: int, lease: StreamLease, *,
                     cancel_on_disconnect: bool, from_seq: int = 0) -> web.StreamResponse:
        """The run rendered as Responses events with ``sequence_number > after`` (and from the run's events after
        ``from_seq``: a decision's continuation), live until it ends or waits for decisions (``response.completed``
        with its approval requests); at the token's expiry an ``error`` event ends it (numbered as the last event
        sent, so ``starting_after`` resumes right)."""
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        gauge = self.runs.streams.labels(transport=TRANSPORT)
        counter = self.runs.delivered.labels(transport=TRANSPORT)
        gauge.inc()
        renderer = ResponseRenderer(run_id)
        waiting: list[ApprovalRequested] = []
        finished = False

        async def keepalive() -> None:
            await response.write(b": keepalive\n\n")

        try:
            async with lease.until_expiry(), contextlib.aclosing(
                    self.client.follow(run_id, on_idle=keepalive)) as events:
                async for event, _ in events:
                    rendered_events = renderer.feed(event)
                    if event.seq <= from_seq:
                        renderer.shown_from = len(renderer.output)
                        continue
                    paused = isinstance(event, ApprovalRequested) and await self.client.turn_waits(
                        run_id, event, waiting) is not None
                    if paused:
                        rendered_events += renderer.paused()
                    out = bytearray()
                    for rendered in rendered_events:
                        if rendered.sequence_number > after:
                            out += b"event: %s\ndata: %s\n\n" % (rendered.type.encode(),
                                                                 responses_encoder.encode(rendered))
                    if out:
                        await response.write(bytes(out))
                        counter.inc()
                    if paused:
                        break
            finished = True
        except TimeoutError:
            if not lease.expired:
                raise
            expired = lease.error()
            end = ErrorEvent(sequence_number=max(renderer.sequence, after), code=expired.code.value,
                             message=expired.message)
            with contextlib.suppress(ConnectionResetError, ConnectionError):
                await response.write(b"event: error\ndata: %s\n\n" % responses_encoder.encode(end))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            gauge.dec()
            if not finished and cancel_on_disconnect:
                # As OpenAI does: only a background response outlives the connection that created it.
                with contextlib.suppress(Exception):
                    await self.client.cancel(run_id, "the responses client disconnected")
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write_eof()
        return response
