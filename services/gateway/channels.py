"""Channels across gateway replicas: one NATS subscription per channel per gateway, fanned out locally.

A message published on any gateway (or with ``nats pub raaf.channel.<name>``) reaches every gateway
with subscribers; each encodes it once and writes the same frame to all of its subscribers. Presence:
each gateway knows its own members; ``joined``/``left`` events travel on ``raaf.presence.<name>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import Span

from proto.gateway import ChannelMessage, Joined, Left, Member, channel_message_decoder, server_encoder
from proto.subjects import InvalidNameError, Subjects, encode_token
from services.gateway.connection import Connection, fan_out
from services.gateway.errors import GatewayUnavailable, gateway_unavailable, invalid_channel
from services.gateway.frames import Outgoing
from shared.nats import fastpaths
from shared.nats.conn import barrier
from shared.nats.direct import DirectDelivery, header_value
from shared.tracing import TRACING, messaging

if TYPE_CHECKING:
    from services.gateway.metrics import GatewayCounters, GatewayMetrics

log = logging.getLogger("raaf.gateway.channels")
_COMPONENT = "raaf.gateway"
_MESSAGE_PREFIX = b'{"type":"message"'


def check_channel(name: str) -> str:
    """A channel name: 1-200 characters, no control characters; any other character is fine (escaped)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise invalid_channel(name, "control characters are not allowed")
    try:
        encode_token(name)
    except InvalidNameError as exc:
        raise invalid_channel(name, exc.reason) from None
    return name


class Channel:
    __slots__ = ("error", "info", "listeners", "members", "name", "presence_ready", "presence_sub", "ready", "sub",
                 "subject")

    def __init__(self, name: str, subject: str) -> None:
        self.name = name
        self.subject = subject
        self.members: set[Connection] = set()
        self.listeners: set[Connection] = set()  # members that asked for joined/left events
        self.info: dict[Connection, dict[str, str]] = {}
        self.sub: Subscription | None = None
        self.presence_sub: Subscription | None = None
        self.presence_ready: asyncio.Event | None = None  # set once the presence subscription is open (or failed)
        self.ready = asyncio.Event()
        self.error: BaseException | None = None


