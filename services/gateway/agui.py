"""AG-UI endpoint per agent (``POST /v1/ag-ui/{agent}``, what ``@ag-ui/client``'s ``HttpAgent`` posts): the run's
events as AG-UI events; the client's ``tools`` are frontend tools whose calls end the run for the client to answer;
a wait for approval ends the AG-UI run with an interrupt, and the client's ``resume`` decides and goes on."""

from __future__ import annotations

import contextlib
from typing import Any, Final

import msgspec
from aiohttp import web

from proto.agui import AgResumeEntry, RunAgentInput, RunErrorEvent, agui_encoder, run_agent_input_decoder
from proto.errors import Error, ErrorCode, error_encoder, http_status
from proto.runs import ApprovalRequested, ChatMessage, ClientTool, RunRequest, ToolCallRecord, is_run_id
from services.gateway.agui_render import THREAD_KEY, AgUiRenderer, parse_interrupt_id
from services.gateway.approvals import ApprovalRoutes
from services.gateway.quota import StreamLease
from services.gateway.runs_http import SSE_HEADERS, RunRoutes
from shared.clients.runs import RunClient
from shared.identity import Identity

_ROLES: Final = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
TRANSPORT: Final = "ag-ui"
DISMISSED: Final = "The user dismissed the approval request; the tool call was not run."


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


def to_decision(entry: AgResumeEntry) -> tuple[bool, str | None, dict[str, Any] | None] | Error:
    """A resume entry as (approved, message, edited arguments): the payload is ``true`` / ``false`` or
    ``{"approved": ..., "message": ..., "editedArgs": {...}}``; a ``cancelled`` entry is a rejection."""
    if entry.status == "cancelled":
        return False, DISMISSED, None
    payload = entry.payload
    if isinstance(payload, bool):
        return payload, None, None
    if not isinstance(payload, dict) or not isinstance(payload.get("approved"), bool):
        return bad(f"resume of {entry.interrupt_id}: the payload is true, false or {{\"approved\": ...}}")
    message = payload.get("message", payload.get("reason"))
    edited = payload.get("editedArgs", payload.get("arguments"))
    if (message is not None and not isinstance(message, str)) or (edited is not None and not isinstance(edited, dict)):
        return bad(f"resume of {entry.interrupt_id}: message is a string and editedArgs an object")
    return payload["approved"], message, edited


class AgUiRoutes:
    """One AG-UI agent endpoint per platform agent. AG-UI clients cannot resume, so a client that disconnects
    (``abortRun``) cancels its run, as Chat Completions clients do."""

    def __init__(self, runs: RunRoutes) -> None:
        self.runs = runs
        self.approvals = ApprovalRoutes(runs)
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
        if body.resume:
            return await self.resume(request, identity, body)
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

    async def resume(self, request: web.Request, identity: Identity, body: RunAgentInput) -> web.StreamResponse:
        """Decide the interrupts ``body.resume`` answers (one run's, ``shared.access.check_decide`` each) and
        stream the run on from the last of them, as the new AG-UI run ``body.run_id``."""
        if not is_run_id(body.run_id):
            return error_response(bad("runId must be 1-64 letters, digits, '_' or '-'"))
        targets = [parse_interrupt_id(entry.interrupt_id) for entry in body.resume]
        runs = {target[0] for target in targets if target is not None}
        if None in targets or len(runs) != 1:
            return error_response(bad("resume answers the interrupts of one run, by the ids its RUN_FINISHED gave"))
        run_id = runs.pop()
        denied = await self.runs.access.check_read(identity, run_id)
        if denied is not None:
            return error_response(denied)
        lease = self.runs.lease(request, identity)
        if isinstance(lease, Error):
            return error_response(lease)
        with lease:
            after = 0
            for entry, target in zip(body.resume, targets, strict=True):
                assert target is not None
                decision = to_decision(entry)
                if isinstance(decision, Error):
                    return error_response(decision)
                requested, decided = await self.client.approval_request(run_id, target[1])
                if requested is None:
                    return error_response(Error(code=ErrorCode.NOT_FOUND, ref=run_id,
                                                message=f"run {run_id} asked no approval of {target[1]}"))
                after = max(after, requested.seq)
                if decided:
                    continue  # answered twice, or decided elsewhere: the stream shows the decision
                approved, message, edited = decision
                reply = await self.approvals.decide(identity, run_id, target[1], approved=approved, message=message,
                                                    arguments=edited)
                if isinstance(reply, Error) and reply.code != ErrorCode.CONFLICT:
                    return error_response(reply)
            return await self.stream(request, run_id, lease, after=after, resumed=(body.run_id, body.thread_id))

    async def stream(self, request: web.Request, run_id: str, lease: StreamLease, *, after: int = 0,
                     resumed: tuple[str, str] | None = None) -> web.StreamResponse:
        """The run as AG-UI events; at the token's expiry ``RUN_ERROR`` ends it and the run is cancelled. A wait
        for decisions ends the stream with an ``interrupt`` outcome; the run waits, parked. ``after`` a seq (a
        resume, ``resumed`` = its AG-UI run and thread ids), the events from there on, as a new AG-UI run."""
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        gauge = self.runs.streams.labels(transport=TRANSPORT)
        counter = self.runs.delivered.labels(transport=TRANSPORT)
        gauge.inc()
        renderer = AgUiRenderer(run_id)
        waiting: list[ApprovalRequested] = []
        finished = False

        async def keepalive() -> None:
            await response.write(b": keepalive\n\n")

        try:
            async with lease.until_expiry(), contextlib.aclosing(
                    self.client.follow(run_id, on_idle=keepalive)) as events:
                async for event, _ in events:
                    rendered = renderer.feed(event)
                    if event.seq <= after:
                        continue  # the interrupted AG-UI run showed these
                    if resumed is not None:
                        rendered = renderer.resumed(*resumed) + rendered
                        resumed = None
                    asked = await self.client.turn_waits(run_id, event, waiting) \
                        if isinstance(event, ApprovalRequested) else None
                    if asked is not None:  # every call of the turn that waits: the AG-UI run ends here
                        rendered += renderer.interrupt(asked)
                    out = b"".join(b"data: %s\n\n" % agui_encoder.encode(e) for e in rendered)
                    if out:
                        await response.write(out)
                        counter.inc()
                    if asked is not None:
                        break
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
