"""The gateway's WebSocket response on aiohttp internals: its deflate on both paths, the switch, the shape check."""

from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from services.gateway import GatewayApp, wsresponse
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.gateway import RawWebSocket, connect, make_gateway, receive_type, request, ws_url

StartApp = Callable[[App], Awaitable[App]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve one aiohttp handler on a free port; the URL of it."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        runners.append(runner)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "plain-aiohttp"])
async def test_deflated_messages_arrive_intact_either_way_and_only_the_fast_path_forbids_client_takeover(
        nats_server: NatsServer, start_app: StartApp, fast: bool) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_COMPRESSION_THRESHOLD="64",
                                       GATEWAY_WS_FAST_PATH=str(fast).lower()))
    assert isinstance(app, GatewayApp)
    raw = await RawWebSocket.open("127.0.0.1", app.http_port, extensions="permessage-deflate")
    assert b"permessage-deflate" in raw.response
    assert (b"client_no_context_takeover" in raw.response) == fast
    await raw.read_frame()
    raw.send_text(b'{"type":"subscribe","channel":"z","id":"s"}')
    await raw.read_frame()
    text = "the quick brown fox " * 40
    async with aiohttp.ClientSession() as session:
        client, _ = await connect(session, ws_url(app), compress=15)  # keeps its own context takeover
        await request(client, {"type": "subscribe", "channel": "z"})
        for n in range(3):
            await client.send_json({"type": "publish", "channel": "z", "data": f"{n}{text}"})
            assert (await receive_type(client, "message"))["data"] == f"{n}{text}"
            first, _, payload = await raw.read_frame()
            assert first & 0x40, "a large message is deflated"
            # Either way the gateway deflates every message on its own: a fresh inflater reads each.
            inflated = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            assert msgspec.json.decode(inflated)["data"] == f"{n}{text}"
        await client.close()
    raw.close()


async def test_the_fast_response_drops_its_inflater_after_each_client_message_and_keeps_aiohttps_heartbeat_hook(
        serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[tuple[bool, bool]] = []

    async def echo(http: web.Request) -> web.StreamResponse:
        ws = wsresponse.GatewayWebSocketResponse(compress=True, heartbeat=30)
        await ws.prepare(http)
        protocol: Any = http.protocol
        parser: Any = ws._parser
        async for msg in ws:
            seen.append((parser._decompressobj is None, protocol._data_received_cb == ws._on_data_received))
            await ws.send_str(msg.data)
        return ws

    url = await serve(echo)
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=15) as ws:
        assert "client_no_context_takeover" in ws._response.headers[aiohttp.hdrs.SEC_WEBSOCKET_EXTENSIONS]
        for n in range(3):
            await ws.send_str(f"{n}" + "x" * 2000)
            assert await ws.receive_str() == f"{n}" + "x" * 2000
    assert seen == [(True, True)] * 3


class BeforeTheHeartbeatHook(RequestHandler):
    """A request handler whose ``set_parser`` has the shape of older aiohttp: no ``data_received_cb``."""

    def set_parser(self, parser: Any) -> None:  # type: ignore[override]
        super().set_parser(parser)


def test_install_answers_the_fast_response_only_when_switched_on_and_aiohttp_has_the_expected_shape(
        caplog: pytest.LogCaptureFixture) -> None:
    assert wsresponse.shape_refusal() is None  # the locked aiohttp is the one the hooks were written against
    assert wsresponse.install(True) is wsresponse.GatewayWebSocketResponse
    assert wsresponse.install(False) is web.WebSocketResponse
    with caplog.at_level(logging.WARNING, logger="raaf.gateway"):
        assert wsresponse.install(True, handler=BeforeTheHeartbeatHook) is web.WebSocketResponse
    assert any("set_parser(parser, data_received_cb)" in r.getMessage() for r in caplog.records), caplog.records
