"""Event patterns at the gateway: WebSocket subscribe/emit, SSE, REST, permissions, replay, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import nats
import pytest
from prometheus_client import CollectorRegistry

from raaf import Event, EventEmitter
from services.gateway import GatewayApp, GatewaySettings
from services.gateway.events import EventsExtension
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.env import service_env, unique_prefix
from tests.support.events import TEST_ENV, delete_events_stream, event_settings
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]
TOKENS = {
    "alice-token": {"sub": "alice", "events": ["user.*", "public.**", "inbox.{sub}"]},
    "admin-token": {"sub": "admin"},  # no events grant: anything but GATEWAY_RESTRICTED_EVENTS
    "alice-narrow": {"sub": "alice", "events": ["public.**"]},  # alice again, granted less
}


class Client:
    """A WebSocket client that reads the gateway's JSON messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self, *types: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            msg = await self.ws.receive(timeout=timeout)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            data: dict[str, Any] = json.loads(msg.data)
            if not types or data["type"] in types:
                return data

    async def request(self, **message: Any) -> dict[str, Any]:
        """Send with an id; the answer (ack or error) for it."""
        await self.send(id="r1", **message)
        while True:
            answer = await self.next("ack", "error")
            if answer.get("ref") == "r1":
                return answer

    async def nothing_for(self, seconds: float) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await self.next("event", timeout=seconds)


@pytest.fixture
async def gateway(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[GatewayApp]:
    # The events extension reads EVENTS_* and GATEWAY_RESTRICTED_EVENTS from the process environment.
    monkeypatch.setenv("GATEWAY_RESTRICTED_EVENTS", "secret.*,audit.**")
    monkeypatch.setenv("EVENTS_HISTORY_MAX_READ", "50")
    monkeypatch.setenv("EVENTS_HISTORY_MAX_BYTES", TEST_ENV["EVENTS_HISTORY_MAX_BYTES"])
    prefix = unique_prefix()
    env = service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix, GATEWAY_AUTH_MODE="token",
                      GATEWAY_STATIC_TOKENS=json.dumps(TOKENS), WEBSOCKET_RATE_LIMIT="0",
                      WEBSOCKET_MAX_SUBSCRIPTIONS="4", WEBSOCKET_MAX_MESSAGE_SIZE="2048")
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    assert isinstance(app, GatewayApp)
    yield app
    await app.stop()
    await delete_events_stream(nats_server.url, prefix)


@asynccontextmanager
async def client(app: GatewayApp, token: str) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{app.http_url}/ws?token={token}") as ws:
        c = Client(ws)
        await c.next("welcome")
        yield c


@asynccontextmanager
async def emitter_for(app: GatewayApp, nats_url: str) -> AsyncIterator[EventEmitter]:
    settings = event_settings(nats_url, app.runtime.prefix)
    async with EventEmitter(settings=settings, registry=CollectorRegistry()) as emitter:
        yield emitter


def events_extension(app: GatewayApp) -> EventsExtension:
    return next(e for e in app.extensions if isinstance(e, EventsExtension))


async def test_a_websocket_client_gets_the_events_of_its_patterns(gateway: GatewayApp,
                                                                  nats_server: NatsServer) -> None:
    async with client(gateway, "alice-token") as alice, emitter_for(gateway, nats_server.url) as emitter:
        assert (await alice.request(type="subscribe_events", pattern="user.*"))["type"] == "ack"
        sent = await emitter.emit("user.login", {"user_id": "u1"})
        await emitter.emit("admin.login", {"user_id": "root"})  # not in the pattern
        got = await alice.next("event")
        assert got == {"type": "event", "event": "user.login", "data": {"user_id": "u1"}, "id": sent.id,
                       "timestamp": sent.timestamp, "source": sent.source}
        nc = await nats.connect(nats_server.url)  # a plain NATS publish reaches the browser too
        try:
            await nc.publish(f"{gateway.runtime.prefix}.events.user.logout", b'{"user_id":"u1"}')
        finally:
            await nc.close()
        got = await alice.next("event")
        assert (got["event"], got["data"]) == ("user.logout", {"user_id": "u1"})
        await alice.nothing_for(0.2)


