"""A real MCP server for the tests (the SDK's own MCPServer): over Streamable HTTP in-process, or over stdio.

``python -m tests.mcp_servers`` serves it over stdio (what an agent's ``command`` starts)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


@dataclass
class Record:
    """What the server saw, with events to wait on."""

    calls: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    notifications: list[str] = field(default_factory=list)  # methods of the client's notifications
    cancel_notified: asyncio.Event = field(default_factory=asyncio.Event)  # a notifications/cancelled came


def build_server(record: Record | None = None, *, can_die: bool = False) -> MCPServer:
    """Tools: ``lookup`` (answers), ``slow`` (reports progress; records a cancellation), ``grow`` (adds the
    tool ``extra`` and says the list changed), ``secret`` (for allow-lists to hide), ``fail`` (a tool error);
    with ``can_die`` (a stdio child only) ``die``, which ends the server's process."""
    record = record or Record()

    async def observe(ctx: Any, call_next: Any) -> Any:
        """Middleware: record every notification the client sends (``notifications/cancelled`` ...)."""
        if ctx.request_id is None:
            record.notifications.append(ctx.method)
            if ctx.method == "notifications/cancelled":
                record.cancel_notified.set()
        return await call_next(ctx)

    server = MCPServer("raaf-test-mcp", middleware=[observe])

    @server.tool()
    def lookup(city: str, ctx: Context) -> str:
        """Look up the weather of a city."""
        record.calls.append(f"lookup:{city}")
        record.headers.append(dict(ctx.headers or {}))
        return f"{city}: 7 C and drizzle"

    @server.tool()
    async def slow(steps: int, ctx: Context) -> str:
        """Work for ``steps`` tenths of a second, reporting progress."""
        record.calls.append("slow")
        record.slow_started.set()
        try:
            for step in range(steps):
                await ctx.report_progress(step + 1, steps, f"step {step + 1} of {steps}")
                await anyio.sleep(0.1)
        except anyio.get_cancelled_exc_class():
            record.slow_cancelled.set()
            raise
        return f"finished {steps} steps"

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Add the tool ``extra``."""
        def extra(x: int) -> int:
            """Double a number."""
            return 2 * x

        server.add_tool(extra)
        await ctx.session.send_tool_list_changed()
        return "grown"

    @server.tool()
    def secret() -> str:
        """Must stay hidden behind an allow-list."""
        record.calls.append("secret")
        return "the secret"

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails (a tool error: the result says ``isError``)."""
        raise ToolError(reason)

    if can_die:
        @server.tool()
        def die() -> str:
            """End the server's process at once."""
            os._exit(3)

    return server


def listening_socket(port: int = 0) -> socket.socket:
    """A loopback socket already listening: connections queue before the server runs (no start-up race)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


@dataclass
class RunningServer:
    url: str
    record: Record
    server: MCPServer
    port: int


@asynccontextmanager
async def http_mcp_server(port: int = 0) -> AsyncIterator[RunningServer]:
    """The test server over Streamable HTTP on a loopback port (a free one by default), in this event loop."""
    record = Record()
    server = build_server(record)
    sock = listening_socket(port)
    port = sock.getsockname()[1]
    web = uvicorn.Server(uvicorn.Config(server.streamable_http_app(host="127.0.0.1"), log_level="warning",
                                        lifespan="on"))
    task = asyncio.create_task(web.serve(sockets=[sock]))
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}/mcp", record=record, server=server, port=port)
    finally:
        web.should_exit = True
        web.force_exit = True
        await task
        sock.close()


if __name__ == "__main__":
    build_server(can_die=True).run("stdio")
