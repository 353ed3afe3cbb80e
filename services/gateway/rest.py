"""REST: publish to a channel, a channel's presence, and stats (this gateway and the whole cluster)."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from aiohttp import web

from proto.gateway import GatewayStats, Presence, Published, Stats, server_encoder
from services.gateway.auth import Authenticator
from services.gateway.channels import ChannelHub, check_channel
from services.gateway.cluster import Cluster
from services.gateway.errors import (
    bad_message,
    forbidden,
    message_too_large,
)
from services.gateway.responses import error_response
from services.gateway.settings import GatewaySettings
from shared.errors import StreamingError
from shared.identity import Identity
from shared.json_depth import JsonTooDeepError, check_json_depth


class RestRoutes:
    def __init__(self, settings: GatewaySettings, *, instance_id: str, authenticator: Authenticator,
                 hub: ChannelHub, cluster: Cluster, local_stats: Callable[[], GatewayStats]) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.authenticator = authenticator
        self.hub = hub
        self.cluster = cluster
        self.local_stats = local_stats

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/channels/{channel}/messages", self.publish),
            web.get("/v1/channels/{channel}/presence", self.presence),
            web.get("/v1/stats", self.stats),
        ]

    def _channel(self, request: web.Request, identity: Identity) -> str:
        name = check_channel(request.match_info["channel"])
        if not identity.may("channel", name):
            raise forbidden("channel", name)
        return name

    async def publish(self, request: web.Request) -> web.Response:
        """The body (any JSON, at most ``WEBSOCKET_MAX_MESSAGE_SIZE`` bytes) becomes the message's ``data``."""
        try:
            identity = self.authenticator.require(request)
            name = self._channel(request, identity)
            limit = self.settings.max_message_size
            if request.content_length is not None and request.content_length > limit:
                raise message_too_large(request.content_length, limit)
            body = await read_body(request, limit)
            try:
                body.decode()
                check_json_depth(body, self.settings.max_json_depth)
                msgspec.json.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError, JsonTooDeepError) as exc:
                raise bad_message(f"the body must be JSON ({exc})") from None
            await self.hub.publish(name, msgspec.Raw(body), None, sender=identity.subject)
        except StreamingError as exc:
            return error_response(exc)
        return _json(Published(channel=name, at=time.time()), status=202)

    async def presence(self, request: web.Request) -> web.Response:
        try:
            name = self._channel(request, self.authenticator.require(request))
            members = await self.cluster.presence(name)
        except StreamingError as exc:
            return error_response(exc)
        return _json(Presence(channel=name, members=members))

    async def stats(self, request: web.Request) -> web.Response:
        """``?scope=local`` skips asking the other gateways."""
        try:
            self.authenticator.require(request)
            local = self.local_stats()
            replies = [] if request.query.get("scope") == "local" else await self.cluster.stats()
        except StreamingError as exc:
            return error_response(exc)
        everyone = [r.stats for r in replies if r.instance != self.instance_id] + [local]
        return _json(Stats(instance=self.instance_id, local=local, cluster=sum_stats(everyone),
                           gateways=len(everyone)))


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it grows past ``limit`` bytes (whatever Content-Length said)."""
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise message_too_large(len(body), limit)
    return bytes(body)


def sum_stats(stats: list[GatewayStats]) -> GatewayStats:
    fields = {name: sum(getattr(s, name) for s in stats) for name in GatewayStats.__struct_fields__}
    fields["uptime_seconds"] = max((s.uptime_seconds for s in stats), default=0.0)
    return GatewayStats(**fields)


def _json(message: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=server_encoder.encode(message), status=status, content_type="application/json")
