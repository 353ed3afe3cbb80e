"""The /ws protocol against a real nats-server: acks, typed errors, limits, channel isolation, presence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import nats
import pytest
from nats.aio.msg import Msg

from services.gateway import GatewayApp
from shared.devstack.servers import NatsServer
from shared.nats import fastpaths
from shared.service.app import App
from tests.support.gateway import (
    RawWebSocket,
    connect,
    expect_close,
    make_gateway,
    receive,
    receive_type,
    request,
    ws_url,
)

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture(params=["true", "false"], ids=["direct-delivery", "nats-py-path"])
async def gateway(request: pytest.FixtureRequest, nats_server: NatsServer, start_app: StartApp) -> GatewayApp:
    """A gateway with channel messages taking the direct path (and ChunkParser), or nats-py's own."""
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_MAX_MESSAGE_SIZE="1024",
                                       WEBSOCKET_MAX_FRAME_SIZE="4096", WEBSOCKET_MAX_SUBSCRIPTIONS="3",
                                       GATEWAY_DIRECT_DELIVERY=request.param))
    assert isinstance(app, GatewayApp)
    direct = request.param == "true"
    assert fastpaths.active(app.nc).parser == direct  # the channels ask for both; the gateway's events bus may too
    assert (type(app.nc._ps) is fastpaths.ChunkParser) == direct
    return app


