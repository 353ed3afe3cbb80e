"""MCP servers as tools (the official ``mcp`` SDK): one kept connection per server, its tool list cached."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from functools import partial
from typing import Any, Final

import httpx2
import mcp_types
import msgspec
from mcp import Client, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from proto.runs import is_agent_name
from shared.errors import ToolError
from shared.runs.mcp_config import McpServerSpec
from shared.runs.tools import ProgressSink, Tool, current_tool_call

log = logging.getLogger("raaf.mcp")
_encoder: Final = msgspec.json.Encoder()
_CLIENT_INFO: Final = mcp_types.Implementation(name="raaf-agent-runner", version="1")
_MIN_RECONNECT_DELAY: Final = 0.1
_SSE_READ_TIMEOUT: Final = 300.0  # the SDK's default read timeout of a (quiet) server event stream


class McpServer:
    """Keeps one MCP server connected from its own task (reconnecting with backoff) and offers its tools.

    The handshake-era protocol (``mode="legacy"``) is spoken: it carries ``notifications/tools/list_changed``
    (the cache is refetched on it) and ``notifications/cancelled`` (sent when a call's task is cancelled), and
    servers of the 2026 protocol answer it as well.
    """

    def __init__(self, spec: McpServerSpec, *, reconnect_delay: float = 30.0) -> None:
        self.spec = spec
        self.reconnect_delay = reconnect_delay
        # Until the first list arrives, the allow-listed tools by name: a call then says the server is down.
        self._tools: dict[str, Tool] = {tool.name: tool for tool in map(self._placeholder, spec.config.tools or [])}
        self._client: Client | None = None
        self._ready = asyncio.Event()  # set while connected, with the tool list fetched
        self._tried = asyncio.Event()  # the first connection attempt ended (either way)
        self._wanted = asyncio.Event()  # a call waits for the connection: try again now, not after the backoff
        self._wake = asyncio.Event()  # the serving loop has something to do: refetch tools, or reconnect
        self._stale = False  # the server said its tool list changed
        self._lost = False  # a call found the connection broken
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.refreshes = 0  # tool lists fetched (one per connection, plus one per list change)
        self._listed = asyncio.Condition()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The allowed tools the server lists, by the name the model sees; while disconnected the last list
        (a call then answers that the server is unavailable)."""
        return self._tools

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep_connected(), name=f"mcp:{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_tried(self) -> None:
        """Until the first connection attempt succeeded or failed (bounded by the connect timeout)."""
        await self._tried.wait()

    async def wait_listed(self, more_than: int) -> None:
        """Until more than ``more_than`` tool lists were fetched (``refreshes``)."""
        async with self._listed:
            await self._listed.wait_for(lambda: self.refreshes > more_than)

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    # ---- the connection ----------------------------------------------------------------------------------

    def _client_for(self, http: httpx2.AsyncClient | None) -> Client:
        config = self.spec.config
        if config.url is not None:
            target: Any = streamable_http_client(config.url, http_client=http)
        else:
            assert config.command is not None
            target = StdioServerParameters(command=config.command, args=list(config.args), cwd=config.cwd,
                                           env=dict(self.spec.env) or None)
        return Client(target, mode="legacy", message_handler=self._on_message, client_info=_CLIENT_INFO,
                      cache=None)

    async def _keep_connected(self) -> None:
        delay = _MIN_RECONNECT_DELAY
        while True:
            try:
                await self._connect_and_serve()
                delay = _MIN_RECONNECT_DELAY
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the SDK raises what its transport raises: anything may come here
                self.last_error = _describe(exc)
                log.warning("MCP server %s: %s; reconnecting in %.1f s", self.name, self.last_error, delay)
            finally:
                self._ready.clear()
                self._client = None
                self._tried.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wanted.wait()
            self._wanted.clear()
            delay = min(delay * 2, self.reconnect_delay)

    async def _connect_and_serve(self) -> None:
        spec = self.spec
        async with contextlib.AsyncExitStack() as stack:
            http = None
            if spec.config.url is not None:
                http = await stack.enter_async_context(httpx2.AsyncClient(
                    headers=dict(spec.headers), timeout=httpx2.Timeout(spec.connect_timeout, read=_SSE_READ_TIMEOUT)))
            client = self._client_for(http)
            try:
                async with asyncio.timeout(spec.connect_timeout):
                    await stack.enter_async_context(client)
                    self._stale = self._lost = False
                    await self._refresh(client)
            except TimeoutError:
                raise TimeoutError(f"no answer within {spec.connect_timeout:g} s (MCP_CONNECT_TIMEOUT)") from None
            self._client = client
            self._ready.set()
            self._tried.set()
            self.last_error = None
            log.info("MCP server %s connected (%s): tools %s", self.name, spec.config.transport,
                     ", ".join(sorted(self._tools)) or "none")
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._lost:
                    raise ConnectionError(self.last_error or "the connection broke")
                if self._stale:
                    self._stale = False
                    async with asyncio.timeout(spec.connect_timeout):
                        await self._refresh(client)

    async def _refresh(self, client: Client) -> None:
        """Fetch the whole tool list (every page) and keep the allowed tools."""
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        allowed = self.spec.config.tools
        tools: dict[str, Tool] = {}
        for remote in listed:
            if allowed is not None and remote.name not in allowed:
                continue
            tool = self._tool(remote)
            if tool is not None:
                tools[tool.name] = tool
        self._tools = tools
        self.refreshes += 1
        async with self._listed:
            self._listed.notify_all()

    def _placeholder(self, remote_name: str) -> Tool:
        return Tool(name=self.spec.config.prefix + remote_name, description=f"(from MCP server {self.name})",
                    parameters={"type": "object"}, function=partial(self.call, remote_name), arguments=None,
                    requires_approval=self.spec.config.requires_approval(remote_name))

    def _tool(self, remote: mcp_types.Tool) -> Tool | None:
        config = self.spec.config
        name = config.prefix + remote.name
        if not is_agent_name(name):
            log.warning("MCP server %s: tool %r cannot be offered as %r; skipped", self.name, remote.name, name)
            return None
        parameters = dict(remote.input_schema) or {"type": "object", "properties": {}}
        return Tool(name=name, description=remote.description or remote.title or "", parameters=parameters,
                    function=partial(self.call, remote.name), arguments=None,
                    requires_approval=config.requires_approval(remote.name))

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._stale = True
            self._wake.set()

    # ---- calls -------------------------------------------------------------------------------------------

    async def call(self, remote_name: str, /, **arguments: Any) -> str:
        """Call the server's tool ``remote_name``; a tool error (``ToolError``) for anything but a result.

        Runs in the run's task: cancelling it cancels the call, and the SDK tells the server
        (``notifications/cancelled``). Progress notifications go to the call's progress sink."""
        spec = self.spec
        if not self.connected:
            self._wanted.set()
        if not await self.wait_connected(spec.connect_timeout):
            reason = f": {self.last_error}" if self.last_error else ""
            raise ToolError(f"MCP server {self.name} is unavailable{reason}")
        client = self._client
        if client is None:
            raise ToolError(f"MCP server {self.name} is unavailable")
        context = current_tool_call()
        try:
            async with asyncio.timeout(spec.call_timeout):
                result = await _call_reporting(client, remote_name, arguments,
                                               None if context is None else context.progress)
        except TimeoutError:
            raise ToolError(f"MCP server {self.name}: {remote_name} did not answer within "
                            f"{spec.call_timeout:g} s (MCP_CALL_TIMEOUT)") from None
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self._broken(exc)
            raise ToolError(f"MCP server {self.name}: {exc}") from None
        except _ProgressFailed as failed:
            raise failed.error from None
        except (ToolError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self._broken(exc)
            raise ToolError(f"MCP server {self.name} is unavailable: {_describe(exc)}") from None
        text = _text_of(result)
        if result.is_error:
            raise ToolError(text or f"{remote_name} failed")
        return text

    def _broken(self, exc: BaseException) -> None:
        self.last_error = _describe(exc)
        self._lost = True
        self._wake.set()


class _ProgressFailed(Exception):
    """The progress sink raised (the run's event could not be stored); the connection is fine."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _call_reporting(client: Client, name: str, arguments: dict[str, Any],
                          sink: ProgressSink | None) -> mcp_types.CallToolResult:
    """``client.call_tool``, forwarding its progress from this task (not the SDK's receive loop), the latest
    value only when they come faster than they are stored."""
    if sink is None:
        return await client.call_tool(name, arguments)
    latest: list[tuple[float, float | None, str | None]] = []
    news = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        latest[:] = [(progress, total, message)]
        news.set()

    call = asyncio.ensure_future(client.call_tool(name, arguments, progress_callback=on_progress))
    try:
        while True:
            waiter = asyncio.ensure_future(news.wait())
            try:
                await asyncio.wait({call, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if call.done():
                return call.result()
            news.clear()
            if latest:
                try:
                    await sink(*latest.pop())
                except Exception as exc:  # storing the event failed: not the server's fault
                    raise _ProgressFailed(exc) from exc
    finally:
        if not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call


def _text_of(result: mcp_types.CallToolResult) -> str:
    """A tool result as the text the model reads: its text blocks; other blocks by what they are."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            inner = block.resource
            parts.append(inner.text if isinstance(inner, mcp_types.TextResourceContents)
                         else f"[resource {inner.uri} ({inner.mime_type or 'binary'})]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link {block.uri}]")
        else:
            parts.append(f"[{block.type} ({getattr(block, 'mime_type', '')})]")
    if not parts and result.structured_content is not None:
        return _encoder.encode(result.structured_content).decode()
    return "\n".join(parts)


def _describe(exc: BaseException) -> str:
    """An exception as one line; an exception group by its first leaf (anyio wraps transport failures)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
