"""The Vercel AI SDK's chat endpoint (``useChat`` / ``DefaultChatTransport``): a UI message stream per run, resume
by chat id, stop; a chat's runs are ``<chat id>-1``, ``-2`` ... in its caller's namespace (``u<digest>_<chat id>-1``),
so the chat needs no store of its own and no identity reaches, or takes first, another's chat."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Final

from aiohttp import web

from proto.errors import Error, ErrorCode, error_encoder, http_status
from proto.runs import ApprovalRequested, ChatMessage, ClientTool, RunRequest, ToolCallRecord
from proto.ui_stream import (
    DONE,
    UI_STREAM_HEADERS,
    ChatRequest,
    ErrorPart,
    Start,
    UiMessage,
    UiPart,
    chat_request_decoder,
    ui_encoder,
)
from services.gateway.approvals import ApprovalRoutes
from services.gateway.quota import StreamLease
from services.gateway.resume_trace import resume_span
from services.gateway.runs_http import RunRoutes
from services.gateway.ui_chat_render import MESSAGE_KEY, UiStreamRenderer
from shared import access
from shared.clients.runs import RunClient
from shared.errors import StreamingError
from shared.identity import Identity
from shared.runs.log import is_terminal

_CHAT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,52}")
_CHAT_ID_RULE: Final = "a chat id is 1-52 letters, digits, '_' or '-' (38 when authenticated: the namespace takes 14)"
_ROLES: Final = {"system": "system", "user": "user", "assistant": "assistant"}
TRANSPORT: Final = "ui-message-stream"
MAX_STARTS: Final = 3  # attempts at the chat's next run id when another request takes it first


def error_response(error: Error) -> web.Response:
    return web.Response(status=http_status(error.code), body=error_encoder.encode(error),
                        content_type="application/json")


def bad(message: str) -> Error:
    return Error(code=ErrorCode.BAD_REQUEST, message=message)


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def history_of(messages: list[UiMessage]) -> list[ChatMessage] | Error:
    """UI messages as conversation messages (an assistant message as its steps, see ``steps_of``)."""
    history: list[ChatMessage] = []
    for message in messages:
        role = _ROLES.get(message.role)
        if role is None:
            return bad(f"message role {message.role!r} is not one of {', '.join(_ROLES)}")
        if role == "assistant":
            steps = steps_of(message)
            if isinstance(steps, Error):
                return steps
            history.extend(steps)
        else:
            text = "".join(p.text or "" for p in message.parts if p.type == "text")
            history.append(ChatMessage(role=role, content=text))  # type: ignore[arg-type]
    return history


def steps_of(message: UiMessage) -> list[ChatMessage] | Error:
    """Each step of an assistant message: its text and tool calls, then the results the message holds (of the
    client's tools as well as the server's)."""
    out: list[ChatMessage] = []
    text: list[str] = []
    calls: list[ToolCallRecord] = []
    results: list[ChatMessage] = []
    for part in [*message.parts, UiPart(type="step-start")]:
        if part.type == "step-start":
            if text or calls:
                out.append(ChatMessage(role="assistant", content="".join(text), tool_calls=calls))
            out.extend(results)
            text, calls, results = [], [], []
        elif part.type == "text":
            text.append(part.text or "")
        elif part.type.startswith("tool-") or part.type == "dynamic-tool":
            name = part.tool_name if part.type == "dynamic-tool" else part.type.removeprefix("tool-")
            if not name or not part.tool_call_id:
                return bad(f"a {part.type} part needs toolCallId (and toolName)")
            calls.append(ToolCallRecord(call_id=part.tool_call_id, name=name, arguments=_text(part.input or {})))
            if part.state == "output-available":
                results.append(ChatMessage(role="tool", content=_text(part.output), tool_call_id=part.tool_call_id))
            elif part.state == "output-error":
                results.append(ChatMessage(role="tool", content=f"error: {part.error_text or 'failed'}",
                                           tool_call_id=part.tool_call_id))
    return out


def chat_runs(identity: Identity, chat_id: str) -> str | None:
    """The stem of a chat's run ids (``<stem>-<n>``): the chat id in the caller's namespace; None: not a chat id."""
    if _CHAT_ID.fullmatch(chat_id) is None:
        return None
    stem = access.scoped_run_id(identity, chat_id)
    return stem if len(stem) <= 52 else None


def to_run(body: ChatRequest, agent: str, run_id: str, *, owner: str | None) -> RunRequest | Error:
    history = history_of(body.messages)
    if isinstance(history, Error):
        return history
    if not history or history[-1].role not in ("user", "tool"):
        return bad("messages must end with a user message, or an assistant message holding its tools' outputs")
    text = history.pop().content if history[-1].role == "user" else ""
    metadata = {"chat": body.id}
    last = body.messages[-1]
    if last.role == "assistant" and last.id:
        metadata[MESSAGE_KEY] = last.id
    tools = [ClientTool(name=t.name, description=t.description, parameters=t.input_schema or t.parameters or {})
             for t in body.tools]
    return RunRequest(run_id=run_id, agent=agent, input=text, history=history, metadata=metadata, owner=owner,
                      client_tools=tools)


class UiChatRoutes:
    """``POST /v1/ui/{agent}/chat``, ``GET …/chat/{chat_id}/stream`` (204 when nothing streams), ``POST …/stop``.

    A dropped connection leaves the run going (the client resumes it); only ``stop`` cancels it.
    """

    def __init__(self, runs: RunRoutes) -> None:
        self.runs = runs
        self.approvals = ApprovalRoutes(runs)
        for metric in (runs.streams, runs.delivered):
            metric.labels(transport=TRANSPORT)

    @property
    def client(self) -> RunClient:
        return self.runs.client

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/ui/{agent}/chat", self.chat),
                web.get("/v1/ui/{agent}/chat/{chat_id}/stream", self.resume),
                web.post("/v1/ui/{agent}/chat/{chat_id}/stop", self.stop)]

    # ---- a chat's runs -------------------------------------------------------------------------------------

    async def _exists(self, stem: str, n: int) -> bool:
        return await self.client.log.last_payload(f"{stem}-{n}") is not None

    async def latest(self, stem: str) -> int:
        """The number of the chat's newest run (0: none): runs are numbered without gaps, so a search finds it."""
        if not await self._exists(stem, 1):
            return 0
        low, high = 1, 2
        while await self._exists(stem, high):
            low, high = high, high * 2
        while high - low > 1:  # low exists, high does not
            middle = (low + high) // 2
            low, high = (middle, high) if await self._exists(stem, middle) else (low, middle)
        return low

    async def _chat_run(self, request: web.Request) -> tuple[Identity, str | None] | web.Response:
        """The caller and its chat's newest run (None if it has none), if the caller may read that run."""
        try:
            identity = self.runs.authenticator.require(request)
        except StreamingError as exc:
            return error_response(Error(code=exc.code, message=exc.message))
        stem = chat_runs(identity, request.match_info["chat_id"])
        if stem is None:
            return error_response(bad(_CHAT_ID_RULE))
        n = await self.latest(stem)
        if n == 0:
            return identity, None
        run_id = f"{stem}-{n}"
        denied = await self.runs.access.check_read(identity, run_id)
        return error_response(denied) if denied is not None else (identity, run_id)

    # ---- routes ---------------------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        agent = request.match_info["agent"]
        admitted = await self.runs.admit_start(request, chat_request_decoder, "chat request", lambda _: agent)
        if isinstance(admitted, Error):
            return error_response(admitted)
        identity, body = admitted
        stem = chat_runs(identity, body.id)
        if stem is None:
            return error_response(bad(_CHAT_ID_RULE))
        n = await self.latest(stem)
        if n:  # a chat continues only for whoever may read it
            denied = await self.runs.access.check_read(identity, f"{stem}-{n}")
            if denied is not None:
                return error_response(denied)
        lease = self.runs.lease(request, identity)
        if isinstance(lease, Error):
            return error_response(lease)
        with lease:
            if n:
                answered = await self._decide(identity, f"{stem}-{n}", body.messages[-1])
                if isinstance(answered, Error):
                    return error_response(answered)
                if answered is not None:  # the user's approval responses: the parked run goes on
                    return await self.stream(request, f"{stem}-{n}", lease, after=answered)
            for attempt in range(MAX_STARTS):
                run = to_run(body, agent, f"{stem}-{n + 1 + attempt}", owner=identity.subject)
                if isinstance(run, Error):
                    return error_response(run)
                reply = await self.client.start(run)
                if not isinstance(reply, Error):
                    return await self.stream(request, run.run_id, lease)
                if reply.code != ErrorCode.CONFLICT:
                    return error_response(reply)
        return error_response(Error(code=ErrorCode.CONFLICT, message=f"chat {body.id} is busy: try again"))

    async def resume(self, request: web.Request) -> web.StreamResponse:
        found = await self._chat_run(request)
        if isinstance(found, web.Response):
            return found
        identity, run_id = found
        if run_id is None:
            return web.Response(status=204)
        last = await self.client.log.last(run_id)
        if last is None or is_terminal(last):
            return web.Response(status=204)
        lease = self.runs.lease(request, identity)
        if isinstance(lease, Error):
            return error_response(lease)
        with lease:
            async with resume_span(self.client.log, run_id, 0, "ai_sdk"):
                return await self.stream(request, run_id, lease)

    async def stop(self, request: web.Request) -> web.Response:
        found = await self._chat_run(request)
        if isinstance(found, web.Response):
            return found
        _, run_id = found
        if run_id is None:
            return error_response(Error(code=ErrorCode.NOT_FOUND, message="the chat has no run"))
        reply = await self.client.cancel(run_id, "stopped by the client")
        stopping = not isinstance(reply, Error)
        return web.json_response({"chat_id": request.match_info["chat_id"], "run_id": run_id, "stopping": stopping},
                                 status=202 if stopping else 200)

    async def _decide(self, identity: Identity, run_id: str, last: UiMessage) -> int | Error | None:
        """Send the approval responses ``last`` (the assistant message) holds for calls the run waits on; the seq
        to continue its stream after (its last answered request), None if it holds none, or the typed error."""
        if last.role != "assistant":
            return None
        after: int | None = None
        for part in last.parts:
            if part.state != "approval-responded" or part.approval is None or part.approval.approved is None:
                continue
            requested, decided = await self.client.approval_request(run_id, part.approval.id)
            if not isinstance(requested, ApprovalRequested):
                continue
            after = max(after or 0, requested.seq)
            if decided:
                continue  # sent again, or decided elsewhere: the stream shows the decision
            reply = await self.approvals.decide(identity, run_id, part.approval.id, approved=part.approval.approved,
                                                message=part.approval.reason)
            if isinstance(reply, Error) and reply.code != ErrorCode.CONFLICT:
                return reply
        return after

    async def stream(self, request: web.Request, run_id: str, lease: StreamLease, *,
                     after: int = 0) -> web.StreamResponse:
        """The run from its first part (a resume replays the message from its start, as the SDK expects), or,
        ``after`` a seq, the message's continuation (a decision on its approvals). A run that waits for a decision
        ends the stream (``finish``) with its ``tool-approval-request``; the client's answer continues it. At the
        token's expiry an ``error`` part ends the stream, and the run goes on for a resume with a new token."""
        response = web.StreamResponse(headers=UI_STREAM_HEADERS)
        await response.prepare(request)
        gauge = self.runs.streams.labels(transport=TRANSPORT)
        counter = self.runs.delivered.labels(transport=TRANSPORT)
        gauge.inc()
        renderer = UiStreamRenderer(run_id)

        async def keepalive() -> None:
            await response.write(b": keepalive\n\n")

        try:
            async with lease.until_expiry(), contextlib.aclosing(
                    self.client.follow(run_id, on_idle=keepalive)) as events:
                async for event, _ in events:
                    parts = renderer.feed(event)
                    if event.seq <= after:
                        parts = [part for part in parts if isinstance(part, Start)]
                    waits = isinstance(event, ApprovalRequested) and event.seq > after and not (
                        await self.client.approval_request(run_id, event.call_id))[1]
                    if waits:
                        parts += renderer.parked()
                    out = b"".join(b"data: %s\n\n" % ui_encoder.encode(part) for part in parts)
                    if is_terminal(event) or waits:
                        out += DONE
                    if out:
                        await response.write(out)
                        counter.inc()
                    if waits:
                        break
        except TimeoutError:
            if not lease.expired:
                raise
            end = ErrorPart(error_text=lease.error().message)
            with contextlib.suppress(ConnectionResetError, ConnectionError):
                await response.write(b"data: %s\n\n" % ui_encoder.encode(end) + DONE)
        except (ConnectionResetError, ConnectionError):
            pass  # the run goes on: the client resumes with GET …/{chat_id}/stream
        finally:
            gauge.dec()
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write_eof()
        return response
