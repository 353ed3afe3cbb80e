"""The gateway's runs extension: HTTP routes, and ``agent_stream`` / ``resume`` / ``cancel`` over WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import msgspec
from aiohttp import web

from proto.base import Message
from proto.errors import Error, ErrorCode
from proto.runs import AgentStream, CancelRunStream, ResumeRun, is_run_id
from services.gateway.openai_routes import ChatCompletionRoutes
from services.gateway.runs_http import RunRoutes, run_request
from services.gateway.runs_settings import RunRouteSettings
from shared.app import App
from shared.runclient import RunClient

log = logging.getLogger("raaf.gateway.runs")


class RunConnection(Protocol):
    """What the extension needs of a WebSocket connection."""

    @property
    def id(self) -> str: ...

    async def send_raw(self, data: bytes) -> None:
        """Send one already-encoded JSON message (run events are forwarded as stored, never re-encoded)."""

    async def send_message(self, message: Message) -> None: ...

    async def send_error(self, error: Error) -> None: ...


class RunsExtension:
    """Starts runs for clients and streams their events: SSE and REST, the OpenAI-compatible API, WebSocket.

    A WebSocket connection follows each of its runs in a task of its own; the tasks stop when the client
    leaves, the runs do not (the client may ``resume`` them, from any gateway, by run id and last seq).
    """

    name = "runs"

    def __init__(self, gateway: App, settings: RunRouteSettings | None = None) -> None:
        self.gateway = gateway
        self.settings = settings or RunRouteSettings.from_env()
        self.http = RunRoutes(self.settings, gateway.metrics.registry)
        self.openai = ChatCompletionRoutes(self.http)
        self._follows: dict[str, dict[str, asyncio.Task[None]]] = {}

    @property
    def client(self) -> RunClient:
        return self.http.client

    def routes(self) -> list[web.RouteDef]:
        return [*self.http.routes(), *self.openai.routes()]

    async def start(self, gateway: App) -> None:
        self.http.bind(RunClient(gateway.nc, gateway.js, gateway.subjects,
                                 request_timeout=self.settings.request_timeout, idle_check=self.settings.idle_check))

    async def stop(self) -> None:
        tasks = [task for follows in self._follows.values() for task in follows.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._follows.clear()

    async def handle(self, conn: RunConnection, message: object) -> bool:
        """Handle a decoded client message if it is about runs; False leaves it to others."""
        match message:
            case AgentStream():
                await self._agent_stream(conn, message)
            case ResumeRun():
                await self._resume(conn, message)
            case CancelRunStream():
                await self._cancel(conn, message)
            case _:
                return False
        return True

    async def on_disconnect(self, conn: RunConnection) -> None:
        for task in self._follows.pop(conn.id, {}).values():
            task.cancel()

    # ---- messages ----------------------------------------------------------------------------------------

    async def _agent_stream(self, conn: RunConnection, message: AgentStream) -> None:
        if not self._room_for(conn):
            await conn.send_error(self._too_many(message.ref))
            return
        run = run_request(message)
        if isinstance(run, Error):
            await conn.send_error(run)
            return
        reply = await self.client.start(run)
        if isinstance(reply, Error):
            await conn.send_error(Error(code=reply.code, message=reply.message, ref=message.ref or run.run_id))
            return
        await conn.send_message(msgspec.structs.replace(reply, ref=message.ref))
        self._follow(conn, run.run_id, 0)

    async def _resume(self, conn: RunConnection, message: ResumeRun) -> None:
        ref = message.ref or message.run_id
        if not is_run_id(message.run_id) or message.last_seq < 0:
            await conn.send_error(Error(code=ErrorCode.BAD_REQUEST, message="resume needs a run id and a seq >= 0",
                                        ref=ref))
            return
        if not await self.client.exists(message.run_id):
            await conn.send_error(Error(code=ErrorCode.NOT_FOUND, message=f"no run {message.run_id}", ref=ref))
            return
        following = self._follows.get(conn.id, {})
        if message.run_id not in following and not self._room_for(conn):
            await conn.send_error(self._too_many(ref))
            return
        self._follow(conn, message.run_id, message.last_seq)

    async def _cancel(self, conn: RunConnection, message: CancelRunStream) -> None:
        ref = message.ref or message.run_id
        if not is_run_id(message.run_id):
            await conn.send_error(Error(code=ErrorCode.BAD_REQUEST, message="not a run id", ref=ref))
            return
        reply = await self.client.cancel(message.run_id, message.reason[:200])
        if isinstance(reply, Error):
            await conn.send_error(Error(code=reply.code, message=reply.message, ref=ref))
        else:
            await conn.send_message(reply)

    # ---- following runs ------------------------------------------------------------------------------------

    def _room_for(self, conn: RunConnection) -> bool:
        return len(self._follows.get(conn.id, {})) < self.settings.max_streams_per_connection

    def _too_many(self, ref: str | None) -> Error:
        return Error(code=ErrorCode.LIMIT_EXCEEDED, ref=ref, message=f"this connection already follows "
                     f"{self.settings.max_streams_per_connection} runs (GATEWAY_RUN_MAX_STREAMS_PER_CONNECTION)")

    def _follow(self, conn: RunConnection, run_id: str, after: int) -> None:
        follows = self._follows.setdefault(conn.id, {})
        previous = follows.pop(run_id, None)
        if previous is not None:
            previous.cancel()  # a resume replaces the stream it repeats
        follows[run_id] = asyncio.create_task(self._pump(conn, run_id, after, previous),
                                              name=f"gateway:run:{conn.id}:{run_id}")

    async def _pump(self, conn: RunConnection, run_id: str, after: int, previous: asyncio.Task[None] | None
                    ) -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous
        gauge = self.http.streams.labels(transport="websocket")
        counter = self.http.delivered.labels(transport="websocket")
        gauge.inc()
        try:
            async for _, raw in self.client.follow(run_id, after):
                await conn.send_raw(raw)
                counter.inc()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("stopped following %s for %s: %s", run_id, conn.id, exc)
        finally:
            gauge.dec()
            follows = self._follows.get(conn.id)
            if follows is not None and follows.get(run_id) is asyncio.current_task():
                del follows[run_id]