async def test_welcome_names_the_connection_and_its_limits(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, welcome = await connect(session, ws_url(gateway))
        assert welcome["connection_id"]
        assert welcome["auth_required"] is False
        assert welcome["limits"] == {"max_message_size": 1024, "rate_limit": 0, "max_subscriptions": 3}
        await ws.close()


async def test_a_published_message_reaches_every_subscriber_and_acks_carry_the_client_id(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        alice, _ = await connect(session, ws_url(gateway))
        bob, _ = await connect(session, ws_url(gateway))
        for ws in (alice, bob):
            await ws.send_json({"type": "subscribe", "channel": "general", "id": "sub-1"})
            assert await receive(ws) == {"type": "ack", "ref": "sub-1"}
        await alice.send_json({"type": "publish", "channel": "general", "id": "m-7", "data": {"text": "hi"}})
        assert await receive_type(alice, "ack") == {"type": "ack", "ref": "m-7"}
        for ws in (alice, bob):
            message = await receive_type(ws, "message")
            assert message["channel"] == "general"
            assert message["data"] == {"text": "hi"}
            assert message["connection_id"]
        await alice.close()
        await bob.close()


async def test_malformed_json_unknown_types_and_wrong_fields_get_typed_errors(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(gateway))
        await ws.send_str("{not json")
        assert (await receive(ws))["code"] == "bad_request"
        await ws.send_json({"type": "teleport", "id": "x1"})
        error = await receive(ws)
        assert (error["code"], error["ref"], error["details"]) == ("bad_request", "x1", {"message_type": "teleport"})
        await ws.send_json({"id": "x2", "channel": "general"})
        error = await receive(ws)
        assert (error["code"], error["ref"]) == ("bad_request", "x2")
        await ws.send_json({"type": "subscribe", "channel": 42, "id": "x3"})
        error = await receive(ws)
        assert (error["code"], error["ref"]) == ("bad_request", "x3")
        assert "channel" in error["message"]
        await ws.send_json([1, 2, 3])
        assert (await receive(ws))["code"] == "bad_request"
        await ws.send_bytes(b'{"type":"ping","id":"binary"}')
        assert await receive(ws) == {"type": "pong", "ref": "binary", "at": pytest.approx(0, abs=1e10)}
        # The connection survived all of it.
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        await ws.close()


async def test_invalid_utf8_is_refused_and_never_forwarded_to_other_subscribers(gateway: GatewayApp) -> None:
    host, port = "127.0.0.1", gateway.http_port
    async with aiohttp.ClientSession() as session:
        listener, _ = await connect(session, ws_url(gateway))
        assert (await request(listener, {"type": "subscribe", "channel": "utf8"}))["type"] == "ack"
        raw = await RawWebSocket.open(host, port)
        await raw.read_frame()  # welcome
        raw.send_text(b'{"type":"publish","channel":"utf8","id":"bad","data":"\xff\xfe"}', opcode=0x2)
        _, _, payload = await raw.read_frame()
        error = msgspec.json.decode(payload)
        assert (error["type"], error["code"], error["ref"]) == ("error", "bad_request", "bad")
        raw.send_text(b'{"type":"publish","channel":"utf8","data":"fine"}')
        message = await receive_type(listener, "message")
        assert message["data"] == "fine", "only the valid message may arrive"
        raw.close()
        await listener.close()


async def test_an_oversized_message_gets_too_large_and_the_connection_stays(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(gateway))
        await ws.send_json({"type": "publish", "channel": "big", "id": "huge", "data": "x" * 2000})
        error = await receive(ws)
        assert (error["code"], error["ref"]) == ("too_large", "huge")
        assert error["details"]["limit"] == 1024
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        await ws.close()


async def test_a_frame_over_the_hard_limit_closes_with_1009_and_the_gateway_stays_up(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(gateway))
        await ws.send_str("x" * 5000)
        assert await expect_close(ws) == 1009
        other, _ = await connect(session, ws_url(gateway))
        assert (await request(other, {"type": "ping"}))["type"] == "pong"
        await other.close()


async def test_subscriptions_per_connection_are_limited(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(gateway))
        for i in range(3):
            assert (await request(ws, {"type": "subscribe", "channel": f"c{i}"}))["type"] == "ack"
        assert (await request(ws, {"type": "subscribe", "channel": "c1"}))["type"] == "ack", "resubscribing is free"
        error = await request(ws, {"type": "subscribe", "channel": "c3"})
        assert (error["code"], error["details"]["limit"]) == ("limit_exceeded", 3)
        assert (await request(ws, {"type": "unsubscribe", "channel": "c0"}))["type"] == "ack"
        assert (await request(ws, {"type": "subscribe", "channel": "c3"}))["type"] == "ack"
        await ws.close()


async def test_unsubscribe_stops_delivery_and_unknown_unsubscribe_is_not_found(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(gateway))
        await request(ws, {"type": "subscribe", "channel": "news"})
        assert (await request(ws, {"type": "unsubscribe", "channel": "news"}))["type"] == "ack"
        assert (await request(ws, {"type": "unsubscribe", "channel": "news"}))["code"] == "not_found"
        await request(ws, {"type": "publish", "channel": "news", "data": 1})
        with pytest.raises(asyncio.TimeoutError):
            await receive_type(ws, "message", timeout=0.3)
        assert "news" not in gateway.hub.channels, "the NATS subscription goes with the last subscriber"
        await ws.close()


TRICKY = ["a", "a.b", "a.*", "a.>", "*", ">", "a b", "a\tb", "a~2eb", "a.b.c", "é.ü", "a.", ".a"]


async def test_channel_names_with_dots_wildcards_or_spaces_stay_in_their_own_channel(
    gateway: GatewayApp, nats_server: NatsServer
) -> None:
    spy = await nats.connect(nats_server.url)
    seen: list[str] = []

    async def record(msg: Msg) -> None:
        seen.append(msg.subject)

    sub = await spy.subscribe(f"{gateway.subjects.prefix}.channel.>", cb=record)
    async with aiohttp.ClientSession() as session:
        sockets = {}
        for name in TRICKY:
            ws, _ = await connect(session, ws_url(gateway))
            reply = await request(ws, {"type": "subscribe", "channel": name})
            if name == "a\tb":
                assert reply["code"] == "invalid_name", "control characters are refused"
                await ws.close()
                continue
            assert reply["type"] == "ack", (name, reply)
            sockets[name] = ws
        publisher, _ = await connect(session, ws_url(gateway))
        for name in sockets:
            assert (await request(publisher, {"type": "publish", "channel": name, "data": name}))["type"] == "ack"
        for name, ws in sockets.items():
            message = await receive_type(ws, "message")
            assert (message["channel"], message["data"]) == (name, name)
            with pytest.raises(asyncio.TimeoutError):
                extra = await receive_type(ws, "message", timeout=0.2)
                pytest.fail(f"{name!r} also received {extra!r}")
        for ws in [*sockets.values(), publisher]:
            await ws.close()
    await sub.unsubscribe()
    await spy.close()
    # On NATS every channel is exactly one token after "<prefix>.channel.": no wildcard, no extra level.
    assert len(seen) == len(sockets)
    assert all(subject.count(".") == 2 and "*" not in subject and ">" not in subject for subject in seen)


async def test_messages_published_straight_to_nats_reach_subscribers_as_channel_messages(
    gateway: GatewayApp, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    subject = gateway.subjects.channel("ops")
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(gateway))
        await request(ws, {"type": "subscribe", "channel": "ops"})
        await nc.publish(subject, b'{"alert":"disk full"}')
        assert (await receive_type(ws, "message"))["data"] == {"alert": "disk full"}
        await nc.publish(subject, b"plain text")
        assert (await receive_type(ws, "message"))["data"] == "plain text"
        await nc.publish(subject, b"\xff\xfe bytes")
        assert (await receive_type(ws, "message"))["data"] == "\ufffd\ufffd bytes"
        forged = b'{"type":"message","channel":"admin","data":{"x":1}}'
        await nc.publish(subject, forged)
        message = await receive_type(ws, "message")
        assert message["channel"] == "ops", "a message names the channel it really came from"
        assert message["data"] == {"type": "message", "channel": "admin", "data": {"x": 1}}
        await ws.close()
    await nc.close()


async def test_presence_lists_members_and_join_leave_events_reach_listeners(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        watcher, watcher_welcome = await connect(session, ws_url(gateway))
        await request(watcher, {"type": "subscribe", "channel": "room", "presence": True, "info": {"name": "W"}})
        joined = await receive_type(watcher, "joined")
        assert joined["member"] == {"connection_id": watcher_welcome["connection_id"], "info": {"name": "W"}}
        guest, guest_welcome = await connect(session, ws_url(gateway))
        await request(guest, {"type": "subscribe", "channel": "room", "info": {"name": "G"}})
        joined = await receive_type(watcher, "joined")
        assert joined["member"]["info"] == {"name": "G"}
        presence = await request(watcher, {"type": "presence", "channel": "room"})
        names = sorted(m["info"]["name"] for m in presence["members"])
        assert names == ["G", "W"]
        await guest.close()
        left = await receive_type(watcher, "left")
        assert left["member"]["connection_id"] == guest_welcome["connection_id"]
        await watcher.close()


async def test_stopping_the_gateway_tells_clients_to_go_elsewhere(nats_server: NatsServer) -> None:
    app = make_gateway(nats_server.url)
    await app.start()
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(app))
        stopping = asyncio.create_task(app.stop())
        assert await expect_close(ws) == 1001
        await stopping


async def test_many_presence_listeners_joining_at_once_share_one_presence_subscription(gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        sockets = [(await connect(session, ws_url(gateway)))[0] for _ in range(5)]
        replies = await asyncio.gather(*(request(ws, {"type": "subscribe", "channel": "crowd", "presence": True})
                                         for ws in sockets))
        assert {r["type"] for r in replies} == {"ack"}
        presence_subs = [sub for sub in gateway.nc._subs.values()
                         if sub.subject == gateway.subjects.presence("crowd")]
        assert len(presence_subs) == 1
        late, late_welcome = await connect(session, ws_url(gateway))
        await request(late, {"type": "subscribe", "channel": "crowd"})
        for ws in sockets:
            joined = await receive_type(ws, "joined")
            while joined["member"]["connection_id"] != late_welcome["connection_id"]:
                joined = await receive_type(ws, "joined")
            with pytest.raises(asyncio.TimeoutError):  # exactly once, not once per subscription
                while True:
                    again = await receive_type(ws, "joined", timeout=0.2)
                    assert again["member"]["connection_id"] != late_welcome["connection_id"]
        for ws in [*sockets, late]:
            await ws.close()


async def test_each_channel_message_records_how_many_local_subscribers_it_was_written_to(
    gateway: GatewayApp, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    async with aiohttp.ClientSession() as session:
        sockets = [(await connect(session, ws_url(gateway)))[0] for _ in range(4)]
        for ws, channel in zip(sockets, ("wide", "wide", "wide", "narrow"), strict=True):
            await request(ws, {"type": "subscribe", "channel": channel})
        for channel in ("wide", "wide", "narrow"):
            await nc.publish(gateway.subjects.channel(channel), b"{}")
        for ws, expected in zip(sockets, (2, 2, 2, 1), strict=True):
            for _ in range(expected):
                await receive_type(ws, "message")
        for ws in sockets:
            await ws.close()
    await nc.close()

    def sample(suffix: str, **labels: str) -> float | None:
        return gateway.metrics.registry.get_sample_value(f"raaf_gateway_fanout_recipients{suffix}", labels)

    assert (sample("_count"), sample("_sum")) == (3, 7), "observed once per message, not once per recipient"
    assert [sample("_bucket", le=le) for le in ("0.0", "1.0", "2.0", "5.0", "+Inf")] == [0, 1, 1, 3, 3]
