"""The gateway's runs extension: HTTP routes, and ``agent_stream`` / ``resume`` / ``cancel`` / ``run_decide`` over
WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from aiohttp import web

from proto.approvals import RunDecide
from proto.errors import Error, ErrorCode
from proto.runs import AgentStream, CancelRunStream, ResumeRun, is_run_id
from services.gateway.agui import AgUiRoutes
from services.gateway.approvals import ApprovalRoutes
from services.gateway.connection import Connection
from services.gateway.context import GatewayContext
from services.gateway.errors import too_many_run_streams
from services.gateway.extension import Handlers
from services.gateway.openai_responses import ResponsesRoutes
from services.gateway.openai_routes import ChatCompletionRoutes
from services.gateway.resume_trace import resume_span
from services.gateway.runs_http import RunRoutes, run_request
from services.gateway.runs_settings import RunRouteSettings
from services.gateway.ui_chat import UiChatRoutes
from shared.clients.runs import RunClient
from shared.tracing import TRACING, traced

log = logging.getLogger("raaf.gateway.runs")


class RunsExtension:
    """Starts runs for clients and streams their events: SSE and REST, the OpenAI-compatible API, WebSocket.

    A WebSocket connection follows each of its runs in a task it owns; the tasks stop when the client
    leaves, the runs do not (the client may ``resume`` them, on any gateway, by run id and last seq).
    """

    name = "runs"

    def __init__(self, ctx: GatewayContext, settings: RunRouteSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or ctx.settings.runs
        self.http = RunRoutes(self.settings, ctx.metrics, ctx.authenticator, quota=ctx.stream_quota,
                              max_json_depth=ctx.settings.max_json_depth)
        self.openai = ChatCompletionRoutes(self.http)
        self.responses = ResponsesRoutes(self.http)
        self.ui_chat = UiChatRoutes(self.http)
        self.agui = AgUiRoutes(self.http)
        self.approvals = ApprovalRoutes(self.http)
        self.access = self.http.access
        self._follows: dict[str, dict[str, asyncio.Task[None]]] = {}
        self.handles: Handlers = {AgentStream: traced("raaf.gateway", "agent_stream")(self._agent_stream),
                                  ResumeRun: self._resume,
                                  CancelRunStream: traced("raaf.gateway", "cancel_run")(self._cancel),
                                  RunDecide: self.approvals.on_message}

    @property
    def client(self) -> RunClient:
        return self.http.client

    def routes(self) -> list[web.RouteDef]:
        return [*self.http.routes(), *self.openai.routes(), *self.responses.routes(), *self.ui_chat.routes(),
                *self.agui.routes(), *self.approvals.routes()]

    async def start(self) -> None:
        ctx = self.ctx
        self.http.bind(RunClient(ctx.nc, ctx.js, ctx.subjects,
                                 request_timeout=self.settings.request_timeout, idle_check=self.settings.idle_check,
                                 orphan_grace=self.settings.orphan_grace))

    async def stop(self) -> None:
        self._follows.clear()  # the connections' own tasks; the core cancels them with the connections

    async def on_disconnect(self, conn: Connection) -> None:
        self._follows.pop(conn.id, None)

    async def on_reauth(self, conn: Connection) -> None:
        for run_id, task in list(self._follows.get(conn.id, {}).items()):
            if await self.access.check_read(conn.identity, run_id, "follow") is not None:
                task.cancel()  # the token that let it follow this run (an admin's) was replaced

    # ---- messages ----------------------------------------------------------------------------------------

    async def _agent_stream(self, conn: Connection, message: AgentStream) -> None:
        await self.access.check_start(conn.identity, message.agent, message.agents)
        self._check_room(conn, None)
        run = run_request(message, conn.identity)
        if isinstance(run, Error):
            await conn.send_error(run.code, run.message, message.id)
            return
        reply = await self.client.start(run)
        if isinstance(reply, Error):
            await conn.send_error(reply.code, reply.message, message.id or run.run_id)
            return
        await conn.send(msgspec.structs.replace(reply, ref=message.id))
        self._follow(conn, run.run_id, 0)

    async def _resume(self, conn: Connection, message: ResumeRun) -> None:
        """A resume in a ``resume_run`` span of its own trace, with a Link to the run's span (while tracing is on)."""
        if not TRACING.on:
            await self._resume_run(conn, message)
            return
        async with resume_span(self.client.log, message.run_id, message.last_seq, "websocket"):
            await self._resume_run(conn, message)

    async def _resume_run(self, conn: Connection, message: ResumeRun) -> None:
        ref = message.id or message.run_id
        if not is_run_id(message.run_id) or message.last_seq < 0:
            await conn.send_error(ErrorCode.BAD_REQUEST, "resume needs a run id and a last_seq >= 0", ref)
            return
        denied = await self.access.check_read(conn.identity, message.run_id, "resume")
        if denied is not None:
            await conn.send_error(denied.code, denied.message, ref)
            return
        self._check_room(conn, message.run_id)
        self._follow(conn, message.run_id, message.last_seq)

    async def _cancel(self, conn: Connection, message: CancelRunStream) -> None:
        ref = message.id or message.run_id
        if not is_run_id(message.run_id):
            await conn.send_error(ErrorCode.BAD_REQUEST, "not a run id", ref)
            return
        denied = await self.access.check_read(conn.identity, message.run_id, "cancel")
        if denied is not None:
            await conn.send_error(denied.code, denied.message, ref)
            return
        reply = await self.client.cancel(message.run_id, message.reason[:200])
        if isinstance(reply, Error):
            await conn.send_error(reply.code, reply.message, ref)
        else:
            await conn.send(reply)

    # ---- following runs ------------------------------------------------------------------------------------

    def _check_room(self, conn: Connection, run_id: str | None) -> None:
        following = self._follows.get(conn.id, {})
        if run_id not in following and len(following) >= self.settings.max_streams_per_connection:
            raise too_many_run_streams(self.settings.max_streams_per_connection)

    def _follow(self, conn: Connection, run_id: str, after: int) -> None:
        follows = self._follows.setdefault(conn.id, {})
        previous = follows.pop(run_id, None)
        if previous is not None:
            previous.cancel()  # a resume replaces the stream it repeats
        follows[run_id] = conn.spawn(self._pump(conn, run_id, after, previous), name=f"run:{run_id}")

    async def _pump(self, conn: Connection, run_id: str, after: int, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        gauge = self.http.streams.labels(transport="websocket")
        counter = self.http.delivered.labels(transport="websocket")
        gauge.inc()
        try:
            # As stored, types this version does not know included: the client sees every seq, no gap.
            async with contextlib.aclosing(self.client.follow_as_stored(run_id, after)) as events:
                async for _, raw in events:
                    if not await conn.send(raw):  # closed, or cut off as a slow consumer: it can resume
                        break
                    counter.inc()
        except Exception as exc:
            log.warning("stopped following %s for %s: %s", run_id, conn.id, exc)
        finally:
            gauge.dec()
            follows = self._follows.get(conn.id)
            if follows is not None and follows.get(run_id) is asyncio.current_task():
                del follows[run_id]
