"""Ask every instance at once over NATS: discovery by ``$SRV.PING`` and ``Subjects.stats_reporters``, figures by
``Subjects.service_stats``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from proto.lifecycle import ServiceStarted, lifecycle_decoder
from proto.stats import InstanceRef, InstanceStats, instance_stats_decoder
from proto.subjects import Subjects

log = logging.getLogger("raaf.stats")
NO_RESPONDERS = "503"  # the status NATS sends to the reply subject when a request has no subscriber


@dataclass(frozen=True, slots=True)
class KnownInstance:
    """A service instance as its NATS micro registration describes it, or a library stats reporter."""

    service: str
    instance: str
    version: str = ""
    http_url: str | None = None
    reporter: bool = False  # an EventEmitter or MessageQueue answering stats: no /readyz to ask

    @classmethod
    def announced(cls, started: ServiceStarted) -> KnownInstance:
        return cls(service=started.service, instance=started.instance, version=started.version,
                   http_url=started.http_url, reporter=started.kind == "reporter")

    @property
    def ref(self) -> InstanceRef:
        return InstanceRef(service=self.service, instance=self.instance)


class _Ping(msgspec.Struct):
    """The part of NATS micro's own ``io.nats.micro.v1.ping_response`` that discovery reads (not our wire)."""

    name: str
    id: str
    version: str = ""
    metadata: dict[str, str] | None = None


_ping_decoder = msgspec.json.Decoder(_Ping)


async def scatter(
    nc: NATS,
    subject: str,
    payload: bytes = b"",
    *,
    timeout: float,
    max_replies: int,
    on_reply: Callable[[Msg], bool] | None = None,
    grace: float = 0.0,
) -> list[Msg]:
    """Publish one request and collect replies until ``timeout``, ``max_replies``, or ``grace`` seconds after
    ``on_reply`` first says done (answers still on their way within that window are kept)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    replies: list[Msg] = []
    settling = False
    try:
        await nc.publish(subject, payload, reply=inbox)
        deadline = time.monotonic() + timeout
        while len(replies) < max_replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                msg = await sub.next_msg(timeout=remaining)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            if not msg.data and msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
                break  # the server says nobody listens on the subject: no answer will come
            replies.append(msg)
            if on_reply is not None and on_reply(msg) and not settling:
                if grace <= 0:
                    break
                deadline, settling = min(deadline, time.monotonic() + grace), True
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return replies


async def discover(nc: NATS, prefix: str, *, timeout: float, max_instances: int) -> list[KnownInstance]:
    """Every instance of this deployment: micro services whose metadata names ``prefix`` (``$SRV.PING``) and
    library stats reporters (``Subjects(prefix).stats_reporters``), both asked at once."""
    pings, reporters = await asyncio.gather(
        scatter(nc, "$SRV.PING", timeout=timeout, max_replies=max_instances),
        scatter(nc, Subjects(prefix).stats_reporters, timeout=timeout, max_replies=max_instances))
    found: dict[tuple[str, str], KnownInstance] = {}
    for msg in pings:
        try:
            ping = _ping_decoder.decode(msg.data)
        except msgspec.DecodeError:
            continue  # not a micro ping answer: nothing of ours
        meta = ping.metadata or {}
        if meta.get("prefix") != prefix or "service" not in meta:
            continue
        known = KnownInstance(service=meta["service"], instance=meta.get("instance", ping.id),
                              version=ping.version, http_url=meta.get("http"))
        found[(known.service, known.instance)] = known
    for msg in reporters:
        try:
            announced = lifecycle_decoder.decode(msg.data)
        except msgspec.DecodeError:
            continue
        if isinstance(announced, ServiceStarted):
            found.setdefault((announced.service, announced.instance), KnownInstance.announced(announced))
    return sorted(found.values(), key=lambda k: (k.service, k.instance))[:max_instances]


async def gather_stats(
    nc: NATS,
    subjects: Subjects,
    *,
    timeout: float,
    max_instances: int,
    expected: Collection[tuple[str, str]] = (),
    grace: float = 0.0,
) -> list[InstanceStats]:
    """Every instance's answer on ``subjects.service_stats``; returns ``grace`` seconds after all ``expected``
    answered: a library reporter nobody knows of yet (``$SRV.PING`` cannot find it) still gets counted."""
    wanted = set(expected)
    answered: dict[tuple[str, str], InstanceStats] = {}

    def take(msg: Msg) -> bool:
        try:
            stats = instance_stats_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("undecodable stats answer: %s", exc)
            return False
        answered[(stats.service, stats.instance)] = stats
        return bool(wanted) and wanted <= answered.keys()

    await scatter(nc, subjects.service_stats, timeout=timeout, max_replies=max_instances, on_reply=take, grace=grace)
    return sorted(answered.values(), key=lambda s: (s.service, s.instance))
