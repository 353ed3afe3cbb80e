"""``WebSocketClient``: the gateway's protocol from Python, reconnecting with backoff and re-subscribing.

::

    client = WebSocketClient("ws://localhost:8080/ws", token="...", auto_reconnect=True,
                             max_reconnect_attempts=5, reconnect_delay=2.0)

    @client.on_message
    def show(message: dict) -> None:
        print(message)

    await client.connect()
    await client.subscribe("general")
    await client.publish("general", {"text": "hello"})
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import msgspec

from proto.gateway import CloseCode
from shared.errors import ConnectionError as ClientConnectionError
from shared.errors import ProtocolError, connection_closed, error_for, error_from_wire
from shared.errors import TimeoutError as RequestTimeoutError

log = logging.getLogger("raaf.client")

Hook = Callable[..., Awaitable[None] | None]
H = TypeVar("H", bound=Hook)
# Close codes after which reconnecting cannot help (the same token would be refused again).
_FINAL_CLOSE_CODES = frozenset({CloseCode.UNAUTHORIZED})
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class WebSocketClient:
    """A connection to a gateway's ``/ws``; every method that waits for an answer raises typed errors."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        auto_reconnect: bool = True,
        max_reconnect_attempts: int | None = 5,
        reconnect_delay: float = 2.0,
        max_reconnect_delay: float = 30.0,
        request_timeout: float = 10.0,
        keepalive: float | None = 60.0,
        heartbeat: float | None = 30.0,
        compress: bool = True,
        headers: dict[str, str] | None = None,
        max_queue: int = 1000,
    ) -> None:
        self.url = url
        self.token = token
        self.auto_reconnect = auto_reconnect
        self.max_reconnect_attempts = max_reconnect_attempts  # None: keep trying forever
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.request_timeout = request_timeout
        self.keepalive = keepalive
        self.heartbeat = heartbeat
        self.compress = compress
        self.headers = headers or {}
        self.connection_id: str | None = None
        self.subject: str | None = None
        self.welcome: dict[str, Any] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}  # channel -> subscribe options, for reconnects
        self._hooks: dict[str, list[Hook]] = {"connect": [], "disconnect": [], "reconnect": [], "message": [],
                                              "restore": []}
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._runner: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._max_queue = max_queue
        self._closing = False
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.error: BaseException | None = None

    # ---- hooks (decorators or plain calls; sync or async) --------------------------------------

    def on_connect(self, fn: H) -> H:
        self._hooks["connect"].append(fn)
        return fn

    def on_disconnect(self, fn: H) -> H:
        self._hooks["disconnect"].append(fn)
        return fn

    def on_reconnect(self, fn: H) -> H:
        """Called with the attempt number (1, 2, ...) before each reconnection attempt."""
        self._hooks["reconnect"].append(fn)
        return fn

    def on_message(self, fn: H) -> H:
        """Called with every message from the gateway, as a dict."""
        self._hooks["message"].append(fn)
        return fn

    def add_restore_hook(self, fn: H) -> H:
        """Called after each reconnection, once auth and subscriptions are back (to resume streams)."""
        self._hooks["restore"].append(fn)
        return fn

    async def _fire(self, name: str, *args: Any) -> None:
        for hook in list(self._hooks[name]):  # a hook may remove itself (start_agent_stream)
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("client %s hook failed", name)

    # ---- connecting ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        """Connect, wait for ``welcome``, authenticate if a token is set; raises ConnectionError on failure."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._closing = False
        self._closed.clear()
        try:
            await self._open()
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        self._runner = asyncio.create_task(self._run(), name="raaf-client")
        await self._fire("connect")

    async def _open(self) -> None:
        assert self._session is not None
        try:
            ws = await self._session.ws_connect(self.url, headers=self.headers, heartbeat=self.heartbeat,
                                                compress=15 if self.compress else 0, autoping=True)
        except (aiohttp.ClientError, OSError) as exc:
            raise ClientConnectionError(f"cannot connect to {self.url}: {exc}") from None
        try:
            welcome = await self._first_message(ws)
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        self.welcome = welcome
        self.connection_id = welcome.get("connection_id")
        self.subject = welcome.get("subject")
        if self.keepalive:
            self._keepalive_task = asyncio.create_task(self._keep_alive(ws, self.keepalive))
        self._reader = asyncio.create_task(self._read(ws))
        if self.token is not None and self.subject is None:
            try:
                await self.authenticate(self.token)
            except BaseException:
                await ws.close()
                raise

    async def _first_message(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        try:
            msg = await ws.receive(timeout=self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError("no welcome from the gateway") from None
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise connection_closed(f"the gateway closed the connection ({ws.close_code})",
                                    close_code=ws.close_code, reason=str(msg.extra or ""))
        welcome = _decode(msg.data)
        if welcome.get("type") != "welcome":
            raise ProtocolError(f"expected welcome, got {welcome.get('type')!r}")
        return welcome

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                message = _decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("ignoring a message that is not a JSON object")
                continue
            ref = message.get("ref")
            waiter = self._pending.pop(ref, None) if isinstance(ref, str) else None
            if waiter is not None and not waiter.done():
                if message.get("type") == "error":
                    waiter.set_exception(error_from_wire(message))
                else:
                    waiter.set_result(message)
            await self._fire("message", message)
            if self._queue is not None:
                await self._queue.put(message)  # a full queue slows reading: TCP pushes back on the server

    async def _keep_alive(self, ws: aiohttp.ClientWebSocketResponse, every: float) -> None:
        """Application pings, so the gateway's idle timeout never closes a quiet listener."""
        while not ws.closed:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                await ws.send_str('{"type":"ping"}')

    async def _run(self) -> None:
        """Owns the connection: after a drop, reconnect with backoff, then restore state."""
        while True:
            if self._reader is not None:
                with contextlib.suppress(Exception):
                    await self._reader
            ws = self._ws
            self.close_code = ws.close_code if ws is not None else None
            self._drop(connection_closed(f"connection closed ({self.close_code})", close_code=self.close_code))
            await self._fire("disconnect")
            if self._closing or not self.auto_reconnect or self.close_code in _FINAL_CLOSE_CODES:
                break
            if not await self._reconnect():
                break
        self._closed.set()

    async def _reconnect(self) -> bool:
        attempt = 0
        while self.max_reconnect_attempts is None or attempt < self.max_reconnect_attempts:
            attempt += 1
            await self._fire("reconnect", attempt)
            await asyncio.sleep(self.backoff(attempt))
            if self._closing:
                return False
            try:
                await self._open()
                for channel, options in list(self.subscriptions.items()):
                    await self.request({"type": "subscribe", "channel": channel, **options})
            except Exception as exc:
                self.error = exc
                log.info("reconnect attempt %d failed: %s", attempt, exc)
                if self._ws is not None:
                    await self._ws.close()
                continue
            await self._fire("restore")
            await self._fire("connect")
            return True
        self.error = ClientConnectionError(f"gave up after {attempt} reconnection attempts")
        return False

    def backoff(self, attempt: int) -> float:
        """Exponential (``reconnect_delay`` doubling, capped) with jitter: 50-100% of the step."""
        step = min(self.max_reconnect_delay, self.reconnect_delay * 2.0 ** (attempt - 1))
        return step * random.uniform(0.5, 1.0)

    def _drop(self, error: BaseException) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(error)

    # ---- talking ------------------------------------------------------------------------------

    async def send_message(self, message: dict[str, Any]) -> str:
        """Send any message (an ``id`` is added if missing) without waiting for its answer; returns the id."""
        ws = self._ws
        if ws is None or ws.closed:
            raise ClientConnectionError("not connected")
        message = dict(message)
        message.setdefault("id", f"c{next(self._ids)}")
        await ws.send_str(msgspec.json.encode(message).decode())
        return str(message["id"])

    async def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send and wait for the answer carrying its id (``ack``, ``pong`` ...); an ``error`` is raised."""
        message = dict(message)
        ref = message.setdefault("id", f"c{next(self._ids)}")
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = waiter
        try:
            await self.send_message(message)
            return await asyncio.wait_for(waiter, timeout or self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError(f"no answer to {message.get('type')!r} within the timeout", ref=ref) from None
        finally:
            self._pending.pop(ref, None)

    async def authenticate(self, token: str) -> dict[str, Any]:
        reply = await self.request({"type": "auth", "token": token})
        self.token = token
        self.subject = reply.get("subject")
        return reply

    async def subscribe(self, channel: str, *, presence: bool = False, info: dict[str, str] | None = None) -> None:
        """Join ``channel``; it is joined again after every reconnection."""
        options: dict[str, Any] = {"presence": presence} if presence else {}
        if info:
            options["info"] = info
        await self.request({"type": "subscribe", "channel": channel, **options})
        self.subscriptions[channel] = options

    async def unsubscribe(self, channel: str) -> None:
        self.subscriptions.pop(channel, None)
        await self.request({"type": "unsubscribe", "channel": channel})

    async def publish(self, channel: str, data: Any) -> None:
        await self.request({"type": "publish", "channel": channel, "data": data})

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        reply = await self.request({"type": "presence", "channel": channel})
        return list(reply.get("members", []))

    async def ping(self) -> float:
        """Round-trip time of an application ping, in seconds."""
        # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds, once per loop iteration.
        started = time.perf_counter()
        await self.request({"type": "ping"})
        return time.perf_counter() - started

    async def start_agent_stream(self, agent: str, input: str, **fields: Any) -> AsyncIterator[dict[str, Any]]:
        """The seed's ``start_agent_stream``: run ``agent`` on ``input`` through the gateway and yield the run's
        events (dicts: ``run_text_delta`` carries ``delta`` ...) up to ``run_completed``; a failed or cancelled
        run raises its typed error. ``fields`` are further ``agent_stream`` fields (``history``, ``timeout`` ...)."""
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def collect(message: dict[str, Any]) -> None:
            if isinstance(message.get("run_id"), str) and isinstance(message.get("seq"), int):
                events.put_nowait(message)

        self._hooks["message"].append(collect)
        try:
            accepted = await self.request({"type": "agent_stream", "agent": agent, "input": input, **fields})
            run_id = accepted["run_id"]
            while True:
                event = await events.get()
                if event["run_id"] != run_id:
                    continue
                kind = event.get("type")
                if kind == "run_failed":
                    raise error_for(str(event.get("code")), str(event.get("message", "")), ref=run_id)
                if kind == "run_cancelled":
                    raise error_for("cancelled", str(event.get("reason", "")), ref=run_id)
                yield event
                if kind == "run_completed":
                    return
        finally:
            self._hooks["message"].remove(collect)

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message from now on, in order (while the client is open)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._max_queue)
        while True:
            yield await self._queue.get()

    # ---- closing ------------------------------------------------------------------------------

    async def close(self) -> None:
        self._closing = True
        reconnecting = not self.connected
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            if reconnecting:
                self._runner.cancel()  # do not sit out a backoff delay
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        self._closed.set()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_closed(self) -> None:
        """Until the client is closed for good (closed by you, or reconnecting gave up)."""
        await self._closed.wait()

    async def __aenter__(self) -> WebSocketClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
