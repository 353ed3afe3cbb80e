"""Gateways finding each other and answering together: who is alive, who is in a channel, cluster stats.

Each gateway beats ``peer_alive`` on ``raaf.gateway.control`` every ``GATEWAY_PEER_INTERVAL`` and
forgets a peer after three missed beats. A presence or stats question goes to every gateway on the
same subject; the asker collects answers until every known peer has answered (or the timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.gateway import (
    GatewayReply,
    GatewayStats,
    Member,
    PeerAlive,
    PeerGone,
    PresenceReply,
    PresenceRequest,
    StatsReply,
    StatsRequest,
    control_decoder,
    control_encoder,
    reply_decoder,
)
from proto.subjects import Subjects
from services.gateway.errors import gateway_unavailable
from shared.nats.conn import barrier

log = logging.getLogger("raaf.gateway.cluster")


class Cluster:
    def __init__(
        self,
        subjects: Subjects,
        instance: str,
        *,
        interval: float,
        timeout: float,
        local_members: Callable[[str], list[Member]],
        local_stats: Callable[[], GatewayStats],
    ) -> None:
        self.subjects = subjects
        self.instance = instance
        self.interval = interval
        self.timeout = timeout
        self._local_members = local_members
        self._local_stats = local_stats
        self.peers: dict[str, float] = {}  # instance -> monotonic time last heard
        self._nc: NATS | None = None
        self._sub: Subscription | None = None

    async def start(self, nc: NATS) -> None:
        self._nc = nc
        self._sub = await nc.subscribe(self.subjects.gateway_control, cb=self._on_control)
        self.peers[self.instance] = time.monotonic()
        await self._beat()
        await barrier(nc)

    async def run(self) -> None:
        """Beat and expire peers until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(Exception):
                await self._beat()
            self.expire(time.monotonic())

    def expire(self, now: float) -> None:
        for instance, seen in list(self.peers.items()):
            if instance != self.instance and now - seen > 3 * self.interval:
                del self.peers[instance]
        self.peers[self.instance] = now

    async def stop(self) -> None:
        if self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                await self._nc.publish(self.subjects.gateway_control,
                                       control_encoder.encode(PeerGone(instance=self.instance)))
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    @property
    def peer_count(self) -> int:
        return len(self.peers)

    async def presence(self, channel: str) -> list[Member]:
        replies = await self.gather(PresenceRequest(channel=channel))
        members: list[Member] = []
        for reply in replies:
            if isinstance(reply, PresenceReply):
                members.extend(reply.members)
        return members

    async def stats(self) -> list[StatsReply]:
        return [r for r in await self.gather(StatsRequest()) if isinstance(r, StatsReply)]

    async def gather(self, request: PresenceRequest | StatsRequest) -> list[GatewayReply]:
        """Ask every gateway; answers from all known peers, or what came within the timeout."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise gateway_unavailable("not connected to NATS")
        replies: dict[str, GatewayReply] = {}
        done = asyncio.Event()
        expected = set(self.peers)

        async def on_reply(msg: Msg) -> None:
            try:
                reply = reply_decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            replies[reply.instance] = reply
            if expected <= replies.keys():
                done.set()

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_reply)
        try:
            await nc.publish(self.subjects.gateway_control, control_encoder.encode(request), reply=inbox)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.timeout)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return list(replies.values())

    async def _beat(self) -> None:
        if self._nc is not None:
            await self._nc.publish(self.subjects.gateway_control,
                                   control_encoder.encode(PeerAlive(instance=self.instance, every=self.interval)))

    async def _on_control(self, msg: Msg) -> None:
        try:
            request = control_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.debug("ignoring a malformed control message")
            return
        match request:
            case PresenceRequest(channel=channel):
                await self._reply(msg, PresenceReply(instance=self.instance, members=self._local_members(channel)))
            case StatsRequest():
                await self._reply(msg, StatsReply(instance=self.instance, stats=self._local_stats()))
            case PeerAlive(instance=instance):
                known = instance in self.peers
                self.peers[instance] = time.monotonic()
                if not known and instance != self.instance:
                    await self._beat()  # so the newcomer learns about us now, not a beat later
            case PeerGone(instance=instance):
                if instance != self.instance:
                    self.peers.pop(instance, None)

    async def _reply(self, msg: Msg, reply: PresenceReply | StatsReply) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(control_encoder.encode(reply))
