"""raaf.WebSocketClient against real gateways: hooks, typed errors, reconnecting, re-subscribing, giving up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import raaf
import raaf.errors  # a submodule: `import raaf` alone does not load it
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer, free_port
from shared.service.app import App
from tests.support.gateway import SECRET, gateway_env, make_gateway, token, ws_url
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]


async def test_the_client_subscribes_publishes_and_calls_its_hooks(nats_server: NatsServer,
                                                                   start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url))
    client = raaf.WebSocketClient(ws_url(app))  # type: ignore[arg-type]
    events: list[str] = []
    received: list[dict[str, Any]] = []
    client.on_connect(lambda: events.append("connect"))
    client.on_disconnect(lambda: events.append("disconnect"))

    @client.on_message
    async def collect(message: dict[str, Any]) -> None:
        if message["type"] == "message":
            received.append(message["data"])

    await client.connect()
    assert client.connection_id and events == ["connect"]
    await client.subscribe("general", presence=True, info={"name": "py"})
    await client.publish("general", {"text": "hello"})
    await eventually(lambda: received == [{"text": "hello"}])
    members = await client.presence("general")
    assert [m["info"] for m in members] == [{"name": "py"}]
    assert 0 < await client.ping() < 1
    await client.close()
    assert events == ["connect", "disconnect"]


async def test_gateway_errors_arrive_as_typed_exceptions(nats_server: NatsServer, start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url, GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET,
                                       GATEWAY_RESTRICTED_CHANNELS="vip"))
    client = raaf.WebSocketClient(ws_url(app), token=token("ann"))  # type: ignore[arg-type]
    await client.connect()
    assert client.subject == "ann"
    with pytest.raises(raaf.PermissionDeniedError) as denied:
        await client.subscribe("vip")
    assert denied.value.details == {"kind": "channel", "name": "vip"}
    with pytest.raises(raaf.errors.InvalidNameError):
        await client.subscribe("")
    with pytest.raises(raaf.AuthenticationError):
        await client.authenticate("garbage")
    await client.close()

    with pytest.raises(raaf.AuthenticationError):
        await raaf.WebSocketClient(ws_url(app), token="garbage", auto_reconnect=False).connect()  # type: ignore[arg-type]


async def test_the_client_reconnects_with_backoff_and_resubscribes_when_the_gateway_comes_back(
    nats_server: NatsServer,
) -> None:
    env = gateway_env(nats_server.url, WEBSOCKET_PORT=str(free_port()))
    first = GatewayApp(GatewaySettings.from_env(env))
    await first.start()
    client = raaf.WebSocketClient(ws_url(first), reconnect_delay=0.05, max_reconnect_attempts=50)
    attempts: list[int] = []
    restored = asyncio.Event()
    client.on_reconnect(attempts.append)
    client.add_restore_hook(restored.set)
    data: list[Any] = []
    client.on_message(lambda m: data.append(m["data"]) if m["type"] == "message" else None)
    await client.connect()
    await client.subscribe("news")
    old_id = client.connection_id
    await first.stop()  # clients are told 1001: go elsewhere
    await eventually(lambda: len(attempts) >= 2)
    second = GatewayApp(GatewaySettings.from_env(env))
    await second.start()
    try:
        await asyncio.wait_for(restored.wait(), 10)
        assert client.connection_id != old_id
        assert "news" in second.hub.channels, "the subscription came back with the connection"
        await second.broadcast({"headline": "back"}, channel="news")
        await eventually(lambda: data == [{"headline": "back"}])
    finally:
        await client.close()
        await second.stop()


async def test_the_client_gives_up_after_max_reconnect_attempts(nats_server: NatsServer) -> None:
    app = make_gateway(nats_server.url)
    await app.start()
    client = raaf.WebSocketClient(ws_url(app), reconnect_delay=0.01, max_reconnect_attempts=3)
    attempts: list[int] = []
    client.on_reconnect(attempts.append)
    await client.connect()
    await app.stop()
    await asyncio.wait_for(client.wait_closed(), 10)
    assert attempts == [1, 2, 3]
    assert isinstance(client.error, raaf.ConnectionError)
    with pytest.raises(raaf.ConnectionError):
        await client.publish("x", 1)
    await client.close()


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    client = raaf.WebSocketClient("ws://unused", reconnect_delay=1.0, max_reconnect_delay=10.0)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [client.backoff(attempt) for _ in range(200)]
        assert all(step * 0.5 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step * 0.2, "jitter spreads reconnecting clients"


def test_typed_errors_are_also_the_builtin_kinds() -> None:
    assert issubclass(raaf.ConnectionError, ConnectionError)
    assert issubclass(raaf.TimeoutError, TimeoutError)
    error = raaf.error_from_wire({"type": "error", "code": "rate_limited", "message": "slow down", "ref": "7",
                                 "details": {"retry_after": 1.5}})
    assert isinstance(error, raaf.RateLimitedError) and error.retry_after == 1.5 and error.ref == "7"


async def test_closing_while_waiting_to_reconnect_returns_at_once(nats_server: NatsServer) -> None:
    app = make_gateway(nats_server.url)
    await app.start()
    client = raaf.WebSocketClient(ws_url(app), reconnect_delay=30.0, max_reconnect_delay=30.0)
    attempts: list[int] = []
    client.on_reconnect(attempts.append)
    await client.connect()
    await app.stop()
    await eventually(lambda: attempts == [1])  # now sleeping 15-30 s before the first attempt
    await asyncio.wait_for(client.close(), 2)
    await asyncio.wait_for(client.wait_closed(), 1)
