"""AG-UI endpoint per agent (``POST /v1/ag-ui/{agent}``, what ``@ag-ui/client``'s ``HttpAgent`` posts): the run's
events as AG-UI events; the client's ``tools`` are frontend tools whose calls end the run for the client to answer."""

from __future__ import annotations

import contextlib
from typing import Final

import msgspec
from aiohttp import web

from proto.agui import RunAgentInput, RunErrorEvent, agui_encoder, run_agent_input_decoder
from proto.errors import Error, ErrorCode, error_encoder, http_status
from proto.runs import ChatMessage, ClientTool, RunRequest, ToolCallRecord, is_run_id
from services.gateway.agui_render import THREAD_KEY, AgUiRenderer
from services.gateway.quota import StreamLease
from services.gateway.runs_http import SSE_HEADERS, RunRoutes
from shared.clients.runs import RunClient

_ROLES: Final = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
TRANSPORT: Final = "ag-ui"


def error_response(error: Error) -> web.Response:
    return web.Response(status=http_status(error.code), body=error_encoder.encode(error),
                        content_type="application/json")


def bad(message: str) -> Error:
    return Error(code=ErrorCode.BAD_REQUEST, message=message)


def to_run(body: RunAgentInput, agent: str, *, owner: str | None) -> RunRequest | Error:
    """The input as a run: messages as the history (the last user message as input), context and state as
    instructions, tools as client tools."""
    if not is_run_id(body.run_id):
        return bad("runId must be 1-64 letters, digits, '_' or '-'")
    history: list[ChatMessage] = []
    for message in body.messages:
        if message.role == "tool":
            if not message.tool_call_id:
                return bad("a tool message needs its toolCallId")
            history.append(ChatMessage(role="tool", content=message.text, tool_call_id=message.tool_call_id))
            continue
        role = _ROLES.get(message.role)
        if role is None:
            continue  # activity and reasoning messages are the UI's own, not conversation
        calls = [ToolCallRecord(call_id=c.id, name=c.function.name, arguments=c.function.arguments)
                 for c in message.tool_calls or []]
        history.append(ChatMessage(role=role, content=message.text, tool_calls=calls))  # type: ignore[arg-type]
    if not history or history[-1].role not in ("user", "tool"):
        return bad("messages must end with a user message or a tool message")
    text = history.pop().content if history[-1].role == "user" else ""
    notes = [f"{c.description}: {c.value}" for c in body.context]
    if body.state not in (None, {}):
        notes.append("Shared state (JSON): " + msgspec.json.encode(body.state).decode())
    instructions = "Context from the application:\n" + "\n".join(f"- {note}" for note in notes) if notes else None
    tools = [ClientTool(name=t.name, description=t.description or None, parameters=t.parameters or {})
             for t in body.tools]
    return RunRequest(run_id=body.run_id, agent=agent, input=text, history=history, owner=owner,
                      metadata={THREAD_KEY: body.thread_id}, client_tools=tools, instructions=instructions)


class AgUiRoutes:
    """One AG-UI agent endpoint per platform agent. AG-UI clients cannot resume, so a client that disconnects
    (``abortRun``) cancels its run, as Chat Completions clients do."""

    def __init__(self, runs: RunRoutes) -> None:
        self.runs = runs
        for metric in (runs.streams, runs.delivered):
            metric.labels(transport=TRANSPORT)

    @property
    def client(self) -> RunClient:
        return self.runs.client

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/ag-ui/{agent}", self.run)]

    async def run(self, request: web.Request) -> web.StreamResponse:
        agent = request.match_info["agent"]
        admitted = await self.runs.admit_start(request, run_agent_input_decoder, "RunAgentInput", lambda _: agent)
        if isinstance(admitted, Error):
            return error_response(admitted)
        identity, body = admitted
        run = to_run(body, agent, owner=identity.subject)
        if isinstance(run, Error):
            return error_response(run)
        lease = self.runs.lease(request, identity)
        if isinstance(lease, Error):
            return error_response(lease)
        with lease:
            reply = await self.client.start(run)
            if isinstance(reply, Error):
                return error_response(reply)
            return await self.stream(request, run.run_id, lease)

    async def stream(self, request: web.Request, run_id: str, lease: StreamLease) -> web.StreamResponse:
        """The run as AG-UI events; at the token's expiry ``RUN_ERROR`` ends it and the run is cancelled."""
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        gauge = self.runs.streams.labels(transport=TRANSPORT)
        counter = self.runs.delivered.labels(transport=TRANSPORT)
        gauge.inc()
        renderer = AgUiRenderer(run_id)
        finished = False

        async def keepalive() -> None:
            await response.write(b": keepalive\n\n")

        try:
            async with lease.until_expiry(), contextlib.aclosing(
                    self.client.follow(run_id, on_idle=keepalive)) as events:
                async for event, _ in events:
                    out = b"".join(b"data: %s\n\n" % agui_encoder.encode(e) for e in renderer.feed(event))
                    if out:
                        await response.write(out)
                        counter.inc()
            finished = True
        except TimeoutError:
            if not lease.expired:
                raise
            expired = lease.error()
            end = RunErrorEvent(message=expired.message, code=expired.code.value)
            with contextlib.suppress(ConnectionResetError, ConnectionError):
                await response.write(b"data: %s\n\n" % agui_encoder.encode(end))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            gauge.dec()
            if not finished:
                with contextlib.suppress(Exception):
                    await self.client.cancel(run_id, "the AG-UI client disconnected")
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write_eof()
        return response