class ChannelHub:
    def __init__(self, subjects: Subjects, counters: GatewayCounters, metrics: GatewayMetrics | None = None,
                 flush_timeout: float = 5.0, presence_subjects: bool = False) -> None:
        self.subjects = subjects
        self.presence_subjects = presence_subjects
        self.counters = counters
        self.metrics = metrics
        self.flush_timeout = flush_timeout
        self.channels: dict[str, Channel] = {}
        self._by_subject: dict[str, Channel] = {}
        self._by_presence_subject: dict[str, Channel] = {}
        self._nc: NATS | None = None
        self._direct: DirectDelivery | None = None

    @property
    def nc(self) -> NATS:
        if self._nc is None or self._nc.is_closed:
            raise gateway_unavailable("not connected to NATS")
        return self._nc

    def attach(self, nc: NATS, direct: bool = True) -> None:
        """Use ``nc``; ``direct`` delivers channel messages without nats-py's per-message queue and task, and
        reads NATS with :class:`shared.nats.fastpaths.ChunkParser`, where the client's shape allows both."""
        self._nc = nc
        paths = fastpaths.install(nc, parser=direct, direct=direct)
        self._direct = DirectDelivery(nc) if paths.direct else None

    @property
    def subscription_count(self) -> int:
        return sum(len(ch.members) for ch in self.channels.values())

    # ---- membership ---------------------------------------------------------------------------

    async def join(self, conn: Connection, name: str, *, presence: bool = False,
                   info: dict[str, str] | None = None) -> None:
        """Add ``conn`` to channel ``name`` (which must have passed :func:`check_channel`)."""
        channel = self.channels.get(name)
        if channel is None:
            channel = await self._open(name)
        elif not channel.ready.is_set():
            await channel.ready.wait()
            if channel.error is not None:
                raise gateway_unavailable(f"cannot subscribe: {channel.error}")
        if presence:
            await self._open_presence(channel)
        if not conn.open or self.channels.get(name) is not channel:
            await self._close_if_empty(channel)
            return
        channel.members.add(conn)
        if conn.channels is None:
            conn.channels = set()
        conn.channels.add(name)
        if presence:
            channel.listeners.add(conn)
        if info:
            channel.info[conn] = info
        with contextlib.suppress(GatewayUnavailable):  # presence events are best-effort; queries are not
            await self._announce(Joined(channel=name, member=self._member(channel, conn), at=time.time()))

    async def leave(self, conn: Connection, name: str) -> bool:
        channel = self.channels.get(name)
        if conn.channels is not None:
            conn.channels.discard(name)
        if channel is None or conn not in channel.members:
            return False
        member = self._member(channel, conn)
        channel.members.discard(conn)
        channel.listeners.discard(conn)
        channel.info.pop(conn, None)
        with contextlib.suppress(GatewayUnavailable):
            await self._announce(Left(channel=name, member=member, at=time.time()))
        await self._close_if_empty(channel)
        return True

    async def leave_all(self, conn: Connection) -> None:
        for name in list(conn.channels or ()):
            await self.leave(conn, name)

    def local_members(self, name: str) -> list[Member]:
        channel = self.channels.get(name)
        if channel is None:
            return []
        return [self._member(channel, conn) for conn in channel.members]

    # ---- publishing ---------------------------------------------------------------------------

    async def publish(self, name: str, data: msgspec.Raw, conn: Connection | None = None, *,
                      sender: str | None = None) -> None:
        """Send to every subscriber of ``name`` on every gateway (``data`` must be valid UTF-8 JSON)."""
        message = ChannelMessage(
            channel=name, data=data, at=time.time(),
            sender=conn.identity.subject if conn is not None else sender,
            connection_id=conn.id if conn is not None else None,
        )
        try:
            if TRACING.on:  # a PRODUCER span; its context travels in the message's headers to every gateway
                with messaging.producer(_COMPONENT, "channel publish", name) as headers:
                    await self.nc.publish(self.subjects.channel(name), server_encoder.encode(message),
                                          headers=headers)
            else:
                await self.nc.publish(self.subjects.channel(name), server_encoder.encode(message))
        except GatewayUnavailable:
            raise
        except Exception as exc:
            raise gateway_unavailable(f"publish failed: {exc}") from None
        self.counters.published += 1

    # ---- NATS side ----------------------------------------------------------------------------

    async def _open(self, name: str) -> Channel:
        subject = self.subjects.channel(name)
        channel = Channel(name, subject)
        self.channels[name] = channel
        self._by_subject[subject] = channel
        try:
            if self._direct is not None and TRACING.on:  # the raw headers too, for the publisher's trace context
                channel.sub = await self._direct.subscribe_messages(
                    subject, lambda _, data, headers: self._deliver(channel, data, headers))
            elif self._direct is not None:
                def route(data: bytes) -> None:
                    self._fan_out(channel, data)

                channel.sub = await self._direct.subscribe(subject, route)
            else:
                channel.sub = await self.nc.subscribe(subject, cb=self._on_message)
            # Once the server has our SUB, a message published anywhere reaches us: then we ack.
            await self._flush()
        except BaseException as exc:
            channel.error = exc
            self._forget(channel)
            raise gateway_unavailable(f"cannot subscribe: {exc}") from None
        finally:
            channel.ready.set()
        return channel

    async def _open_presence(self, channel: Channel) -> None:
        """Subscribe to the channel's joined/left events once, however many join with presence at once."""
        if channel.presence_ready is None:
            ready = channel.presence_ready = asyncio.Event()
            subject = self.subjects.presence(channel.name)
            try:
                channel.presence_sub = await self.nc.subscribe(subject, cb=self._on_presence)
                self._by_presence_subject[subject] = channel
                await self._flush()
            except BaseException:
                channel.presence_ready = None  # the next joiner tries again
                raise
            finally:
                ready.set()
        else:
            await channel.presence_ready.wait()
        if channel.presence_sub is None:
            raise gateway_unavailable("cannot subscribe to presence events")

    async def _flush(self) -> None:
        try:
            await barrier(self.nc, self.flush_timeout)
        except GatewayUnavailable:
            raise
        except Exception as exc:
            raise gateway_unavailable(f"NATS did not confirm: {exc}") from None

    async def _close_if_empty(self, channel: Channel) -> None:
        if channel.members or not channel.ready.is_set() or self.channels.get(channel.name) is not channel:
            return
        self._forget(channel)
        if channel.sub is not None:
            with contextlib.suppress(Exception):
                if self._direct is not None:
                    await self._direct.unsubscribe(channel.sub)
                else:
                    await channel.sub.unsubscribe()
        if channel.presence_sub is not None:
            with contextlib.suppress(Exception):
                await channel.presence_sub.unsubscribe()

    def _forget(self, channel: Channel) -> None:
        if self.channels.get(channel.name) is channel:
            del self.channels[channel.name]
        self._by_subject.pop(channel.subject, None)
        self._by_presence_subject.pop(self.subjects.presence(channel.name), None)

    async def _on_message(self, msg: Msg) -> None:
        channel = self._by_subject.get(msg.subject)
        if channel is None:
            return
        try:
            if TRACING.on and msg.headers:
                with messaging.consumer(_COMPONENT, "channel deliver", channel.name, msg.headers.get("traceparent"),
                                        msg.headers.get("tracestate")) as span:
                    self._traced_fan_out(channel, msg.data, span)
            else:
                self._fan_out(channel, msg.data)
        except Exception:  # nats-py would only hand it to the error callback
            log.exception("fan-out failed on %s", msg.subject)

    def _deliver(self, channel: Channel, data: bytes, headers: bytes | None) -> None:
        """A message from the direct path while tracing is on: fanned out in a span when it carries a context."""
        if headers is None:
            self._fan_out(channel, data)
            return
        with messaging.consumer(_COMPONENT, "channel deliver", channel.name, header_value(headers, "traceparent"),
                                header_value(headers, "tracestate")) as span:
            self._traced_fan_out(channel, data, span)

    def _traced_fan_out(self, channel: Channel, data: bytes, span: Span | None) -> None:
        sent = self._fan_out(channel, data)
        if span is not None:
            span.set_attribute("raaf.channel.recipients", sent)

    def _fan_out(self, channel: Channel, data: bytes) -> int:
        """Encode once, then write the same frame to every local subscriber; how many it reached."""
        members = channel.members
        if not members:
            return 0
        started = time.perf_counter()
        payload = envelope(data, channel.name)
        if len(members) == 1:  # a per-client stream: no shared Outgoing, one frame straight to the transport
            sent = 0
            for conn in members:
                sent = int(conn.deliver_payload(payload, "message"))
        else:
            recipients = tuple(members)  # a cut-off connection leaves the set later, never during the loop
            sent = fan_out(recipients, Outgoing(payload, "message"), recipients[0].ctx)
        self.counters.channel_messages += 1
        if self.metrics is not None:
            self.metrics.fanout_recipients.observe(sent)
            self.metrics.fanout_seconds.observe(time.perf_counter() - started)
        return sent

    async def _on_presence(self, msg: Msg) -> None:
        channel = self._by_presence_subject.get(msg.subject)
        if channel is None or not channel.listeners:
            return
        try:
            msg.data.decode()
        except UnicodeDecodeError:
            return
        out = Outgoing(msg.data)
        for conn in tuple(channel.listeners):
            conn.deliver(out)

    async def _announce(self, event: Joined | Left) -> None:
        try:
            await self.nc.publish(self.subjects.presence(event.channel), server_encoder.encode(event))
        except GatewayUnavailable:
            raise
        except Exception as exc:
            log.warning("presence event not published: %s", exc)

    def _member(self, channel: Channel, conn: Connection) -> Member:
        subject = conn.identity.subject if self.presence_subjects else None
        return Member(connection_id=conn.id, subject=subject, info=channel.info.get(conn), name=conn.identity.name)

    async def close(self) -> None:
        """Unsubscribe everything (on drain)."""
        for channel in list(self.channels.values()):
            channel.members.clear()
            await self._close_if_empty(channel)


def envelope(payload: bytes, channel: str) -> bytes:
    """The client-facing JSON for a NATS payload: our own ``message`` as is; anything else wrapped as data.

    Whatever arrives (``nats pub`` with a bare object, plain text, invalid UTF-8, a forged envelope for
    another channel) becomes valid JSON naming the channel it really came from.
    """
    try:
        text = payload.decode()  # valid UTF-8 (msgspec does not check the strings it skips)
    except UnicodeDecodeError:
        return server_encoder.encode(ChannelMessage(channel=channel, data=msgspec.Raw(
            server_encoder.encode(payload.decode(errors="replace")))))
    if payload.startswith(_MESSAGE_PREFIX):
        try:
            message = channel_message_decoder.decode(payload)  # validates the JSON of ``data`` too
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        else:
            if message.channel == channel:
                return payload
    try:
        msgspec.json.decode(payload)
        data = msgspec.Raw(payload)
    except msgspec.DecodeError:
        data = msgspec.Raw(server_encoder.encode(text))
    return server_encoder.encode(ChannelMessage(channel=channel, data=data))