async def test_a_client_only_subscribes_to_patterns_it_may_see(gateway: GatewayApp) -> None:
    async with client(gateway, "alice-token") as alice, client(gateway, "admin-token") as admin:
        for pattern in ("**", "*.login", "admin.*", "inbox.bob", "inbox.*"):
            answer = await alice.request(type="subscribe_events", pattern=pattern)
            assert (answer["type"], answer["code"]) == ("error", "forbidden"), pattern
        for pattern in ("user.*", "user.>", "public.news.**", "inbox.alice"):
            assert (await alice.request(type="subscribe_events", pattern=pattern))["type"] == "ack", pattern
        # Without a grant, the restricted globs decide: a pattern that could match any of them is refused.
        for pattern in ("secret.*", "**", "*.plans", "audit.x.y"):
            answer = await admin.request(type="subscribe_events", pattern=pattern)
            assert (answer["type"], answer["code"]) == ("error", "forbidden"), pattern
        for pattern in ("user.*", "*", "public.*.x"):
            assert (await admin.request(type="subscribe_events", pattern=pattern))["type"] == "ack", pattern


async def test_bad_patterns_and_too_many_subscriptions_get_typed_errors(gateway: GatewayApp) -> None:
    async with client(gateway, "admin-token") as admin:
        for pattern in ("user.>.x", "a..b", "us*r"):
            answer = await admin.request(type="subscribe_events", pattern=pattern)
            assert answer["code"] == "invalid_name", pattern
        for n in range(4):  # WEBSOCKET_MAX_SUBSCRIPTIONS=4, channels and event patterns together
            assert (await admin.request(type="subscribe_events", pattern=f"p{n}.*"))["type"] == "ack"
        answer = await admin.request(type="subscribe_events", pattern="p9.*")
        assert answer["code"] == "limit_exceeded"
        answer = await admin.request(type="unsubscribe_events", pattern="never.subscribed")
        assert answer["code"] == "not_found"
        assert (await admin.request(type="unsubscribe_events", pattern="p0.*"))["type"] == "ack"
        assert (await admin.request(type="subscribe_events", pattern="p9.*"))["type"] == "ack"


async def test_subscribing_with_history_replays_then_continues_live(gateway: GatewayApp,
                                                                    nats_server: NatsServer) -> None:
    async with emitter_for(gateway, nats_server.url) as emitter:
        for n in range(5):
            await emitter.emit("user.step", n)
        async with client(gateway, "alice-token") as alice:
            assert (await alice.request(type="subscribe_events", pattern="user.*", history=3))["type"] == "ack"
            replayed = [await alice.next("event") for _ in range(3)]
            assert [e["data"] for e in replayed] == [2, 3, 4]
            assert all(isinstance(e["seq"], int) for e in replayed)
            await emitter.emit("user.step", 5)
            live = await alice.next("event")
            assert live["data"] == 5 and "seq" not in live
        async with client(gateway, "alice-token") as again:  # resume after the last seq seen
            answer = await again.request(type="subscribe_events", pattern="user.*", after_seq=replayed[1]["seq"])
            assert answer["type"] == "ack"
            assert [(await again.next("event"))["data"] for _ in range(2)] == [4, 5]
            await emitter.emit("user.step", 6)
            assert (await again.next("event"))["data"] == 6


async def test_live_events_during_a_replay_follow_it_once_each(gateway: GatewayApp, nats_server: NatsServer) -> None:
    async with emitter_for(gateway, nats_server.url) as emitter, client(gateway, "alice-token") as alice:
        for n in range(20):
            await emitter.emit("user.burst", n)
        burst = [emitter.emit_async("user.burst", n) for n in range(20, 60)]
        await alice.send(type="subscribe_events", pattern="user.*", history=50)
        await asyncio.gather(*burst)
        await emitter.emit("user.burst", 60)
        seen = []
        while not seen or seen[-1] != 60:
            seen.append((await alice.next("event"))["data"])
        # The last 50 stored when the replay read them, then the live ones it did not hold: in order, once each.
        assert seen == list(range(seen[0], 61)) and len(seen) >= 50


