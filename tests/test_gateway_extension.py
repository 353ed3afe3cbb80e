"""The extension point: routes, messages the core does not own, per-connection NATS subscriptions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import pytest
from aiohttp import web
from nats.aio.msg import Msg

import services.gateway.app as gateway_app
from proto.base import ClientRequest, Message
from proto.gateway import ClientMessage
from services.gateway import Connection, GatewayApp
from services.gateway.errors import Forbidden
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.gateway import connect, make_gateway, receive_type, request, ws_url
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]


class Watch(ClientRequest, frozen=True, kw_only=True, tag="watch"):
    topic: str


class Watched(Message, frozen=True, kw_only=True, tag="watched"):
    topic: str
    payload: msgspec.Raw


class WatchExtension:
    """Forwards a NATS subject to the connection that asked, until it disconnects."""

    name = "watch"

    def __init__(self) -> None:
        self.gateway: GatewayApp | None = None
        self.gone: list[str] = []
        self.stopped = False

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/watch/health", self.health)]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"extension": self.name, "started": self.gateway is not None})

    async def start(self, gateway: GatewayApp) -> None:
        self.gateway = gateway

    async def stop(self) -> None:
        self.stopped = True

    async def handle(self, conn: Connection, message: ClientMessage) -> bool:
        if not isinstance(message, Watch):
            return False
        if not conn.identity.may("event", message.topic) or message.topic == "secret":
            raise Forbidden("event", message.topic)
        assert self.gateway is not None
        topic = message.topic

        async def forward(msg: Msg) -> None:
            await conn.send(Watched(topic=topic, payload=msgspec.Raw(msg.data)))

        await conn.subscribe_nats(self.gateway.nc, f"{self.gateway.subjects.prefix}.watch.{topic}", forward)
        if message.id:
            await conn.send(msgspec.json.encode({"type": "ack", "ref": message.id}))
        return True

    async def on_disconnect(self, conn: Connection) -> None:
        self.gone.append(conn.id)


@pytest.fixture
def extension(monkeypatch: pytest.MonkeyPatch) -> WatchExtension:
    ext = WatchExtension()
    monkeypatch.setattr(gateway_app, "default_extensions", lambda gateway: [ext])
    return ext


async def test_an_extension_gets_its_messages_routes_and_owned_subscriptions(
    extension: WatchExtension, nats_server: NatsServer, start_app: StartApp
) -> None:
    app = make_gateway(nats_server.url, WEBSOCKET_MAX_SUBSCRIPTIONS="2")
    # An extension's issue adds its Structs to the union; here the test widens the decoder itself.
    app.handler.decoder = msgspec.json.Decoder(ClientMessage | Watch)
    app.client_types = app.client_types | {"watch"}
    await start_app(app)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{app.http_url}/v1/watch/health") as resp:
            assert await resp.json() == {"extension": "watch", "started": True}
        ws, welcome = await connect(session, ws_url(app))
        assert (await request(ws, {"type": "watch", "topic": "disk"}))["type"] == "ack"
        assert (await request(ws, {"type": "watch", "topic": "secret"}))["code"] == "forbidden"
        await app.nc.publish(f"{app.subjects.prefix}.watch.disk", b'{"free": 3}')
        watched = await receive_type(ws, "watched")
        assert watched == {"type": "watched", "topic": "disk", "payload": {"free": 3}}
        # Owned subscriptions count against the per-connection limit.
        assert (await request(ws, {"type": "subscribe", "channel": "c"}))["type"] == "ack"
        assert (await request(ws, {"type": "watch", "topic": "cpu"}))["code"] == "limit_exceeded"
        subs_before = len(app.nc._subs)
        await ws.close()
        await eventually(lambda: extension.gone == [welcome["connection_id"]])
        await eventually(lambda: len(app.nc._subs) == subs_before - 2, timeout=2)  # its NATS subs went too
    await app.stop()
    assert extension.stopped
