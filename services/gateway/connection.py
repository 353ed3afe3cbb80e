"""One client connection (WebSocket or SSE): identity, metadata, limits, and a send path that never blocks.

Sending writes finished frames straight to the transport; the transport's buffer is the send queue.
When a connection falls more than ``WEBSOCKET_SEND_QUEUE_BYTES`` behind it is cut off (close code
4008) instead of growing memory. Idle connections cost one small object: no task, queue or timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from aiohttp import web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.base import Message
from proto.errors import Error, ErrorCode
from proto.gateway import CloseCode, server_encoder
from services.gateway.errors import rate_limited, too_many_subscriptions
from services.gateway.frames import Deflater, Outgoing, frame
from shared.identity import Identity
from shared.nats.conn import barrier

if TYPE_CHECKING:
    from services.gateway.metrics import GatewayCounters

log = logging.getLogger("raaf.gateway")

ConnectionKind = Literal["ws", "sse"]
_ids = itertools.count(1)
_ID_PREFIX = secrets.token_hex(4)


def new_connection_id() -> str:
    """Unique across replicas (a random per-process prefix) and short."""
    return f"{_ID_PREFIX}-{next(_ids):x}"


class ConnectionContext:
    """What every connection of one gateway shares: limits, the deflater, counters, how to close."""

    __slots__ = ("close", "counters", "deflater", "max_subscriptions", "rate_burst", "rate_limit",
                 "rate_per_second", "send_queue_bytes", "spawn")

    def __init__(
        self,
        *,
        counters: GatewayCounters,
        deflater: Deflater | None,
        send_queue_bytes: int,
        rate_limit: int,
        rate_burst: int,
        max_subscriptions: int,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
        close: Callable[[Connection, int, str], Coroutine[Any, Any, None]],
    ) -> None:
        self.counters = counters
        self.deflater = deflater
        self.send_queue_bytes = send_queue_bytes
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.rate_per_second = rate_limit / 60.0
        self.max_subscriptions = max_subscriptions
        self.spawn = spawn
        self.close = close


class Connection:
    """A client connection as the core, extensions and the embedding API see it."""

    __slots__ = ("_closed_waiter", "_metadata", "_nats_subs", "_tasks", "address", "channels", "close_code",
                 "close_reason", "connected_at", "ctx", "id", "identity", "kind", "last_active", "last_rx", "last_tx",
                 "open", "ping_at", "rate_stamp", "rate_tokens", "shared_subscriptions", "sse_chunked", "transport",
                 "wbits", "ws")

    def __init__(
        self,
        ctx: ConnectionContext,
        transport: asyncio.Transport,
        identity: Identity,
        *,
        kind: ConnectionKind = "ws",
        ws: web.WebSocketResponse | None = None,
        deflate_wbits: int = 0,
        sse_chunked: bool = False,
        connection_id: str | None = None,
        address: str | None = None,
    ) -> None:
        now = time.monotonic()
        self.id = connection_id or new_connection_id()
        self.ctx = ctx
        self.transport = transport
        self.identity = identity
        self.address = address  # the client address its per-address limit counts (services.gateway.addresses)
        self.kind: ConnectionKind = kind
        self.ws = ws
        self.wbits = deflate_wbits
        self.sse_chunked = sse_chunked
        self.channels: set[str] | None = None
        self.shared_subscriptions = 0  # what extensions hold for it on subscriptions shared per gateway (rooms)
        self.open = True
        self.close_code: int | None = None
        self.close_reason = ""
        self.connected_at = now
        self.last_rx = now  # any frame from the client, pongs included
        self.last_active = now  # the last client message (what the idle timeout looks at)
        self.last_tx = now
        self.ping_at = 0.0  # when an unanswered ping went out; 0 when none is outstanding
        self.rate_tokens = float(ctx.rate_burst)
        self.rate_stamp = now
        self._metadata: dict[str, Any] | None = None
        self._nats_subs: list[Subscription] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None

    # ---- sending ------------------------------------------------------------------------------

    def deliver(self, out: Outgoing) -> bool:
        """Write one prepared message; False if the connection is closed or was just cut off as too slow."""
        if not self.open:
            return False
        if self.kind == "ws":
            data = out.websocket(self.ctx.deflater if self.wbits else None, self.wbits)
        else:
            data = out.sse(self.sse_chunked)
        return self.write(data)

    def deliver_payload(self, payload: bytes, event: str | None = None) -> bool:
        """:meth:`deliver` for a message this connection alone gets: a plain frame is built without an
        :class:`Outgoing` (``event`` names it for SSE)."""
        if self.kind == "ws" and not self.wbits:
            return self.write(frame(payload))
        return self.deliver(Outgoing(payload, event))

    def write(self, data: bytes) -> bool:
        if not self.open:
            return False
        transport = self.transport
        if transport.is_closing():
            self.open = False
            return False
        queued = transport.get_write_buffer_size()
        if queued and queued + len(data) > self.ctx.send_queue_bytes:
            self.ctx.counters.slow_consumers += 1
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: send queue full")
            return False
        transport.write(data)
        self.last_tx = time.monotonic()
        counters = self.ctx.counters
        counters.messages_sent += 1
        counters.bytes_sent += len(data)
        return True

    def send_nowait(self, message: Message | bytes) -> bool:
        """Send a wire message (or its JSON bytes) now; never waits, so it is safe in fan-out loops."""
        if isinstance(message, bytes):
            return self.deliver(Outgoing(message, None))
        return self.deliver(Outgoing(server_encoder.encode(message), message.__struct_config__.tag))  # type: ignore[arg-type]

    async def send(self, message: Message | bytes) -> bool:
        """Send through the bounded send queue (the slow-consumer policy applies); False if not sent."""
        return self.send_nowait(message)

    async def send_error(self, code: ErrorCode, message: str, ref: str | None = None,
                         details: dict[str, Any] | None = None) -> bool:
        self.ctx.counters.errors_sent += 1
        raw = None if details is None else {k: msgspec.Raw(msgspec.json.encode(v)) for k, v in details.items()}
        return self.send_nowait(Error(code=code, message=message, ref=ref, details=raw))

    async def send_message(self, message: dict[str, Any]) -> bool:
        """The seed's ``client.send_message({...})``: any JSON object (it should carry a ``type``)."""
        return self.send_nowait(msgspec.json.encode(message))

    # ---- metadata (the seed's client.set_metadata) ---------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    def set_metadata(self, key: str, value: Any) -> None:
        self.metadata[key] = value

    def get_metadata(self, key: str, default: Any = None) -> Any:
        return default if self._metadata is None else self._metadata.get(key, default)

    # ---- limits -------------------------------------------------------------------------------

    def take_rate_token(self, now: float) -> None:
        """Token bucket: ``rate_burst`` at once, refilled at ``rate_limit`` per minute."""
        ctx = self.ctx
        if not ctx.rate_limit:
            return
        tokens = min(float(ctx.rate_burst), self.rate_tokens + (now - self.rate_stamp) * ctx.rate_per_second)
        self.rate_stamp = now
        if tokens >= 1.0:
            self.rate_tokens = tokens - 1.0
            return
        self.rate_tokens = tokens
        ctx.counters.rate_limited += 1
        raise rate_limited(ctx.rate_limit, (1.0 - tokens) / ctx.rate_per_second)

    @property
    def subscription_count(self) -> int:
        """Channels, chat rooms and NATS subscriptions extensions own; ``WEBSOCKET_MAX_SUBSCRIPTIONS`` bounds
        them together."""
        return ((len(self.channels) if self.channels else 0) + self.shared_subscriptions
                + (len(self._nats_subs) if self._nats_subs else 0))

    def check_subscription_room(self) -> None:
        if self.subscription_count >= self.ctx.max_subscriptions:
            raise too_many_subscriptions(self.ctx.max_subscriptions)

    # ---- resources extensions own -------------------------------------------------------------

    def own_subscription(self, sub: Subscription) -> None:
        """Unsubscribe ``sub`` (core NATS or JetStream) when this connection closes; counts as a subscription."""
        if self._nats_subs is None:
            self._nats_subs = []
        self._nats_subs.append(sub)

    async def subscribe_nats(self, nc: Any, subject: str, cb: Callable[[Msg], Awaitable[None]],
                             queue: str = "") -> Subscription:
        """Subscribe for this connection (within its subscription limit); undone when it closes.

        Returns once NATS has the subscription, so anything published afterwards reaches it."""
        self.check_subscription_room()
        sub: Subscription = await nc.subscribe(subject, queue=queue, cb=cb)
        self.own_subscription(sub)
        await barrier(nc)
        return sub

    async def unsubscribe_nats(self, sub: Subscription) -> None:
        if self._nats_subs is not None and sub in self._nats_subs:
            self._nats_subs.remove(sub)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "task") -> asyncio.Task[Any]:
        """A task that lives no longer than this connection (cancelled when it closes)."""
        task = self.ctx.spawn(coro, f"conn:{self.id}:{name}")
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)

    # ---- closing ------------------------------------------------------------------------------

    def close_soon(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Stop sending now and close in the background (a close frame for WebSocket, end of stream for SSE)."""
        if not self.open:
            return
        self.open = False
        self.close_code = code
        self.close_reason = reason
        self.ctx.spawn(self.ctx.close(self, code, reason), f"close:{self.id}")

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if not self.open:
            await self.wait_closed()
            return
        self.open = False
        self.close_code = code
        self.close_reason = reason
        await self.ctx.close(self, code, reason)

    def abort(self) -> None:
        """Drop the connection without a goodbye (a dead peer)."""
        self.open = False
        self.transport.abort()
        self.mark_closed()

    def mark_closed(self) -> None:
        self.open = False
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    async def wait_closed(self) -> None:
        if self.transport.is_closing() and not self.open:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    async def release(self) -> None:
        """Cancel owned tasks and drop owned NATS subscriptions; the core calls this once, at disconnect."""
        self.mark_closed()
        tasks, self._tasks = self._tasks, None
        if tasks:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        subs, self._nats_subs = self._nats_subs, None
        for sub in subs or ():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.kind} subject={self.identity.subject!r} open={self.open}>"


def fan_out(conns: Iterable[Connection], out: Outgoing, ctx: ConnectionContext) -> int:
    """Write one message to many connections: :meth:`Connection.deliver`'s policy, minus per-recipient
    bookkeeping (one clock read, one counter update); returns how many it was written to."""
    now = time.monotonic()
    limit = ctx.send_queue_bytes
    plain: bytes | None = None
    sent = sent_bytes = 0
    for conn in conns:
        if not conn.open:
            continue
        if conn.kind == "ws" and not conn.wbits:
            data = plain if plain is not None else (plain := out.websocket(None, 0))
        elif conn.kind == "ws":
            data = out.websocket(ctx.deflater, conn.wbits)
        else:
            data = out.sse(conn.sse_chunked)
        transport = conn.transport
        queued = transport.get_write_buffer_size()
        if (queued and queued + len(data) > limit) or transport.is_closing():
            conn.write(data)  # the slow path: cut off a slow consumer, or notice a closed transport
            continue
        transport.write(data)
        conn.last_tx = now
        sent += 1
        sent_bytes += len(data)
    counters = ctx.counters
    counters.messages_sent += sent
    counters.bytes_sent += sent_bytes
    return sent


def pong_frame(payload: bytes) -> bytes:
    return frame(payload[:125], 0xA)
