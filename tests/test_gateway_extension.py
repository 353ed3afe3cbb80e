"""The extension point: routes, declared client messages, per-connection NATS subscriptions, one handler table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import pytest
from aiohttp import web
from nats.aio.msg import Msg

import services.gateway.app as gateway_app
from proto.base import ClientRequest, Message
from proto.gateway import Ping
from services.gateway import Connection, GatewayExtension
from services.gateway.context import GatewayContext
from services.gateway.errors import forbidden
from services.gateway.extension import Handlers
from services.gateway.routing import DuplicateHandler
from shared.access import Access, Rule
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

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.handles: Handlers = {Watch: self.watch}
        self.access_rules = {("GET", "/v1/watch/health"): Access(Rule.PUBLIC, "watch", "health"),
                             "watch": Access(Rule.GRANT, "event", "follow")}
        self.started = False
        self.gone: list[str] = []
        self.stopped = False

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/watch/health", self.health)]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"extension": self.name, "started": self.started})

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def watch(self, conn: Connection, message: Watch) -> None:
        if not conn.identity.may("event", message.topic) or message.topic == "secret":
            raise forbidden("event", message.topic)
        topic = message.topic

        async def forward(msg: Msg) -> None:
            await conn.send(Watched(topic=topic, payload=msgspec.Raw(msg.data)))

        await conn.subscribe_nats(self.ctx.nc, self.ctx.subjects.extension(f"watch.{topic}"), forward)
        if message.id:
            await conn.send(msgspec.json.encode({"type": "ack", "ref": message.id}))

    async def on_disconnect(self, conn: Connection) -> None:
        self.gone.append(conn.id)


class Built:
    """The extensions the next gateway builds, as it built them."""

    def __init__(self) -> None:
        self.extensions: list[WatchExtension] = []

    def one(self, ctx: GatewayContext) -> list[GatewayExtension]:
        self.extensions.append(WatchExtension(ctx))
        return [self.extensions[-1]]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Built:
    built = Built()
    monkeypatch.setattr(gateway_app, "default_extensions", built.one)
    return built


async def test_an_extension_gets_its_messages_routes_and_owned_subscriptions(
    built: Built, nats_server: NatsServer, start_app: StartApp
) -> None:
    app = make_gateway(nats_server.url, WEBSOCKET_MAX_SUBSCRIPTIONS="2")
    [extension] = built.extensions
    await start_app(app)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{app.http_url}/v1/watch/health") as resp:
            assert await resp.json() == {"extension": "watch", "started": True}
        ws, welcome = await connect(session, ws_url(app))
        assert (await request(ws, {"type": "watch", "topic": "disk"}))["type"] == "ack"
        assert (await request(ws, {"type": "watch", "topic": "secret"}))["code"] == "forbidden"
        await app.nc.publish(app.subjects.extension("watch.disk"), b'{"free": 3}')
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


class PingThief(WatchExtension):
    """Claims ``ping``, which the core owns."""

    name = "ping-thief"

    def __init__(self, ctx: GatewayContext) -> None:
        super().__init__(ctx)
        self.handles = {Ping: self.watch}


def test_a_message_type_claimed_twice_stops_the_gateway_before_it_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_app, "default_extensions", lambda ctx: [PingThief(ctx)])
    with pytest.raises(DuplicateHandler, match=r"'ping' .* by both core and ping-thief"):
        make_gateway("nats://127.0.0.1:1")  # never connected: the table is built before


class Undeclared(WatchExtension):
    """A route and a message without an access rule."""

    name = "undeclared"

    def __init__(self, ctx: GatewayContext) -> None:
        super().__init__(ctx)
        self.access_rules = {}


async def test_a_route_or_message_without_an_access_rule_is_refused(
    monkeypatch: pytest.MonkeyPatch, nats_server: NatsServer, start_app: StartApp
) -> None:
    monkeypatch.setattr(gateway_app, "default_extensions", lambda ctx: [Undeclared(ctx)])
    app = await start_app(make_gateway(nats_server.url))
    assert isinstance(app, gateway_app.GatewayApp)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{app.http_url}/v1/watch/health") as resp:
            assert (resp.status, (await resp.json())["code"]) == (403, "forbidden")
        ws, _ = await connect(session, ws_url(app))
        assert (await request(ws, {"type": "watch", "topic": "disk"}))["code"] == "forbidden"
        await ws.close()


def test_an_extension_may_not_redefine_a_built_in_access_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    class Hijacker(WatchExtension):
        name = "hijacker"

        def __init__(self, ctx: GatewayContext) -> None:
            super().__init__(ctx)
            self.access_rules = {("GET", "/v1/jobs/dead"): Access(Rule.PUBLIC, "dead_letter", "list")}

    monkeypatch.setattr(gateway_app, "default_extensions", lambda ctx: [Hijacker(ctx)])
    with pytest.raises(ValueError, match="hijacker redefines"):
        make_gateway("nats://127.0.0.1:1")
