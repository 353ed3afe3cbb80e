"""SSE channel streams and REST: publish, presence, stats, typed HTTP errors, the chat page."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec

from services.gateway import GatewayApp
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.gateway import SECRET, connect, make_gateway, request, token, ws_url
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]


async def read_event(resp: aiohttp.ClientResponse, timeout: float = 5.0) -> tuple[str, Any]:
    """The next SSE event (comments skipped): its name and its JSON data."""
    event, data = "message", []
    async with asyncio.timeout(timeout):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                return event, msgspec.json.decode("\n".join(data))


async def test_an_sse_stream_carries_a_channels_messages(nats_server: NatsServer, start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_HEARTBEAT_INTERVAL="0.2"))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{app.http_url}/v1/channels/news/events") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            event, welcome = await read_event(stream)
            assert event == "welcome" and welcome["connection_id"]
            await eventually(lambda: app.hub.subscription_count == 1)  # joined: NATS confirmed the subscription
            ws, _ = await connect(session, ws_url(app))
            await request(ws, {"type": "publish", "channel": "news", "data": {"headline": "hi\nthere"}})
            event, message = await read_event(stream)
            assert (event, message["data"]) == ("message", {"headline": "hi\nthere"})
            # Raw JSON with newlines between tokens still arrives as one event.
            await ws.send_str('{"type": "publish", "channel": "news",\n "data": {\n"a": [1,\n2]}}')
            assert (await read_event(stream))[1]["data"] == {"a": [1, 2]}
            await asyncio.sleep(0.5)  # quiet: keep-alive comments flow, and are skipped
            await request(ws, {"type": "publish", "channel": "news", "data": 3})
            assert (await read_event(stream))[1]["data"] == 3
            assert app.registry.counts["sse"] == 1
            await ws.close()
        await eventually(lambda: app.registry.counts["sse"] == 0)  # the sweeper notices the client left
        assert "news" not in app.hub.channels


async def test_rest_publish_reaches_websocket_subscribers_and_bad_bodies_get_typed_errors(
    nats_server: NatsServer, start_app: StartApp
) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_MAX_MESSAGE_SIZE="256"))
    assert isinstance(app, GatewayApp)
    url = f"{app.http_url}/v1/channels/alerts/messages"
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(app))
        await request(ws, {"type": "subscribe", "channel": "alerts", "presence": True})
        async with session.post(url, json={"level": "high"}) as resp:
            assert resp.status == 202
            assert (await resp.json())["type"] == "published"
        while True:
            message = msgspec.json.decode((await ws.receive(timeout=5)).data)
            if message["type"] == "message":
                break
        assert message["data"] == {"level": "high"}
        for body, status, code in [(b"{broken", 400, "bad_request"), (b'"' + b"x" * 300 + b'"', 413, "too_large"),
                                   (b'"\xff"', 400, "bad_request")]:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                error = await resp.json()
                assert (resp.status, error["type"], error["code"]) == (status, "error", code), error
        async with session.post(f"{app.http_url}/v1/channels/a%09b/messages", json=1) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, "invalid_name")
        async with session.get(f"{app.http_url}/v1/channels/alerts/presence") as resp:
            assert len((await resp.json())["members"]) == 1
        async with session.get(f"{app.http_url}/v1/stats") as resp:
            stats = await resp.json()
            assert stats["local"]["websocket_connections"] == 1 and stats["gateways"] == 1
        await ws.close()


async def test_rest_and_sse_need_a_token_when_auth_is_on(nats_server: NatsServer, start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url, GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET,
                                       GATEWAY_RESTRICTED_CHANNELS="vip"))
    assert isinstance(app, GatewayApp)
    base = f"{app.http_url}/v1/channels"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/x/messages", json=1) as resp:
            assert (resp.status, (await resp.json())["code"]) == (401, "unauthorized")
        async with session.post(f"{base}/vip/messages", json=1,
                                headers={"Authorization": f"Bearer {token('joe')}"}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (403, "forbidden")
        async with session.get(f"{base}/vip/events?token={token('joe')}") as resp:
            assert resp.status == 403
        async with session.get(f"{base}/vip/events?token={token('v', channels=['vip'])}") as resp:
            assert resp.status == 200
            assert (await read_event(resp))[1]["subject"] == "v"


async def test_the_gateway_serves_the_playground_at_the_root_and_the_chat_page_at_channels(
        nats_server: NatsServer, start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{app.http_url}/channels") as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "new WebSocket" in page and 'id="messages"' in page
        async with session.get(f"{app.http_url}/") as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "agent_stream" in page and 'href="/channels"' in page and "?token=" not in page


async def test_without_the_chat_page_setting_neither_page_is_served(nats_server: NatsServer,
                                                                     start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url, GATEWAY_CHAT_PAGE="false"))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/channels"):
            async with session.get(f"{app.http_url}{path}") as resp:
                assert resp.status == 404, path


async def test_a_large_rest_body_arrives_whole_and_one_past_the_limit_is_refused(
    nats_server: NatsServer, start_app: StartApp
) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_MAX_MESSAGE_SIZE=str(300_000)))
    assert isinstance(app, GatewayApp)
    url = f"{app.http_url}/v1/channels/bulk/messages"
    text = "y" * 250_000

    async def chunks(body: bytes) -> Any:  # a chunked upload: many reads on the server side
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]
            await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(app), max_msg_size=1 << 20)
        await request(ws, {"type": "subscribe", "channel": "bulk"})
        async with session.post(url, data=chunks(msgspec.json.encode(text)),
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 202, await resp.text()
        while True:
            message = msgspec.json.decode((await ws.receive(timeout=5)).data)
            if message["type"] == "message":
                break
        assert message["data"] == text
        async with session.post(url, data=chunks(msgspec.json.encode("z" * 310_000)),
                                headers={"Content-Type": "application/json"}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (413, "too_large")
        await ws.close()