async def test_events_emitted_by_clients_reach_listeners_with_their_subject(gateway: GatewayApp,
                                                                            nats_server: NatsServer) -> None:
    async with emitter_for(gateway, nats_server.url) as emitter, client(gateway, "alice-token") as alice:
        got: list[Event] = []
        await emitter.on("**", got.append)
        answer = await alice.request(type="emit_event", event="user.clicked", data={"x": 1})
        assert answer["type"] == "ack", answer
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer alice-token"}) as http:
            async with http.post(f"{gateway.http_url}/v1/events/public.news", json={"title": "hi"}) as resp:
                assert resp.status == 202
                body = await resp.json()
                assert (body["type"], body["event"], body["data"], body["source"]) == (
                    "event", "public.news", {"title": "hi"}, "alice")
            async with http.post(f"{gateway.http_url}/v1/events/admin.reboot", json={}) as resp:
                assert resp.status == 403 and (await resp.json())["code"] == "forbidden"
            async with http.post(f"{gateway.http_url}/v1/events/user.*", json={}) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == "invalid_name"
            async with http.post(f"{gateway.http_url}/v1/events/user.big", json={"x": "y" * 3000}) as resp:
                assert resp.status == 413 and (await resp.json())["code"] == "too_large"
            async with http.post(f"{gateway.http_url}/v1/events/user.bad", data=b"{not json",
                                 headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == "bad_request"
        async with aiohttp.ClientSession() as anonymous, anonymous.post(f"{gateway.http_url}/v1/events/user.x",
                                                                        json={}) as resp:
            assert resp.status == 401
        await eventually(lambda: len(got) == 2)
        assert [(e.event, e.data, e.source) for e in got] == [("user.clicked", {"x": 1}, "alice"),
                                                             ("public.news", {"title": "hi"}, "alice")]
        answer = await alice.request(type="emit_event", event="secret.plan", data=1)
        assert answer["code"] == "forbidden"


async def test_sse_streams_the_events_of_its_patterns(gateway: GatewayApp, nats_server: NatsServer) -> None:
    async with emitter_for(gateway, nats_server.url) as emitter, aiohttp.ClientSession() as http:
        await emitter.emit("user.before", 0)
        url = f"{gateway.http_url}/v1/events?pattern=user.*&pattern=public.**&history=1&token=alice-token"
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            await eventually(lambda: len(events_extension(gateway).hub.fanouts) == 2)
            await emitter.emit("user.after", 1)
            await emitter.emit("public.a.b", 2)
            events: list[dict[str, Any]] = []
            while len(events) < 3:
                line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().strip()
                if line.startswith("data:") and '"type":"event"' in line:
                    events.append(json.loads(line[5:]))
            assert [(e["event"], e["data"]) for e in events] == [("user.before", 0), ("user.after", 1),
                                                                ("public.a.b", 2)]
        async with http.get(f"{gateway.http_url}/v1/events?pattern=**&token=alice-token") as resp:
            assert resp.status == 403
        async with http.get(f"{gateway.http_url}/v1/events?token=alice-token") as resp:
            assert resp.status == 400


async def test_history_over_http(gateway: GatewayApp, nats_server: NatsServer) -> None:
    async with emitter_for(gateway, nats_server.url) as emitter, aiohttp.ClientSession() as http:
        for n in range(4):
            await emitter.emit("user.page", n)
        headers = {"Authorization": "Bearer alice-token"}
        async with http.get(f"{gateway.http_url}/v1/events/history?pattern=user.*&limit=2", headers=headers) as resp:
            body = await resp.json()
            assert body["type"] == "event_history" and [e["data"] for e in body["events"]] == [2, 3]
        first = body["events"][0]["seq"]
        url = f"{gateway.http_url}/v1/events/history?pattern=user.*&after_seq={first}"
        async with http.get(url, headers=headers) as resp:
            assert [e["data"] for e in (await resp.json())["events"]] == [3]
        async with http.get(f"{gateway.http_url}/v1/events/history?pattern=**", headers=headers) as resp:
            assert resp.status == 403
        url = f"{gateway.http_url}/v1/events/history?pattern=user.*&limit=-1"
        async with http.get(url, headers=headers) as resp:
            assert resp.status == 400


async def test_a_closed_connection_leaves_no_listener_behind(gateway: GatewayApp) -> None:
    extension = events_extension(gateway)
    async with client(gateway, "alice-token") as alice:
        await alice.request(type="subscribe_events", pattern="user.*")
        await alice.request(type="subscribe_events", pattern="public.**")
        assert extension.emitter is not None and extension.emitter.listener_count() == 2
    await eventually(lambda: extension.emitter is not None and extension.emitter.listener_count() == 0)
    assert extension.hub.fanouts == {} and extension.hub.by_connection == {}


async def test_a_narrower_token_sent_again_drops_the_patterns_it_no_longer_grants(gateway: GatewayApp) -> None:
    extension = events_extension(gateway)
    async with client(gateway, "alice-token") as alice:
        await alice.request(type="subscribe_events", pattern="user.*")
        await alice.request(type="subscribe_events", pattern="public.**")
        assert extension.emitter is not None and extension.emitter.listener_count() == 2
        await alice.send(type="auth", token="alice-narrow")
        assert (await alice.next("authenticated", "error"))["type"] == "authenticated"
        (conn,) = extension.hub.by_connection
        assert [s.rsplit(".events.", 1)[1] for s in extension.hub.by_connection[conn]] == ["public.>"]
        answer = await alice.request(type="subscribe_events", pattern="user.*")
        assert (answer["type"], answer["code"]) == ("error", "forbidden")
